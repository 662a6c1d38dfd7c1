"""The contract every retraining schedule (``continual.schedules.SCHEDULES``) honours.

Each registered kind has a usage and an example spelling; the example parses to that
kind and its ``spec`` round-trips; nothing happens at the start itself (every schedule
begins with the same model); ``due`` is deterministic and looks only at its context;
updates land on the schedule's periods, which the simulation clock hits exactly; and
only ``never`` never updates.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from rtml_cli.checks import Suite
from rtml_cli.continual.schedules import (
    FULL,
    SCHEDULES,
    WARM,
    Reading,
    ScheduleContext,
    StepAccuracy,
    parse_schedule,
    tick_for,
)
from rtml_cli.registry import Entry

DAY = timedelta(days=1)
START = datetime(2024, 3, 8, tzinfo=timezone.utc)


def _ctx(now: datetime, **kw: Any) -> ScheduleContext:
    base: dict[str, Any] = dict(
        now=now, start=START, step=DAY, model_cutoff=START, updates_since_full=0
    )
    base.update(kw)
    base.setdefault("drift", lambda det, thr, **_: Reading(det, 0.5, thr, True, "fake"))
    return ScheduleContext(**base)


def parses_and_round_trips(entry: Entry[Any]) -> None:
    """The example parses to this kind; its ``spec`` parses to the same spec."""
    assert entry.meta.get("usage") and entry.meta.get("example"), "register a usage and example"
    sched = parse_schedule(entry.meta["example"], step=DAY)
    assert isinstance(sched, entry.obj) and sched.kind == entry.name
    again = parse_schedule(sched.spec, step=DAY)
    assert again.spec == sched.spec, (sched.spec, again.spec)
    assert sched.description, "a schedule describes itself for people"


def decides_deterministically_on_its_periods(entry: Entry[Any]) -> None:
    """Nothing at the start; the same decision twice; updates only on a period boundary,
    full or warm with a reason; only a schedule that says it never updates never does."""
    sched = parse_schedule(entry.meta["example"], step=DAY)
    assert sched.due(_ctx(START)) is None
    history = [StepAccuracy(START, 1000, 300), StepAccuracy(START + DAY, 1000, 100)]
    updates = 0
    for hours in range(1, 24 * 4 + 1):
        now = START + timedelta(hours=hours)
        first = sched.due(_ctx(now, accuracy=history))
        assert first == sched.due(_ctx(now, accuracy=history)), "due() is not deterministic"
        if first is not None:
            updates += 1
            assert first.mode in (FULL, WARM) and first.reason
            for period in sched.periods():
                assert (now - START) % period == timedelta(0)
    assert (updates == 0) == (not sched.updates)
    tick = tick_for(DAY, [sched])
    assert all(p % tick == timedelta(0) for p in sched.periods())


CHECKS = (parses_and_round_trips, decides_deterministically_on_its_periods)
SUITE = Suite(SCHEDULES, CHECKS)
