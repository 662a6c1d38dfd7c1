"""`rtml report`: one migration report from rtml's outputs, as self-contained HTML or Markdown."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.cli.options import QuietOption, SeedOption


class ReportFormat(str, Enum):
    html = "html"
    md = "md"


def report_cmd(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="JSON documents of --format json, RESULTS Parquet files (rtml simulate --out), "
            "precompute runs or ROOTs, or directories holding any of them.",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="The report file to write (atomically); with --format md its charts go to "
            "OUT_files/ beside it.",
        ),
    ],
    fmt: Annotated[
        ReportFormat,
        typer.Option(
            "--format",
            "-f",
            case_sensitive=False,
            help="html: one self-contained page (charts inline, no network); md: Markdown "
            "with the charts as SVG files beside it.",
        ),
    ] = ReportFormat.html,
    title: Annotated[
        str, typer.Option("--title", help="The report's title.")
    ] = "Batch to online: migration report",
    budget_ms: Annotated[
        float,
        typer.Option(
            "--budget-ms",
            min=0.001,
            help="Latency budget of the whole request in milliseconds, for the latency section.",
        ),
    ] = 100.0,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            "-b",
            min=0,
            help="Session-bootstrap replicates of RESULTS for the 95% intervals the simulate "
            "document does not carry (0: none).",
        ),
    ] = 1000,
    hit_to_click: Annotated[
        float | None,
        typer.Option(
            "--hit-to-click",
            min=0.0,
            max=1.0,
            help="Your assumed share of hits@K that become clicks (e.g. 0.12): adds expected "
            "extra clicks per 1,000 requests, stated as your assumption. Without it the report "
            "shows no click figure.",
        ),
    ] = None,
    seed: SeedOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Write one report a team can hand to its decision makers: the verdict first (each
    claim with its number and 95% interval), then Stage 1 → 2 → 3 by segment and slice,
    latency against --budget-ms, freshness and ablation, bandits vs A/B tests, off-policy
    estimates, continual learning, the data and a reproducibility appendix.

    Sections appear for what the inputs hold; for the rest the report says how to get
    them. Intervals come from a session bootstrap over RESULTS (paired for differences),
    seeded by --seed. Example: rtml report demo_out --out demo_out/report.html
    """
    from rtml_cli.output import command_line, info, warn
    from rtml_cli.plotting import available
    from rtml_cli.report import Options, build_report, check_targets, load_inputs, write_report

    check_targets(out, fmt.value)
    loaded = load_inputs(list(inputs))
    charts = available()
    if not charts:
        warn("matplotlib is not installed: the report has no charts (pip install 'rtml[plot]')")
    options = Options(
        title=title,
        budget_ms=budget_ms,
        bootstrap=bootstrap,
        seed=seed,
        charts=charts,
        command=command_line(),
        hit_to_click=hit_to_click,
    )
    report = build_report(loaded, options)
    written = write_report(report, out, fmt.value)
    size = sum(p.stat().st_size for p in written if p.is_file())
    info(
        f"wrote {', '.join(str(p) for p in written)} ({size / 1024:,.0f} KiB; "
        f"{len(report.verdict)} claims from {len(loaded.files)} input files)",
        quiet=quiet,
    )


def register(app: typer.Typer) -> None:
    app.command(
        "report",
        rich_help_panel="Report",
        help="One migration report (HTML or Markdown) from rtml's JSON documents and RESULTS.",
    )(report_cmd)
