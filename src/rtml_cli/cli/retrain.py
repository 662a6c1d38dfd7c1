"""`rtml retrain`: what each retraining regime costs and buys, replayed on your own log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.cli.options import (
    AddressOption,
    EndOption,
    EngineOption,
    FormatOption,
    ItemsOption,
    KOption,
    PlotOption,
    QuietOption,
    SeedOption,
    ShardsOption,
    StartOption,
    StrategyModuleOption,
    WorldOption,
)
from rtml_cli.continual.retrain import DEFAULT_STRATEGY
from rtml_cli.continual.schedules import DEFAULT_SCHEDULES, SCHEDULES
from rtml_cli.output import OutputFormat

SPELLINGS = [SCHEDULES.entry(name).meta["usage"] for name in SCHEDULES]


def retrain_cmd(
    events: Annotated[Path, typer.Argument(help="Events log (Parquet file, glob or directory).")],
    start: StartOption = None,
    end: EndOption = None,
    step: Annotated[
        str, typer.Option("--step", help="Replay and report accuracy per step of this length.")
    ] = "1d",
    schedules: Annotated[
        str,
        typer.Option(
            "--schedules",
            help=f"Comma-separated: {', '.join(SPELLINGS)}. PERIOD defaults to --step.",
        ),
    ] = DEFAULT_SCHEDULES,
    full_every: Annotated[
        int,
        typer.Option(
            "--full-every",
            help="stateful/triggered: every Nth update is a full retrain (0 = never).",
        ),
    ] = 0,
    drift: Annotated[
        str,
        typer.Option(
            "--drift",
            help="Detector of a plain 'triggered' schedule: ks (KS distance of the viewed items' "
            "popularity percentiles; robust to trending bursts), psi (item-popularity PSI; strong "
            "bursts also move it) or performance (drop of replay HR).",
        ),
    ] = "ks",
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold",
            help="Threshold of --drift: psi > X (default 0.2), ks D > X (0.1), performance: "
            "relative HR drop > X (0.1).",
        ),
    ] = None,
    reference: Annotated[
        str,
        typer.Option(
            "--reference",
            help="Triggered: compare the last step with this much data before the model's "
            "last update (and judge performance over this many steps).",
        ),
    ] = "7d",
    k: KOption = 20,
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            help="The `rtml simulate` strategy replayed with each model (or a plug-in's).",
        ),
    ] = DEFAULT_STRATEGY,
    strategy_module: StrategyModuleOption = None,
    sample: Annotated[
        int,
        typer.Option(
            "--sample",
            help="Replay one session in N (deterministic by session id) to go faster; 1 = all.",
        ),
    ] = 1,
    dim: Annotated[
        int | None, typer.Option("--dim", help="Embedding size of every precompute run.")
    ] = None,
    n_trees: Annotated[
        int, typer.Option("--trees", help="Annoy trees of every precompute run.")
    ] = 10,
    items: ItemsOption = None,
    world: WorldOption = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write summary.json, steps.parquet, updates.parquet, checks.parquet here "
            "(replaced atomically).",
        ),
    ] = None,
    plot: PlotOption = None,
    seed: SeedOption = 0,
    engine: EngineOption = "local",
    address: AddressOption = None,
    shards: ShardsOption = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Stateless vs stateful vs drift-triggered retraining: accuracy per step, training cost,
    detector timing vs the known shift, and a verdict.

    --start is the first replayed step (default: 7 days after the first event), --end the end
    of the last step (default: the last whole step of data); --items defaults to
    items.parquet next to EVENTS, --world to the world.json next to EVENTS (its shift_time
    marks the known shift); --plot draws HR@K per step and schedule; --seed seeds precompute
    and replay; --engine ray runs every replay as --shards Ray tasks (same results)."""
    import sys

    from rtml_cli.continual.outputs import RETRAIN_OUTPUT, write_retrain_outputs
    from rtml_cli.continual.retrain import precompute_params, run_retrain
    from rtml_cli.continual.schedules import retrain_schedules
    from rtml_cli.fsutil import check_output
    from rtml_cli.online.plugins import load_strategies
    from rtml_cli.output import Rows, finish, progress
    from rtml_cli.plotting import check_png_target
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    load_strategies([strategy], strategy_module or [])  # plug-ins, checked before any work
    step_td = parse_duration(step)
    scheds = retrain_schedules(
        schedules,
        step=step_td,
        reference=parse_duration(reference),
        drift=drift,
        threshold=threshold,
        full_every=full_every,
    )
    params = precompute_params(n_trees=n_trees, dim=dim, k=k)
    start_ts = parse_timestamp(start) if start else None
    end_ts = parse_timestamp(end) if end else None
    if out is not None:
        check_output(out, RETRAIN_OUTPUT, option="--out")
    if plot is not None:
        check_png_target(plot)  # matplotlib present, path replaceable: before the replay

    with progress(quiet or fmt is not OutputFormat.table or not sys.stderr.isatty()) as bar:
        task = bar.add_task("replaying", total=None)

        def on_tick(now) -> None:
            bar.update(task, description=f"step {now:%Y-%m-%d %H:%M}", advance=1)

        _, summary = run_retrain(
            events,
            scheds,
            step=step_td,
            start=start_ts,
            end=end_ts,
            k=k,
            strategy=strategy,
            sample=sample,
            items=items,
            world=world,
            precompute_params=params,
            seed=seed,
            on_tick=on_tick,
            engine=engine,
            address=address,
            shards=shards,
        )
    if out is not None:
        write_retrain_outputs(summary, out)
    if plot is not None:
        from rtml_cli.continual.report import plot as draw

        draw(summary, plot)
    finish(
        summary,
        fmt,
        lambda: render(summary),
        kind="retrain",
        rows=Rows(tables=("schedules", "steps", "updates", "checks")),
        quiet=quiet,
    )


