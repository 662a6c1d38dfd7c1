"""Retraining schedules: *when* each regime updates the model and *how* (full or warm start).

The essay's continual-learning stages as one small interface. At every tick of the
simulated clock each :class:`Schedule` looks at a :class:`ScheduleContext` (the
time, when its model was last updated, its own recent replay accuracy, a drift
signal) and returns an :class:`Update` or ``None``:

``never``
    the model as of the start, never updated (how fast does it decay?).
``stateless[:PERIOD[:WINDOW]]``
    retrain from scratch every PERIOD on the whole history, or on the last WINDOW
    of it (a sliding window) — Stage 2, automated stateless retraining.
``stateful[:PERIOD]``
    continue from the previous state with only the data since the last update
    (``precompute --warm-start``) every PERIOD; with ``full_every=N`` every Nth update
    is a full retrain so old data's influence does not fade — Stage 3.
``triggered[:DETECTOR[:THRESHOLD]]``
    a stateful update only when a detector fires — Stage 4. Detectors (default ``ks``,
    which trending bursts barely move; item-level PSI also fires on strong bursts): ``psi``
    (item-popularity PSI of the last step vs the data the model last saw, default
    0.2), ``ks`` (KS statistic D of the viewed items' popularity percentile, default
    0.1), ``performance`` (the model's replay HR in the last step fell by more than
    the threshold, relative to the best step HR of the reference period before it,
    default 0.1).

PERIOD defaults to the simulation step. The registry ``SCHEDULES`` maps kinds to
classes (``rtml_cli.checks.schedules`` is their contract); :func:`parse_schedules` turns ``"stateless:1d,stateful:1d,triggered,never"``
into instances and rejects unknown names with a ``UsageError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import ClassVar

from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry
from rtml_cli.timeutil import format_duration, parse_duration

FULL = "full"
WARM = "warm"

# Detectors a triggered schedule can watch, with their default threshold and valid range.
TRIGGER_DETECTORS: dict[str, tuple[float, str]] = {
    "psi": (0.2, "PSI of item popularity, > 0 (0.1 moderate, 0.2 significant)"),
    "ks": (0.1, "KS statistic D of the viewed items' popularity percentile, in (0, 1)"),
    "performance": (0.1, "relative drop of replay HR@K, in (0, 1) (0.1 = 10% below)"),
}
MIN_REQUESTS_FOR_PERFORMANCE = 200  # fewer replayed requests in a step: too noisy to judge


def check_trigger_threshold(detector: str, value: float) -> float:
    """Validate a trigger threshold for ``detector``; returns it as a float."""
    if detector not in TRIGGER_DETECTORS:
        raise UsageError(
            f"unknown drift detector {detector!r}: choose from {', '.join(TRIGGER_DETECTORS)}"
        )
    value = float(value)
    if not math.isfinite(value) or value <= 0 or (detector != "psi" and value >= 1):
        raise UsageError(
            f"--threshold {value:g} is out of range for {detector}: "
            f"{TRIGGER_DETECTORS[detector][1]}"
        )
    return value


@dataclass(frozen=True)
class Update:
    """A decision to update: ``mode`` is ``full`` (from scratch) or ``warm`` (stateful)."""

    mode: str
    reason: str
    window: timedelta | None = None  # full retrain on only the last ``window`` of history


@dataclass(frozen=True)
class Reading:
    """One drift-detector check: the statistic, its threshold and whether it fired."""

    detector: str
    value: float
    threshold: float
    fired: bool
    detail: str = ""


@dataclass(frozen=True)
class StepAccuracy:
    """Replay accuracy of a schedule's model over one step (its own history)."""

    start: datetime
    requests: int
    hits: int

    @property
    def hr(self) -> float:
        return self.hits / self.requests if self.requests else float("nan")


