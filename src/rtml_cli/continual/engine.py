"""The retraining simulation: walk through time, let every schedule update, replay the next step.

Independent of how a model is trained or scored: it drives a :class:`Trainer`
(full or warm-start training up to a time) and an :class:`Evaluator` (replay
accuracy of a model over a time window). ``rtml retrain`` plugs in the real
precompute and replay engine (``continual.retrain``); tests plug in tiny fakes.

Timeline. The initial model of every schedule is trained on the history before
``start``. The clock then ticks (a tick is the largest duration every step and
schedule period is a multiple of); at each tick boundary every schedule may
update using only data before that time, then each schedule's current model is
replayed on the tick's traffic. Accuracy is reported per step. Trainings and
replays that two schedules share (same data, same lineage) are computed once
and charged to both, so the cost figures are what each regime would pay alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from rtml_cli.continual.schedules import (
    FULL,
    Reading,
    Schedule,
    ScheduleContext,
    Stateless,
    StepAccuracy,
    Update,
)
from rtml_cli.errors import UsageError
from rtml_cli.timeutil import format_duration

MAX_TICKS = 20_000


@dataclass
class TrainOutcome:
    model: Any  # what the evaluator replays
    state: Any  # what a warm start continues from
    rows: int  # event rows this training read


class Trainer(Protocol):
    def train(self, *, until: datetime, since: datetime | None, state: Any | None) -> TrainOutcome:
        """Full training on ``[since or the beginning, until)`` when ``state`` is None; else a
        warm start from ``state`` with only the events in ``[since, until)``."""
        ...


@dataclass(frozen=True)
class Score:
    requests: int
    hits: int
    rr_sum: float

    def __add__(self, other: Score) -> Score:
        return Score(
            self.requests + other.requests, self.hits + other.hits, self.rr_sum + other.rr_sum
        )

    @property
    def hr(self) -> float:
        return self.hits / self.requests if self.requests else float("nan")

    @property
    def mrr(self) -> float:
        return self.rr_sum / self.requests if self.requests else float("nan")


ZERO = Score(0, 0, 0.0)


class Evaluator(Protocol):
    def evaluate(self, model: Any, start: datetime, end: datetime) -> Score:
        """Replay the requests in ``[start, end)`` against ``model``."""
        ...


DriftSignal = Callable[..., Reading]  # (detector, threshold, reference=(a, b), current=(a, b))


@dataclass
class UpdateRecord:
    time: datetime
    mode: str  # full | warm | initial
    reason: str
    rows: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "mode": self.mode,
            "reason": self.reason,
            "rows": self.rows,
            "seconds": round(self.seconds, 4),
        }


@dataclass
class Check:
    time: datetime
    reading: Reading

    def to_dict(self) -> dict[str, Any]:
        r = self.reading
        return {
            "time": self.time,
            "detector": r.detector,
            "value": r.value,
            "threshold": r.threshold,
            "fired": r.fired,
            "detail": r.detail,
        }


@dataclass
class ScheduleRun:
    schedule: Schedule
    initial: UpdateRecord
    steps: list[Score] = field(default_factory=list)
    updates: list[UpdateRecord] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    @property
    def total(self) -> Score:
        out = ZERO
        for s in self.steps:
            out = out + s
        return out

    @property
    def train_seconds(self) -> float:
        return sum(u.seconds for u in self.updates)

    @property
    def rows(self) -> int:
        return sum(u.rows for u in self.updates)

    def count(self, mode: str) -> int:
        return sum(1 for u in self.updates if u.mode == mode)


@dataclass
class Simulation:
    start: datetime
    end: datetime
    step: timedelta
    tick: timedelta
    step_starts: list[datetime]
    runs: list[ScheduleRun]


@dataclass
class _Slot:
    key: str
    model: Any
    state: Any
    cutoff: datetime
    updates_since_full: int = 0
    history: list[StepAccuracy] = field(default_factory=list)
    pending: Score = ZERO  # accuracy accumulated in the current step


def simulate_schedules(
    schedules: list[Schedule],
    *,
    trainer: Trainer,
    evaluator: Evaluator,
    start: datetime,
    end: datetime,
    step: timedelta,
    tick: timedelta | None = None,
    drift: DriftSignal | None = None,
    on_tick: Callable[[datetime], None] | None = None,
) -> Simulation:
    """Run every schedule over ``[start, end)`` and score it step by step (see module doc)."""
    tick, n_ticks = _clock(schedules, start, end, step, tick)
    ticks_per_step = step // tick
    cache: dict[str, tuple[TrainOutcome, float]] = {}

    def train(key: str, **kwargs) -> tuple[TrainOutcome, float]:
        if key not in cache:
            began = time.perf_counter()
            outcome = trainer.train(**kwargs)
            cache[key] = (outcome, time.perf_counter() - began)
        return cache[key]

    slots, runs = _initial_models(schedules, start, train)
    for k in range(n_ticks):
        now = start + k * tick
        if on_tick is not None:
            on_tick(now)
        if k:
            _decide_updates(schedules, slots, runs, now, start, step, drift, train)
            _release_unheld(cache, slots, trainer)
        _score_tick(slots, evaluator, now, tick)
        if (k + 1) % ticks_per_step == 0:
            _close_step(slots, runs, now + tick - step)
    return Simulation(
        start=start,
        end=end,
        step=step,
        tick=tick,
        step_starts=[start + i * step for i in range(n_ticks // ticks_per_step)],
        runs=runs,
    )


def _clock(
    schedules: list[Schedule],
    start: datetime,
    end: datetime,
    step: timedelta,
    tick: timedelta | None,
) -> tuple[timedelta, int]:
    """The clock tick (the finest schedule period unless given) and the number of ticks."""
    from rtml_cli.continual.schedules import tick_for

    if not schedules:
        raise UsageError("no schedule to simulate")
    if step <= timedelta(0):
        raise UsageError("--step must be a positive duration, e.g. 1d")
    if end <= start:
        raise UsageError(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    if (end - start) % step:
        raise UsageError(
            f"--start to --end ({end - start}) is not a whole number of --step {format_duration(step)}"
        )
    tick = tick or tick_for(step, schedules)
    n_ticks = (end - start) // tick
    if n_ticks > MAX_TICKS:
        raise UsageError(
            f"{n_ticks:,} clock ticks of {format_duration(tick)} (the finest schedule period): "
            f"at most {MAX_TICKS:,}; use coarser periods or a shorter --start/--end"
        )
    return tick, n_ticks


def _initial_models(
    schedules: list[Schedule], start: datetime, train
) -> tuple[list[_Slot], list[ScheduleRun]]:
    """Every schedule's model before ``start`` (a stateless window trains on its window)."""
    slots: list[_Slot] = []
    runs: list[ScheduleRun] = []
    for sched in schedules:
        window = sched.window if isinstance(sched, Stateless) else None
        since = start - window if window else None
        key = f"full[{_k(since)},{_k(start)})"
        outcome, seconds = train(key, until=start, since=since, state=None)
        slots.append(_Slot(key, outcome.model, outcome.state, start))
        runs.append(
            ScheduleRun(
                sched, UpdateRecord(start, "initial", "before --start", outcome.rows, seconds)
            )
        )
    return slots, runs