def render(summary: dict) -> None:
    from rtml_cli.continual.report import ratio_text
    from rtml_cli.output import make_table, print_tables

    k = summary["k"]
    shift = summary.get("shift_time")
    in_window = any("hr_before_shift" in r for r in summary["schedules"])
    cols = ["schedule", f"HR@{k}", f"MRR@{k}"]
    if in_window:
        cols += ["HR before", "HR after"]
    cols += ["updates f/w", "rows read", "train s", "s/HR pt", "time/base", "rows/base"]
    rows = []
    for r in summary["schedules"]:
        row = [r["schedule"], r["hr"], r["mrr"]]
        if in_window:
            row += [r.get("hr_before_shift"), r.get("hr_after_shift")]
        row += [
            f"{r['full_updates']}/{r['warm_updates']}",
            r["rows"],
            r["train_seconds"],
            r["seconds_per_hr_point"],
            ratio_text(r.get("time_ratio_vs_baseline")),
            ratio_text(r.get("rows_ratio_vs_baseline")),
        ]
        rows.append(row)
    tables = [
        make_table(
            f"Retraining schedules, {summary['start']:%Y-%m-%d} – {summary['end']:%Y-%m-%d}"
            f" (baseline: {summary['baseline'] or 'none'})",
            cols,
            rows,
            caption="HR before/after: before and after the known shift; f/w: full/warm updates; "
            "train s: measured wall time of the updates (the initial model is shared); rows: "
            "event rows the trainings read; s/HR pt: training seconds per HR point; "
            "/base: ratio to the baseline",
            digits=3,
        )
    ]
    specs = [r["schedule"] for r in summary["schedules"]]
    by_step: dict = {}
    for s in summary["steps"]:
        by_step.setdefault(s["start"], {})[s["schedule"]] = s
    step_rows = []
    for t, cells in by_step.items():
        marker = " ← shift" if shift and t <= shift < t + _step(summary) else ""
        step_rows.append(
            [f"{t:%Y-%m-%d %H:%M}{marker}"]
            + [
                (f"{c['hr']:.3f}" if c["hr"] is not None else "–") + ("*" if c["updates"] else "")
                for c in (cells[spec] for spec in specs)
            ]
        )
    tables.append(
        make_table(
            f"HR@{k} per step (* = the model was updated at the start of that step)",
            ["step", *specs],
            step_rows,
        )
    )
    detectors = [r for r in summary["schedules"] if r.get("checks")]
    if detectors:
        det_rows = []
        for r in detectors:
            fired = [
                c["time"]
                for c in summary["checks"]
                if c["schedule"] == r["schedule"] and c["fired"]
            ]
            det_rows.append(
                [
                    r["schedule"],
                    r["checks"],
                    r["fired"],
                    ", ".join(f"{t:%m-%d %H:%M}" for t in fired) or "–",
                    r.get("false_alarms"),
                    r.get("detection_delay_hours"),
                ]
            )
        tables.append(
            make_table(
                "When the detectors fired"
                + (f" (known shift: {shift:%Y-%m-%d %H:%M})" if shift else ""),
                [
                    "schedule",
                    "checks",
                    "fired",
                    "fired at",
                    "false alarms",
                    "delay after shift (h)",
                ],
                det_rows,
            )
        )
    from rich.text import Text

    tables.append(Text(f"Verdict: {summary['verdict']}"))
    print_tables(*tables)


def _step(summary: dict):
    from datetime import timedelta

    return timedelta(seconds=summary["step_seconds"])


def register(app: typer.Typer) -> None:
    app.command(
        "retrain",
        rich_help_panel="Continual learning",
        help="Stateless vs stateful vs drift-triggered retraining, replayed on your own log.",
    )(retrain_cmd)