@dataclass
class ScheduleContext:
    """What a schedule may look at when deciding (nothing from the future)."""

    now: datetime
    start: datetime
    step: timedelta
    model_cutoff: datetime  # the model was trained on data before this time
    updates_since_full: int
    accuracy: list[StepAccuracy] = field(default_factory=list)  # this schedule's past steps
    # drift(detector, threshold, reference=(a, b), current=(a, b)) -> Reading
    drift: Callable[..., Reading] | None = None
    readings: list[Reading] = field(default_factory=list)  # detector checks made while deciding

    def on_boundary(self, period: timedelta) -> bool:
        elapsed = self.now - self.start
        return elapsed > timedelta(0) and elapsed % period == timedelta(0)


class Schedule:
    """When and how one retraining regime updates its model.

    ``due(ctx)`` returns an ``Update`` or ``None``; ``periods()`` lists the durations
    the simulation clock must be able to hit exactly. Implementations must be
    deterministic and look only at ``ctx`` (the contract test checks both).
    """

    kind: ClassVar[str]
    spec: str
    updates: bool = True  # False only for ``never``

    def due(self, ctx: ScheduleContext) -> Update | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def periods(self) -> list[timedelta]:
        return []

    @property
    def description(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class Never(Schedule):
    kind = "never"
    updates = False

    def __init__(self) -> None:
        self.spec = "never"

    def due(self, ctx: ScheduleContext) -> Update | None:
        return None

    @property
    def description(self) -> str:
        return "trained once at the start, never updated"


class Stateless(Schedule):
    kind = "stateless"

    def __init__(self, period: timedelta, window: timedelta | None = None) -> None:
        self.period = period
        self.window = window
        self.spec = f"stateless:{format_duration(period)}" + (
            f":{format_duration(window)}" if window else ""
        )

    def due(self, ctx: ScheduleContext) -> Update | None:
        if not ctx.on_boundary(self.period):
            return None
        return Update(FULL, f"every {format_duration(self.period)}", self.window)

    def periods(self) -> list[timedelta]:
        return [self.period]

    @property
    def description(self) -> str:
        data = f"the last {format_duration(self.window)}" if self.window else "the full history"
        return f"retrained from scratch on {data} every {format_duration(self.period)}"


class Stateful(Schedule):
    kind = "stateful"

    def __init__(self, period: timedelta, full_every: int = 0) -> None:
        self.period = period
        self.full_every = full_every
        self.spec = f"stateful:{format_duration(period)}"

    def due(self, ctx: ScheduleContext) -> Update | None:
        if not ctx.on_boundary(self.period):
            return None
        return _warm_or_full(ctx, self.full_every, f"every {format_duration(self.period)}")

    def periods(self) -> list[timedelta]:
        return [self.period]

    @property
    def description(self) -> str:
        full = f", full retrain every {self.full_every} updates" if self.full_every else ""
        return f"warm-started on new data only every {format_duration(self.period)}{full}"


def _warm_or_full(ctx: ScheduleContext, full_every: int, reason: str) -> Update:
    if full_every and ctx.updates_since_full + 1 >= full_every:
        return Update(FULL, f"{reason}; full retrain every {full_every} updates")
    return Update(WARM, reason)


class Triggered(Schedule):
    kind = "triggered"

    def __init__(
        self,
        detector: str = "ks",
        threshold: float | None = None,
        *,
        check_every: timedelta,
        reference: timedelta = timedelta(days=7),
        full_every: int = 0,
    ) -> None:
        if detector not in TRIGGER_DETECTORS:
            raise UsageError(
                f"unknown drift detector {detector!r}: choose from {', '.join(TRIGGER_DETECTORS)}"
            )
        self.detector = detector
        self.threshold = check_trigger_threshold(
            detector, TRIGGER_DETECTORS[detector][0] if threshold is None else threshold
        )
        self.check_every = check_every
        self.reference = reference
        self.full_every = full_every
        self.lookback = max(1, reference // check_every)  # steps of accuracy history judged
        default = TRIGGER_DETECTORS[detector][0]
        self.spec = f"triggered:{detector}" + (
            f":{self.threshold:g}" if self.threshold != default else ""
        )

    def due(self, ctx: ScheduleContext) -> Update | None:
        if not ctx.on_boundary(self.check_every):
            return None
        reading = self.check(ctx)
        if reading is not None:
            ctx.readings.append(reading)
        if reading is None or not reading.fired:
            return None
        return _warm_or_full(ctx, self.full_every, f"{reading.detector} {reading.detail}")

    def check(self, ctx: ScheduleContext) -> Reading | None:
        """The detector's reading at ``ctx.now`` (None when there is nothing to judge yet)."""
        if self.detector == "performance":
            return performance_reading(ctx.accuracy, self.threshold, lookback=self.lookback)
        if ctx.drift is None:
            raise UsageError(f"triggered:{self.detector} needs a drift signal")
        current = (max(ctx.now - self.check_every, ctx.model_cutoff), ctx.now)
        if current[0] >= current[1]:
            return None
        reference = (ctx.model_cutoff - self.reference, ctx.model_cutoff)
        return ctx.drift(self.detector, self.threshold, reference=reference, current=current)

    def periods(self) -> list[timedelta]:
        return [self.check_every]

    @property
    def description(self) -> str:
        what = {
            "psi": f"item-popularity PSI > {self.threshold:g}",
            "ks": f"popularity-percentile KS D > {self.threshold:g}",
            "performance": f"replay HR {self.threshold:.0%} below its best recent step",
        }[self.detector]
        return f"warm-started when {what} (checked every {format_duration(self.check_every)})"


def performance_reading(
    history: list[StepAccuracy], threshold: float, *, lookback: int = 7
) -> Reading | None:
    """Fire when the last step's HR is ``threshold`` (relative) below the best step HR of the
    ``lookback`` steps before it. The best recent level, not the level just after the last
    update, is the yardstick so that an update that did not help fires again at the next
    check. Steps with fewer than ``MIN_REQUESTS_FOR_PERFORMANCE`` requests are not judged
    (a handful of requests swings HR by chance)."""
    judged = [h for h in history if h.requests >= MIN_REQUESTS_FOR_PERFORMANCE]
    if len(judged) < 2:
        return None
    recent = judged[-1].hr
    baseline = max(h.hr for h in judged[-1 - lookback : -1])
    if baseline <= 0:
        return None
    drop = (baseline - recent) / baseline
    return Reading(
        "performance",
        drop,
        threshold,
        drop > threshold,
        f"HR {recent:.3f} vs {baseline:.3f} best of the last {lookback} steps ({drop:.0%} drop)",
    )


SCHEDULES: Registry[type[Schedule]] = Registry("schedule")
SCHEDULES.add("never", Never, description=Never().description, usage="never", example="never")
SCHEDULES.add(
    "stateless",
    Stateless,
    description="retrained from scratch every PERIOD (on the last WINDOW, if given)",
    usage="stateless[:PERIOD[:WINDOW]]",
    example="stateless:1d:1w",
)
SCHEDULES.add(
    "stateful",
    Stateful,
    description="warm-started on the new data only every PERIOD",
    usage="stateful[:PERIOD]",
    example="stateful:12h",
)
SCHEDULES.add(
    "triggered",
    Triggered,
    description="warm-started when a drift detector fires",
    usage=f"triggered[:{'|'.join(TRIGGER_DETECTORS)}[:THRESHOLD]]",
    example="triggered:performance",
)
# What `rtml retrain` compares unless told otherwise: one of each (PERIOD = the default step).
DEFAULT_SCHEDULES = "stateless:1d,stateful:1d,triggered,never"


def usages() -> str:
    """Every schedule's spelling, for help texts and errors: ``never, stateless[…] or …``."""
    spellings = [SCHEDULES.entry(name).meta["usage"] for name in SCHEDULES]
    return ", ".join(spellings[:-1]) + " or " + spellings[-1]


def parse_schedule(
    spec: str,
    *,
    step: timedelta,
    full_every: int = 0,
    drift: str = "ks",
    threshold: float | None = None,
    reference: timedelta = timedelta(days=7),
) -> Schedule:
    """One schedule from its spelling (see the module docstring); errors name the fix."""
    parts = [p.strip() for p in spec.strip().split(":")]
    kind, args = parts[0], parts[1:]
    if kind not in SCHEDULES:
        raise UsageError(f"unknown schedule {spec!r}: use {usages()}")

    def duration(text: str, what: str) -> timedelta:
        value = parse_duration(text)
        if value <= timedelta(0):
            raise UsageError(f"schedule {spec!r}: the {what} must be positive")
        return value

    if kind == "never":
        if args:
            raise UsageError(f"schedule {spec!r}: never takes no arguments")
        return Never()
    if kind == "stateless":
        if len(args) > 2:
            raise UsageError(
                f"schedule {spec!r}: use stateless[:PERIOD[:WINDOW]], e.g. stateless:1d:14d"
            )
        period = duration(args[0], "period") if args and args[0] else step
        window = duration(args[1], "window") if len(args) > 1 else None
        return Stateless(period, window)
    if kind == "stateful":
        if len(args) > 1:
            raise UsageError(f"schedule {spec!r}: use stateful[:PERIOD], e.g. stateful:1h")
        return Stateful(duration(args[0], "period") if args and args[0] else step, full_every)
    if len(args) > 2:
        raise UsageError(f"schedule {spec!r}: use triggered[:psi|ks|performance[:THRESHOLD]]")
    detector = args[0] if args and args[0] else drift
    value: float | None = threshold if detector == drift else None
    if len(args) > 1:
        try:
            value = float(args[1])
        except ValueError:
            raise UsageError(f"schedule {spec!r}: threshold {args[1]!r} is not a number") from None
    return Triggered(detector, value, check_every=step, reference=reference, full_every=full_every)


def parse_schedules(text: str, **kwargs) -> list[Schedule]:
    """A comma-separated list of schedules; duplicates and an empty list are errors."""
    specs = [s for s in (p.strip() for p in text.split(",")) if s]
    if not specs:
        raise UsageError("--schedules is empty: name at least one, e.g. stateless:1d,never")
    if kwargs.get("full_every", 0) < 0:
        raise UsageError(f"--full-every must be >= 0 (0 = never), got {kwargs['full_every']}")
    schedules = [parse_schedule(s, **kwargs) for s in specs]
    seen: set[str] = set()
    for sched in schedules:
        if sched.spec in seen:
            raise UsageError(f"schedule {sched.spec} is listed twice in --schedules")
        seen.add(sched.spec)
    return schedules


def tick_for(step: timedelta, schedules: list[Schedule]) -> timedelta:
    """The simulation clock's tick: the largest duration every step and period is a multiple of."""
    micros = round(step.total_seconds() * 1_000_000)
    for sched in schedules:
        for period in sched.periods():
            micros = math.gcd(micros, round(period.total_seconds() * 1_000_000))
    return timedelta(microseconds=micros)


def retrain_schedules(
    text: str,
    *,
    step: timedelta,
    reference: timedelta,
    drift: str = "ks",
    threshold: float | None = None,
    full_every: int = 0,
) -> list[Schedule]:
    """``rtml retrain``'s schedules from its options, each option checked with a one-line
    error: a positive ``step``, a ``reference`` of at least one step, a known ``drift``
    detector and a ``threshold`` in its range."""
    if step.total_seconds() <= 0:
        raise UsageError("--step must be a positive duration, e.g. 1d")
    if reference < step:
        raise UsageError(
            f"--reference {format_duration(reference)} must be at least one --step "
            f"({format_duration(step)})"
        )
    if drift not in TRIGGER_DETECTORS:
        raise UsageError(
            f"--drift {drift!r} is not a detector: choose from {', '.join(TRIGGER_DETECTORS)}"
        )
    if threshold is not None:
        check_trigger_threshold(drift, threshold)
    return parse_schedules(
        text,
        step=step,
        full_every=full_every,
        drift=drift,
        threshold=threshold,
        reference=reference,
    )
