"""Build a report from its inputs: the verdict first, then one section per question."""

from __future__ import annotations

from rtml_cli.report.appendix import appendix_section, data_section
from rtml_cli.report.context import Context, Options
from rtml_cli.report.continual import continual_sections
from rtml_cli.report.evaluation import evaluation_sections
from rtml_cli.report.inputs import Inputs
from rtml_cli.report.model import Report
from rtml_cli.report.replay import replay_sections


def build_report(inputs: Inputs, options: Options | None = None) -> Report:
    """The report of ``inputs``: claims with their numbers and intervals, tables, charts.

    Sections whose inputs were not given say how to get them. Charts are drawn only when
    ``options.charts`` (and matplotlib is installed)."""
    ctx = Context(inputs, options or Options())
    replay_claims, replay = replay_sections(ctx)
    eval_claims, evaluation = evaluation_sections(ctx)
    continual_claims, continual = continual_sections(ctx)
    verdict = [*replay_claims, *eval_claims, *continual_claims]
    n = len(inputs.files)
    subtitle = f"From {n} input file{'s' if n != 1 else ''}"
    sim = inputs.simulate
    if sim is not None:
        info = sim.get("info") or {}
        subtitle += (
            f"; replay of {_when(info.get('window_start'))} to {_when(info.get('window_end'))}, "
            f"protocol {info.get('protocol')}"
        )
    elif inputs.results is not None:
        subtitle += f"; replay protocol {inputs.results.protocol}"
    return Report(
        title=ctx.options.title,
        subtitle=subtitle,
        verdict=verdict,
        sections=[*replay, *evaluation, *continual, data_section(ctx), appendix_section(ctx)],
    )


def _when(text: object) -> str:
    """'2024-03-22T16:00:00+00:00' → '2024-03-22 16:00 UTC'."""
    from datetime import datetime, timezone

    try:
        stamp = datetime.fromisoformat(str(text)).astimezone(timezone.utc)
    except ValueError:
        return str(text)
    return stamp.strftime("%Y-%m-%d %H:%M UTC")
