"""`rtml drift …`: has the input distribution moved enough to retrain? (exit 10 = yes)

``rtml drift REFERENCE CURRENT`` (no subcommand) runs ``compare``: PSI, KS and
Jensen–Shannon per feature of two Parquet samples. ``rtml drift popularity EVENTS``
compares the share of views per item or category between two windows of one log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.cli import default_command_group
from rtml_cli.cli.options import EndOption, FormatOption, ItemsOption, QuietOption, split_words
from rtml_cli.continual.detectors import DETECTORS
from rtml_cli.errors import ExitCode
from rtml_cli.output import OutputFormat

drift_app = typer.Typer(
    cls=default_command_group("compare"),
    help=(
        "Detect distribution drift for cron: exit 0 = no drift, 10 = drift detected. "
        "`rtml drift REFERENCE CURRENT` compares two Parquet samples feature by feature; "
        "`rtml drift popularity EVENTS` compares item/category popularity between two windows."
    ),
    no_args_is_help=True,
)

PsiOption = Annotated[
    float,
    typer.Option(
        "--psi-threshold",
        help="PSI above which a feature drifted (< 0.1 none, 0.1-0.2 moderate, > 0.2 significant).",
    ),
]
KsOption = Annotated[
    float,
    typer.Option(
        "--ks-alpha",
        help="Significance level of the KS test (numeric) / chi-squared test (categorical).",
    ),
]
JsOption = Annotated[
    float,
    typer.Option(
        "--js-threshold",
        help="Jensen-Shannon distance (base 2, 0..1) above which a feature drifted.",
    ),
]
DetectorsOption = Annotated[
    str,
    typer.Option(
        "--detectors",
        help=f"Comma-separated detectors that vote on drift: {', '.join(DETECTORS)}. KS p-values "
        "become tiny on very large samples; use psi,js there.",
    ),
]
MaxCatOption = Annotated[
    int,
    typer.Option(
        "--max-categories",
        help="Categorical features: the reference's N most frequent categories get their own bin, "
        "the rest (and unseen categories) share '(other)'.",
    ),
]


def _thresholds(psi: float, ks: float, js: float) -> dict[str, float | None]:
    """Each detector's threshold option, by detector name."""
    return {"psi": psi, "ks": ks, "js": js}


def _feature_rows(features):
    rows = []
    for f in features:
        r = f.results
        psi, ks, js = r.get("psi"), r.get("ks"), r.get("js")
        moved = f.top_bins[0] if f.top_bins else None
        rows.append(
            (
                f.name,
                f.kind,
                psi.value if psi else None,
                psi.severity if psi else None,
                ks.test if ks else None,
                ks.p_value if ks else None,
                js.value if js else None,
                "DRIFT" if f.drift else "ok",
                f"{moved['bin']}: {moved['reference_share']:.1%}→{moved['current_share']:.1%}"
                if moved
                else "",
            )
        )
    return rows


_COLUMNS = ["feature", "kind", "PSI", "PSI level", "test", "p-value", "JS", "verdict", "moved most"]


def _verdict_line(drift: bool, drifted: list[str], thresholds: dict[str, float]) -> str:
    rule = {"psi": "PSI > {:g}", "ks": "p < {:g}", "js": "JS > {:g}"}
    rules = ", ".join(rule[name].format(value) for name, value in thresholds.items())
    if drift:
        return f"DRIFT in {len(drifted)} feature(s): {', '.join(drifted)} ({rules}); exit code 10"
    return f"no drift ({rules}); exit code 0"


