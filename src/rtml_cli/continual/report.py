"""What a retraining simulation means: accuracy, cost, detector timing and a verdict.

Pure functions over an :class:`~rtml_cli.continual.engine.Simulation`; no training
happens here. Costs: ``train_seconds`` is measured wall time (varies a little from
run to run), ``rows`` (event rows the trainings read) and ``updates`` are exact.
Detector timing against a known shift: a check at time *t* sees only data before
*t*, so a firing at or before the shift is a false alarm; the first firing after it
is the detection, and it counts as timely within ``DETECTION_WINDOW_STEPS`` steps.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Any

from rtml_cli.continual.engine import ZERO, ScheduleRun, Score, Simulation
from rtml_cli.continual.schedules import Stateless

DETECTION_WINDOW_STEPS = 2  # a detection later than 2 steps after the shift is "late"
KEEP_SHARE = 0.95  # a cheaper schedule "keeps" accuracy when HR >= 95% of the baseline's


def baseline_run(sim: Simulation) -> ScheduleRun | None:
    """Stateless retraining every step on the full history (Stage 2), else any stateless run."""
    stateless = [(r, r.schedule) for r in sim.runs if isinstance(r.schedule, Stateless)]
    for run, schedule in stateless:
        if schedule.period == sim.step and schedule.window is None:
            return run
    return stateless[0][0] if stateless else None


def _total(steps: list[Score]) -> Score:
    out = ZERO
    for s in steps:
        out = out + s
    return out


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def ratio_text(ratio: float | None) -> str:
    """0.083 -> '1/12', 0.7 -> '0.70x', 1.0 -> 'the same', 2.5 -> '2.50x'."""
    if ratio is None or not math.isfinite(ratio):
        return "–"
    if ratio == 0:
        return "none"
    if 0.95 <= ratio <= 1.05:
        return "the same"
    if ratio < 0.5:
        return f"1/{1 / ratio:.0f}"
    return f"{ratio:.2f}x"


def summarize(
    sim: Simulation,
    *,
    k: int,
    shift_time: datetime | None = None,
) -> dict[str, Any]:
    """Per-step and overall accuracy, costs, detector timing and the verdict, as plain data."""
    base = baseline_run(sim)
    shift_step = None
    if shift_time is not None and sim.start < shift_time < sim.end:
        shift_step = next(i for i, t in enumerate(sim.step_starts) if t + sim.step > shift_time)
    steps = []
    schedules = []
    for run in sim.runs:
        for i, (t, score) in enumerate(zip(sim.step_starts, run.steps, strict=True)):
            made = [u for u in run.updates if t <= u.time < t + sim.step]
            steps.append(
                {
                    "step": i,
                    "start": t,
                    "schedule": run.schedule.spec,
                    "requests": score.requests,
                    "hits": score.hits,
                    "hr": _nan_to_none(score.hr),
                    "mrr": _nan_to_none(score.mrr),
                    "updates": len(made),
                    "update_modes": ",".join(sorted({u.mode for u in made})),
                }
            )
        total = run.total
        row: dict[str, Any] = {
            "schedule": run.schedule.spec,
            "kind": run.schedule.kind,
            "description": run.schedule.description,
            "requests": total.requests,
            "hr": _nan_to_none(total.hr),
            "mrr": _nan_to_none(total.mrr),
            "updates": len(run.updates),
            "full_updates": run.count("full"),
            "warm_updates": run.count("warm"),
            "rows": run.rows,
            "train_seconds": round(run.train_seconds, 3),
            "initial_seconds": round(run.initial.seconds, 3),
            "seconds_per_hr_point": (
                round(run.train_seconds / (100 * total.hr), 4)
                if total.hr and total.hr > 0
                else None
            ),
        }
        if shift_step is not None:
            before, after = _total(run.steps[:shift_step]), _total(run.steps[shift_step:])
            row["hr_before_shift"] = _nan_to_none(before.hr)
            row["hr_after_shift"] = _nan_to_none(after.hr)
            row["hr_last_step"] = _nan_to_none(run.steps[-1].hr)
        if base is not None:
            base_total = base.total
            row["hr_vs_baseline"] = (
                _nan_to_none(total.hr / base_total.hr) if base_total.hr else None
            )
            row["time_ratio_vs_baseline"] = (
                round(run.train_seconds / base.train_seconds, 4) if base.train_seconds else None
            )
            row["rows_ratio_vs_baseline"] = round(run.rows / base.rows, 4) if base.rows else None
        if run.checks:
            fired = [c.time for c in run.checks if c.reading.fired]
            row["checks"] = len(run.checks)
            row["fired"] = len(fired)
            if shift_time is not None:
                false_alarms = [t for t in fired if t <= shift_time]
                fired_after = [t for t in fired if t > shift_time]
                delay = (fired_after[0] - shift_time) if fired_after else None
                row["false_alarms"] = len(false_alarms)
                row["first_fire_after_shift"] = fired_after[0] if fired_after else None
                row["detection_delay_hours"] = (
                    round(delay.total_seconds() / 3600, 2) if delay is not None else None
                )
                row["detected_in_time"] = (
                    delay is not None and delay <= DETECTION_WINDOW_STEPS * sim.step
                )
        schedules.append(row)
    summary = {
        "start": sim.start,
        "end": sim.end,
        "step_seconds": sim.step.total_seconds(),
        "tick_seconds": sim.tick.total_seconds(),
        "k": k,
        "shift_time": shift_time,
        "baseline": base.schedule.spec if base else None,
        "schedules": schedules,
        "steps": steps,
        "updates": [
            {"schedule": run.schedule.spec, **u.to_dict()}
            for run in sim.runs
            for u in [run.initial, *run.updates]
        ],
        "checks": [
            {"schedule": run.schedule.spec, **c.to_dict()} for run in sim.runs for c in run.checks
        ],
    }
    summary["verdict"] = verdict(summary)
    return summary


def verdict(summary: dict[str, Any]) -> str:
    """One line a team can act on: the cheapest schedule that keeps the baseline's accuracy,
    what never updating costs after the shift, and how the detectors timed the shift."""
    k = summary["k"]
    rows = {r["schedule"]: r for r in summary["schedules"]}
    base = rows.get(summary["baseline"]) if summary["baseline"] else None
    parts = []
    if base is not None and base["hr"]:
        others = [
            r
            for r in rows.values()
            if r is not base and r["updates"] > 0 and r.get("time_ratio_vs_baseline") is not None
        ]
        keepers = [r for r in others if (r["hr_vs_baseline"] or 0) >= KEEP_SHARE]
        if keepers:
            pick = min(keepers, key=lambda r: (r["train_seconds"], -r["hr"]))
            parts.append(
                f"{pick['schedule']} kept {pick['hr_vs_baseline']:.0%} of {base['schedule']}'s "
                f"HR@{k} ({pick['hr']:.3f} vs {base['hr']:.3f}) at "
                f"{ratio_text(pick['time_ratio_vs_baseline'])} of its training time "
                f"({ratio_text(pick['rows_ratio_vs_baseline'])} of the rows, "
                f"{pick['updates']} vs {base['updates']} updates)"
            )
        elif others:
            best = max(others, key=lambda r: r["hr"] or 0)
            parts.append(
                f"no cheaper schedule kept {KEEP_SHARE:.0%} of {base['schedule']}'s HR@{k}: "
                f"the best, {best['schedule']}, reached {best['hr_vs_baseline']:.0%} "
                f"at {ratio_text(best['time_ratio_vs_baseline'])} of its training time"
            )
        else:
            parts.append(f"{base['schedule']}: HR@{k} {base['hr']:.3f}")
    never = next((r for r in rows.values() if r["kind"] == "never"), None)
    if (
        never is not None
        and never.get("hr_before_shift")
        and never.get("hr_after_shift") is not None
    ):
        lost = 1 - never["hr_after_shift"] / never["hr_before_shift"]
        parts.append(
            f"never updating lost {lost:.0%} of HR@{k} after the shift "
            f"({never['hr_before_shift']:.3f} -> {never['hr_after_shift']:.3f})"
        )
    elif never is not None and base is not None and base["hr"] and never["hr"] is not None:
        parts.append(f"never updating reached {never['hr'] / base['hr']:.0%} of {base['schedule']}")
    for r in rows.values():
        if r.get("checks") and "false_alarms" in r:
            when = (
                f"first {r['detection_delay_hours']:g} h after the shift"
                if r["detection_delay_hours"] is not None
                else "never after the shift"
            )
            parts.append(
                f"{r['schedule']} updated {r['updates']}x ({when}, {r['false_alarms']} false alarm"
                f"{'' if r['false_alarms'] == 1 else 's'})"
            )
    return "; ".join(parts) if parts else "nothing to compare"


def plot(summary: dict[str, Any], path: Path) -> None:
    """HR@K per step and schedule, the shift as a dashed line, updates of triggered schedules
    (``plotting.retrain_figure``, the chart ``rtml report`` shows)."""
    from rtml_cli.plotting import retrain_figure, save_png

    save_png(retrain_figure(summary), path)