def _decide_updates(schedules, slots, runs, now, start, step, drift, train) -> None:
    """Ask each schedule whether it updates now, and apply the updates it asks for."""
    for sched, slot, run in zip(schedules, slots, runs, strict=True):
        ctx = ScheduleContext(
            now=now,
            start=start,
            step=step,
            model_cutoff=slot.cutoff,
            updates_since_full=slot.updates_since_full,
            accuracy=list(slot.history),
            drift=drift,
        )
        update = sched.due(ctx)
        run.checks.extend(Check(now, r) for r in ctx.readings)
        if update is not None:
            _apply(update, now, slot, run, train)


def _release_unheld(cache: dict[str, tuple[TrainOutcome, float]], slots, trainer) -> None:
    """Free the models no schedule holds any more (the trainer may delete their files)."""
    live = {slot.key for slot in slots}
    for key in [key for key in cache if key not in live]:
        outcome, _ = cache.pop(key)
        if hasattr(trainer, "release"):
            trainer.release(outcome)


def _score_tick(slots: list[_Slot], evaluator: Evaluator, now: datetime, tick: timedelta) -> None:
    """Score each distinct live model on ``[now, now + tick)`` once, shared by its holders."""
    scored: dict[str, Score] = {}
    for slot in slots:
        if slot.key not in scored:
            scored[slot.key] = evaluator.evaluate(slot.model, now, now + tick)
        slot.pending = slot.pending + scored[slot.key]


def _close_step(slots: list[_Slot], runs: list[ScheduleRun], step_start: datetime) -> None:
    """Record each schedule's accuracy over the step that just ended."""
    for slot, run in zip(slots, runs, strict=True):
        run.steps.append(slot.pending)
        slot.history.append(StepAccuracy(step_start, slot.pending.requests, slot.pending.hits))
        slot.pending = ZERO


def _k(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat()


def _apply(update: Update, now: datetime, slot: _Slot, run: ScheduleRun, train) -> None:
    if update.mode == FULL:
        since = now - update.window if update.window else None
        key = f"full[{_k(since)},{_k(now)})"
        outcome, seconds = train(key, until=now, since=since, state=None)
        slot.updates_since_full = 0
    else:
        key = f"{slot.key}+warm[{_k(slot.cutoff)},{_k(now)})"
        outcome, seconds = train(key, until=now, since=slot.cutoff, state=slot.state)
        slot.updates_since_full += 1
    slot.key, slot.model, slot.state, slot.cutoff = key, outcome.model, outcome.state, now
    run.updates.append(UpdateRecord(now, update.mode, update.reason, outcome.rows, seconds))
