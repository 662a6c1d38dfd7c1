"""`rtml retrain`: what each retraining regime costs and buys, replayed on your own log."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.output import FormatOption, OutputFormat, QuietOption

DEFAULT_SCHEDULES = "stateless:1d,stateful:1d,triggered,never"


def retrain_cmd(
    events: Annotated[Path, typer.Argument(help="Events log (Parquet file, glob or directory).")],
    start: Annotated[
        str | None,
        typer.Option(
            "--start", help="First replayed step (ISO time). Default: 7 days after the first event."
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--end", help="End of the last step. Default: the last whole step of data."),
    ] = None,
    step: Annotated[
        str, typer.Option("--step", help="Replay and report accuracy per step of this length.")
    ] = "1d",
    schedules: Annotated[
        str,
        typer.Option(
            "--schedules",
            help="Comma-separated: never, stateless[:PERIOD[:WINDOW]], stateful[:PERIOD], "
            "triggered[:psi|ks|performance[:THRESHOLD]]. PERIOD defaults to --step.",
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
    k: Annotated[int, typer.Option("--k", help="Length of the served list (HR@K, MRR@K).")] = 20,
    strategy: Annotated[
        str,
        typer.Option("--strategy", help="The `rtml simulate` strategy replayed with each model."),
    ] = "session-embedding",
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
    items: Annotated[
        Path | None,
        typer.Option("--items", help="Items table (default: items.parquet next to EVENTS)."),
    ] = None,
    world: Annotated[
        Path | None,
        typer.Option(
            "--world",
            help="world.json with the known shift_time (default: world.json next to EVENTS).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Write summary.json, steps.parquet, updates.parquet, checks.parquet here "
            "(replaced atomically).",
        ),
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Write HR@K per step and schedule as a PNG.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of precompute and replay.")] = 0,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Stateless vs stateful vs drift-triggered retraining: accuracy per step, training cost,
    detector timing vs the known shift, and a verdict."""
    from rtml_cli.continual.retrain import run_retrain
    from rtml_cli.continual.schedules import TRIGGER_DETECTORS, parse_schedules
    from rtml_cli.errors import UsageError
    from rtml_cli.output import emit_json, progress
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    step_td = parse_duration(step)
    if step_td.total_seconds() <= 0:
        raise UsageError("--step must be a positive duration, e.g. 1d")
    ref_td = parse_duration(reference)
    if ref_td < step_td:
        raise UsageError(f"--reference {reference} must be at least one --step ({step})")
    if drift not in TRIGGER_DETECTORS:
        raise UsageError(
            f"--drift {drift!r} is not a detector: choose from {', '.join(TRIGGER_DETECTORS)}"
        )
    if threshold is not None:
        from rtml_cli.continual.schedules import check_trigger_threshold

        check_trigger_threshold(drift, threshold)
    scheds = parse_schedules(
        schedules,
        step=step_td,
        full_every=full_every,
        drift=drift,
        threshold=threshold,
        reference=ref_td,
    )
    if n_trees < 1 or (dim is not None and dim < 2):
        raise UsageError("--trees must be >= 1 and --dim >= 2")
    # Stage-1 lists only need K items to score HR@K: no need to rank 50 per user.
    params = {"n_trees": n_trees, "top_k": k}
    if dim is not None:
        params["dim"] = dim
    start_ts = parse_timestamp(start) if start else None
    end_ts = parse_timestamp(end) if end else None
    from rtml_cli.fsutil import PNG_OUTPUT, check_output, directory_output

    if out is not None:
        check_output(out, directory_output("retrain"), option="--out")
    if plot is not None:
        check_output(plot, PNG_OUTPUT, option="--plot")
    import sys

    with progress(quiet or fmt is OutputFormat.json or not sys.stderr.isatty()) as bar:
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
        )
    if out is not None:
        write_outputs(summary, out)
    if plot is not None:
        from rtml_cli.continual.report import plot as draw

        draw(summary, plot)
    if fmt is OutputFormat.json:
        emit_json(summary)
    elif not quiet:
        render(summary)


def write_outputs(summary: dict, out: Path) -> None:
    """summary.json + per-step, update and check tables, published as one directory."""
    import json

    import polars as pl

    from rtml_cli.fsutil import atomic_path, directory_output

    def iso(value):
        return value.isoformat() if hasattr(value, "isoformat") else str(value)

    with atomic_path(out, directory_output("retrain"), option="--out") as tmp:
        tmp.mkdir()
        (tmp / "summary.json").write_text(json.dumps(summary, indent=2, default=iso) + "\n")
        for name in ("steps", "updates", "checks"):
            rows = summary[name]
            frame = (
                pl.DataFrame(rows)
                if rows
                else pl.DataFrame({"schedule": []}, schema={"schedule": pl.String})
            )
            frame.write_parquet(tmp / f"{name}.parquet")


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
    # Schedule names are what a reader scans for: never squeeze them.
    tables[0].columns[0].no_wrap = True
    tables[0].columns[0].min_width = max(len(r["schedule"]) for r in summary["schedules"])
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