@drift_app.command("compare")
def compare_cmd(
    reference: Annotated[
        Path, typer.Argument(help="Reference sample: a Parquet file, a glob or a directory.")
    ],
    current: Annotated[
        Path, typer.Argument(help="Current sample: a Parquet file, a glob or a directory.")
    ],
    features: Annotated[
        str | None,
        typer.Option(
            "--features",
            help="Comma-separated columns to compare (default: every common numeric/categorical "
            "column; timestamps only when named).",
        ),
    ] = None,
    bins: Annotated[
        int, typer.Option("--bins", help="Quantile bins of the reference for numeric features.")
    ] = 10,
    psi_threshold: PsiOption = DETECTORS.get("psi").default_threshold,
    ks_alpha: KsOption = DETECTORS.get("ks").default_threshold,
    js_threshold: JsOption = DETECTORS.get("js").default_threshold,
    detectors: DetectorsOption = ",".join(DETECTORS),
    max_categories: MaxCatOption = 100,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """PSI, KS and Jensen-Shannon per feature between REFERENCE and CURRENT; exit 10 on drift."""
    from rtml_cli.continual.drift import compare_files, parse_detectors
    from rtml_cli.output import Rows, finish, make_table, print_tables

    dets = parse_detectors(detectors, _thresholds(psi_threshold, ks_alpha, js_threshold))
    wanted = split_words(features) if features else None
    report = compare_files(
        reference,
        current,
        features=wanted,
        bins=bins,
        max_categories=max_categories,
        detectors=dets,
    )

    def render() -> None:
        caption = _verdict_line(report.drift, report.drifted, report.detectors)
        if report.skipped:
            caption += "\nskipped: " + ", ".join(
                f"{s['feature']} ({s['reason']})" for s in report.skipped
            )
        print_tables(
            make_table(
                f"Drift: {report.reference['path']} ({report.reference['rows']:,} rows) → "
                f"{report.current['path']} ({report.current['rows']:,} rows)",
                _COLUMNS,
                _feature_rows(report.features),
                caption=caption,
            )
        )

    finish(
        report.to_dict(),
        fmt,
        render,
        kind="drift compare",
        rows=Rows(tables=("features", "skipped")),
        quiet=quiet,
    )
    if report.drift:
        raise typer.Exit(int(ExitCode.DRIFT))


@drift_app.command("popularity")
def popularity_cmd(
    events: Annotated[Path, typer.Argument(help="Events log (file, glob or directory).")],
    end: EndOption = None,
    current: Annotated[
        str, typer.Option("--current", help="Length of the current window, ending at --end.")
    ] = "1d",
    reference: Annotated[
        str,
        typer.Option("--reference", help="Length of the reference window just before it."),
    ] = "7d",
    by: Annotated[
        str, typer.Option("--by", help="item (share of views per item) or category.")
    ] = "item",
    event: Annotated[
        str, typer.Option("--event", help="Which event type to count (view, cart, purchase, all).")
    ] = "view",
    items: ItemsOption = None,
    psi_threshold: PsiOption = DETECTORS.get("psi").default_threshold,
    ks_alpha: KsOption = DETECTORS.get("ks").default_threshold,
    js_threshold: JsOption = DETECTORS.get("js").default_threshold,
    detectors: Annotated[
        str,
        typer.Option(
            "--detectors",
            help=f"Comma-separated detectors that vote on drift: {', '.join(DETECTORS)}. Default "
            "psi: with "
            "thousands of items and a day of views, sampling noise alone pushes JS distance "
            "past 0.1 and chi-squared p-values to 0.",
        ),
    ] = "psi",
    max_categories: Annotated[
        int | None,
        typer.Option(
            "--max-categories",
            help="The reference window's N most-viewed items/categories get their own bin, the "
            "rest share '(other)'. Default: one bin per 25 current views (10-1000), which keeps "
            "PSI's sampling noise near 0.04; many sparse bins inflate PSI on noise alone.",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Share of views per item or category: the last --current window vs the --reference before it.

    --end ends the current window (default: just after the last event); --by category takes
    categories from --items (default: items.parquet next to EVENTS)."""
    from rtml_cli.continual.drift import parse_detectors, popularity_report
    from rtml_cli.output import finish, make_table, print_tables
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    report = popularity_report(
        events,
        current=parse_duration(current),
        reference=parse_duration(reference),
        detectors=parse_detectors(detectors, _thresholds(psi_threshold, ks_alpha, js_threshold)),
        end=parse_timestamp(end) if end is not None else None,
        by=by,
        event=None if event == "all" else event,
        items=items,
        max_categories=max_categories,
    )
    result, (ref_a, ref_b), (cur_a, cur_b) = (
        report.result,
        report.reference_window,
        report.current_window,
    )

    def render() -> None:
        print_tables(
            make_table(
                f"Popularity drift by {by}: {ref_a:%Y-%m-%d %H:%M} – {ref_b:%Y-%m-%d %H:%M}"
                f" → {cur_a:%Y-%m-%d %H:%M} – {cur_b:%Y-%m-%d %H:%M} (UTC)",
                _COLUMNS,
                _feature_rows([result]),
                caption=_verdict_line(
                    result.drift, [result.name] if result.drift else [], report.detectors
                )
                + f"\nnew {'items' if by == 'item' else 'categories'}: "
                f"{result.unseen_share:.1%} of current views",
            )
        )

    finish(report.to_dict(), fmt, render, kind="drift popularity", quiet=quiet)
    if result.drift:
        raise typer.Exit(int(ExitCode.DRIFT))


def register(app: typer.Typer) -> None:
    app.add_typer(drift_app, name="drift", rich_help_panel="Continual learning")
