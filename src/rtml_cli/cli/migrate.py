"""`rtml migrate`: from a team's own log to the migration report, in one resumable command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from rtml_cli.cli.options import (
    BaselineRecsOption,
    EventMapOption,
    FormatOption,
    IgnoreEventsOption,
    ItemsOption,
    KOption,
    MapOption,
    QuietOption,
    SeedOption,
    SessionGapOption,
    split_words,
)
from rtml_cli.migrate.plan import STEPS
from rtml_cli.output import OutputFormat


def migrate_cmd(
    events: Annotated[
        str,
        typer.Argument(
            help="Your event log: a CSV export (mapped with --map / --map-event) or Parquet "
            "(a file, a glob or a directory).",
            show_default=False,
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Directory for every output (new, empty, or an earlier `rtml migrate` DIR "
            "to resume).",
        ),
    ],
    items: ItemsOption = None,
    holdout: Annotated[
        str | None,
        typer.Option(
            "--holdout",
            help="Replay the last this much of the log (precompute sees only what came "
            "before; default 7d).",
        ),
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Split at this time instead of --holdout (ISO 8601)."),
    ] = None,
    baseline_recs: BaselineRecsOption = None,
    mapping: MapOption = None,
    event_map: EventMapOption = None,
    ignore_events: IgnoreEventsOption = None,
    session_gap: SessionGapOption = "30m",
    strategies: Annotated[
        str | None,
        typer.Option(
            "--strategies",
            "-s",
            help="Comma-separated strategies to replay (default: every stage's defaults, and "
            "baseline with --baseline-recs).",
        ),
    ] = None,
    k: KOption = 20,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="Replay a deterministic sample of the holdout's sessions: 10% or a number "
            "(intervals widen accordingly).",
        ),
    ] = None,
    hit_to_click: Annotated[
        float | None,
        typer.Option(
            "--hit-to-click",
            help="Your assumed share of hits@K that become clicks (e.g. 0.12): the report "
            "then states expected extra clicks per 1,000 requests. Without it, no click "
            "figure appears.",
        ),
    ] = None,
    seeds: Annotated[
        int, typer.Option("--seeds", min=1, help="Bandit vs A/B runs (each a new order).")
    ] = 100,
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", min=0, help="Session-bootstrap replicates for intervals."),
    ] = 1000,
    skip: Annotated[
        str | None,
        typer.Option(
            "--skip",
            help=f"Comma-separated steps not to run ({', '.join(STEPS)}); later steps use "
            "their earlier outputs in DIR.",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Rerun every step, even those done earlier in DIR."),
    ] = False,
    seed: SeedOption = 0,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """From your own log to the answer: validate, precompute as of the holdout's start,
    replay the holdout with every stage's strategies (and your own lists), check drift,
    evaluate bandits vs an A/B test, and write DIR/report.html and DIR/report.md.

    Every intermediate output stays in DIR (DIR/migrate.json lists them). A rerun reuses
    each step done earlier with the same inputs, so a killed run resumes where it stopped.
    Example: rtml migrate clicks.csv --out migration --map ts=event_time,item_id=sku
    --map-event add_to_cart=cart --holdout 7d
    """
    from rtml_cli.cli.simulate import replay_progress
    from rtml_cli.data.importers import parse_event_map, parse_mapping
    from rtml_cli.migrate import MigrateOptions, run_migrate
    from rtml_cli.output import Rows, finish, info, warn
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    def _split(text: str | None) -> tuple[str, ...]:
        return tuple(split_words(text))

    options = MigrateOptions(
        events=events,
        out=out,
        items=Path(items) if items else None,
        holdout=parse_duration(holdout) if holdout is not None else None,
        as_of=parse_timestamp(as_of) if as_of is not None else None,
        baseline_recs=baseline_recs,
        mapping=parse_mapping(mapping),
        event_map=parse_event_map(event_map),
        ignore_events=_split(ignore_events),
        session_gap=parse_duration(session_gap),
        strategies=_split(strategies),
        k=k,
        sample=sample,
        hit_to_click=hit_to_click,
        seeds=seeds,
        bootstrap=bootstrap,
        seed=seed,
        skip=frozenset(_split(skip)),
        force=force,
    )
    show = fmt is OutputFormat.table and not quiet
    result = run_migrate(
        options,
        log=lambda message: info(message, quiet=quiet),
        replay_progress=lambda: replay_progress(show),
    )
    for message in result.warnings:
        warn(message)
    finish(
        result.to_dict,
        fmt,
        lambda: _render(result),
        kind="migrate",
        rows=Rows(tables=("steps", "verdict")),
        quiet=quiet,
    )


def _render(result: Any) -> None:
    from rich.text import Text

    from rtml_cli.output import make_table, print_tables

    rows = []
    for record in result.steps:
        shown = [_relative(p, result.out) for p in record.outputs.values()]
        seconds = f"{record.seconds:.1f}" if record.status == "ran" else "–"
        rows.append((record.step, record.status, seconds, "\n".join(shown) or record.note or "–"))
    split = result.split
    caption = None
    if split is not None:
        against = "your lists (baseline)" if result.control == "baseline" else result.control
        caption = (
            f"history: {split.history_events:,} events before {split.as_of:%Y-%m-%d %H:%M:%S} "
            f"UTC; holdout ({split.how}): {split.holdout_events:,} events to "
            f"{split.last_event:%Y-%m-%d %H:%M:%S} UTC. Verdicts compare with {against}."
        )
    steps = make_table(
        f"rtml migrate: {result.out}", ["step", "status", "seconds", "outputs (in DIR)"], rows
    )
    if caption:
        steps.caption = caption
    verdict = Text("Verdict (95% intervals; the report explains each figure):\n")
    for claim in result.verdict:
        verdict.append(f"• {claim['topic']}: {claim['text']}\n")
    if not result.verdict:
        verdict = Text("No verdict: the report step did not run in this run (--skip report).\n")
    html, markdown = result.output("report", "html"), result.output("report", "markdown")
    if html:
        verdict.append(f"Report: {html}\n        {markdown}")
    print_tables(steps, verdict)


def _relative(path: str, out: Path) -> str:
    try:
        return str(Path(path).relative_to(out))
    except ValueError:
        return path


def register(app: typer.Typer) -> None:
    app.command("migrate", rich_help_panel="Report")(migrate_cmd)
