"""Write a report as one self-contained HTML file or as Markdown with its charts beside it.

Both formats come from Jinja2 templates (package data in ``templates/``) over the same
:class:`~rtml_cli.report.model.Report`. The HTML file needs nothing when opened: no script,
no web font, charts embedded as SVG data URIs (each with its text alternative), CSS inline.
Writes are atomic (``fsutil.atomic_path``): a failed run leaves the previous report as it
was, and only a file of the same kind is replaced.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rtml_cli.fsutil import (
    HTML_OUTPUT,
    MARKDOWN_REPORT_OUTPUT,
    REPORT_MARKDOWN_MARKER,
    atomic_path,
    check_output,
    directory_output,
)
from rtml_cli.report.model import Chart, Claim, Label, Num, Para, Report, Table

FIGURES_OUTPUT = directory_output("report")


def figures_dir(out: Path) -> Path:
    """Where ``--format md`` writes the charts: ``REPORT_files/`` beside ``REPORT.md``."""
    return out.with_name(f"{out.stem}_files")


def check_targets(out: Path, fmt: str) -> None:
    """Before any work: refuse an output path rtml may not replace (exit 73)."""
    if fmt == "html":
        check_output(out, HTML_OUTPUT, option="--out")
    else:
        check_output(out, MARKDOWN_REPORT_OUTPUT, option="--out")
        check_output(figures_dir(out), FIGURES_OUTPUT, option="--out (its charts)")


def _environment() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rtml_cli.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["inline"] = _inline_html
    env.filters["claim_html"] = _claim_html
    env.filters["claim_md"] = _claim_md
    env.filters["cell_md"] = lambda text: str(text).replace("|", "\\|").replace("\n", " ")
    env.tests["table"] = lambda b: isinstance(b, Table)
    env.tests["chart"] = lambda b: isinstance(b, Chart)
    env.tests["para"] = lambda b: isinstance(b, Para)
    env.tests["claim"] = lambda b: isinstance(b, Claim)
    return env


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*([^*]+)\*\*")


def _inline_html(text: str) -> Any:
    """Escape, then `code` and **bold** (the only markup report texts use)."""
    from markupsafe import Markup

    escaped = html.escape(str(text), quote=False)
    escaped = _CODE.sub(r"<code>\1</code>", escaped)
    return Markup(_BOLD.sub(r"<strong>\1</strong>", escaped))


def _claim_html(claim: Claim) -> Any:
    from markupsafe import Markup

    out = []
    for part in claim.parts:
        if isinstance(part, Num):
            out.append(f'<strong class="num">{html.escape(part.text)}</strong>')
        elif isinstance(part, Label):
            out.append(f"<code>{html.escape(part.text)}</code>")
        else:
            out.append(html.escape(part, quote=False))
    return Markup("".join(out))


def _claim_md(claim: Claim) -> str:
    out = []
    for part in claim.parts:
        if isinstance(part, Num):
            out.append(f"**{part.text}**")
        elif isinstance(part, Label):
            out.append(f"`{part.text}`")
        else:
            out.append(part)
    return "".join(out)


def _data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_html(report: Report) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(report=report, generated=_now(), data_uri=_data_uri)


def render_markdown(report: Report, figures: str) -> str:
    template = _environment().get_template("report.md.j2")
    return template.render(
        report=report, generated=_now(), figures=figures, marker=REPORT_MARKDOWN_MARKER
    )


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def write_report(report: Report, out: str | Path, fmt: str = "html") -> list[Path]:
    """Write ``report`` at ``out`` (atomically); returns the paths written."""
    out = Path(out)
    if fmt == "html":
        text = render_html(report)
        with atomic_path(out, HTML_OUTPUT, option="--out") as tmp:
            tmp.write_text(text, encoding="utf-8")
        return [out]
    charts = [
        b for s in report.sections for b in s.blocks if isinstance(b, Chart) and b.svg is not None
    ]
    folder = figures_dir(out)
    written = [out]
    if charts:
        with atomic_path(folder, FIGURES_OUTPUT, option="--out (its charts)") as tmp:
            tmp.mkdir()
            for chart in charts:
                (tmp / f"{chart.name}.svg").write_text(chart.svg or "", encoding="utf-8")
        written.append(folder)
    text = render_markdown(report, folder.name)
    with atomic_path(out, MARKDOWN_REPORT_OUTPUT, option="--out") as tmp:
        tmp.write_text(text, encoding="utf-8")
    return written
