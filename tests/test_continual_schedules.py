"""Retraining schedules and the simulation engine, driven by a tiny fake trainer.

The fake world: 40 items; before the shift people view items 0-19, after it 20-39.
The fake model is a most-popular list (view counts); a warm start decays the old
counts and adds the new ones. HR@5 = the next view is in the model's top 5.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.continual.engine import Score, TrainOutcome, simulate_schedules
from rtml_cli.continual.schedules import (
    FULL,
    WARM,
    Reading,
    ScheduleContext,
    Stateful,
    StepAccuracy,
    check_trigger_threshold,
    parse_schedule,
    parse_schedules,
    performance_reading,
    tick_for,
)
from rtml_cli.errors import UsageError

DAY = timedelta(days=1)
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
START = T0 + 7 * DAY
SHIFT = T0 + 12 * DAY
END = T0 + 18 * DAY

# The schedule contract (example spelling round-trips, deterministic decisions on the
# schedule's periods) is rtml_cli.checks.schedules, run over every registered schedule by
# tests/test_registry.py.


def _ctx(now: datetime, **kw) -> ScheduleContext:
    base = dict(now=now, start=START, step=DAY, model_cutoff=START, updates_since_full=0)
    base.update(kw)
    base.setdefault("drift", lambda det, thr, **_: Reading(det, 0.5, thr, True, "fake"))
    return ScheduleContext(**base)


def test_parse_defaults_and_spellings() -> None:
    scheds = parse_schedules(
        "stateless:2d, stateful:1h,triggered,never,stateless,triggered:ks:0.2",
        step=DAY,
        full_every=7,
        drift="psi",
        threshold=0.3,
    )
    assert [s.spec for s in scheds] == [
        "stateless:2d",
        "stateful:1h",
        "triggered:psi:0.3",
        "never",
        "stateless:1d",
        "triggered:ks:0.2",
    ]
    assert scheds[1].full_every == 7 and scheds[1].period == timedelta(hours=1)
    assert scheds[2].threshold == 0.3
    assert scheds[4].period == DAY  # PERIOD defaults to the step
    assert scheds[5].detector == "ks" and scheds[5].threshold == 0.2
    assert tick_for(DAY, scheds) == timedelta(hours=1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("stateless:1d,weekly", "unknown schedule 'weekly'"),
        ("stateful:soon", "invalid duration 'soon'"),
        ("stateless:0d", "period must be positive"),
        ("stateful:1d,stateful:1d", "listed twice"),
        ("triggered:chi2", "unknown drift detector 'chi2'"),
        ("triggered:psi:-1", "out of range for psi"),
        ("triggered:performance:1.5", "out of range for performance"),
        ("triggered:ks:abc", "is not a number"),
        ("never:1d", "never takes no arguments"),
        ("", "--schedules is empty"),
    ],
)
def test_parse_rejects(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        parse_schedules(text, step=DAY)


def test_full_every_and_threshold_ranges() -> None:
    with pytest.raises(UsageError, match="--full-every must be >= 0"):
        parse_schedules("stateful:1d", step=DAY, full_every=-1)
    assert check_trigger_threshold("psi", 3.0) == 3.0
    for det, bad in (("psi", 0), ("ks", 1.0), ("performance", float("nan"))):
        with pytest.raises(UsageError):
            check_trigger_threshold(det, bad)


def test_stateful_full_every() -> None:
    sched = parse_schedule("stateful:1d", step=DAY, full_every=3)
    modes = [sched.due(_ctx(START + DAY, updates_since_full=n)).mode for n in range(4)]
    assert modes == [WARM, WARM, FULL, FULL]


def test_performance_reading() -> None:
    ok = [StepAccuracy(START, 1000, 300), StepAccuracy(START + DAY, 1000, 290)]
    # The yardstick is the best recent step, so a failed update fires again.
    still_low = [StepAccuracy(START + i * DAY, 1000, h) for i, h in enumerate((300, 100, 100))]
    assert performance_reading(still_low, 0.1).fired is True
    assert performance_reading(still_low, 0.1, lookback=1).fired is False
    drop = [StepAccuracy(START, 1000, 300), StepAccuracy(START + DAY, 1000, 200)]
    tiny = [StepAccuracy(START, 1000, 300), StepAccuracy(START + DAY, 10, 0)]
    assert performance_reading(ok, 0.1).fired is False
    reading = performance_reading(drop, 0.1)
    assert reading.fired and reading.value == pytest.approx(1 / 3)
    assert performance_reading(tiny, 0.1) is None  # too few requests to judge
    assert performance_reading(drop[:1], 0.1) is None


# --- the engine with a fake trainer ---------------------------------------------------------


def _world(seed: int = 0):
    """Hourly views: before SHIFT items 0-19 (Zipf-ish), after it items 20-39."""
    rng = np.random.default_rng(seed)
    hours = int((END - T0) / timedelta(hours=1))
    times, items = [], []
    weights = 1.0 / np.arange(1, 21)
    weights /= weights.sum()
    for h in range(hours):
        ts = T0 + timedelta(hours=h)
        offset = 20 if ts >= SHIFT else 0
        drawn = rng.choice(20, 30, p=weights) + offset
        times.extend([ts] * 30)
        items.extend(drawn.tolist())
    return np.array([t.timestamp() for t in times]), np.array(items)


@dataclass
class FakeTrainer:
    ts: np.ndarray
    items: np.ndarray
    calls: int = 0

    def _counts(self, since, until):
        lo = -np.inf if since is None else since.timestamp()
        mask = (self.ts >= lo) & (self.ts < until.timestamp())
        return np.bincount(self.items[mask], minlength=40).astype(float), int(mask.sum())

    def train(self, *, until, since, state):
        self.calls += 1
        counts, rows = self._counts(since, until)
        if state is not None:
            counts = 0.3 * state + counts  # warm start: old data fades
        top = np.argsort(-counts, kind="stable")[:5]
        return TrainOutcome(model=set(top.tolist()), state=counts, rows=rows)


@dataclass
class FakeEvaluator:
    ts: np.ndarray
    items: np.ndarray

    def evaluate(self, model, start, end):
        mask = (self.ts >= start.timestamp()) & (self.ts < end.timestamp())
        hits = int(np.isin(self.items[mask], list(model)).sum())
        return Score(int(mask.sum()), hits, float(hits) / 2)


def _fake_drift(ts, items):
    def drift(detector, threshold, *, reference, current):
        def share(a, b):
            mask = (ts >= a.timestamp()) & (ts < b.timestamp())
            counts = np.bincount(items[mask], minlength=40) + 1e-4
            return counts / counts.sum()

        ref, cur = share(*reference), share(*current)
        psi = float(np.sum((cur - ref) * np.log(cur / ref)))
        return Reading(detector, psi, threshold, psi > threshold, f"{psi:.2f}")

    return drift


@pytest.fixture(scope="module")
def simulation():
    ts, items = _world()
    trainer = FakeTrainer(ts, items)
    scheds = parse_schedules(
        "stateless:1d:3d,stateful:1d,stateful:6h,triggered:psi,triggered:performance,never",
        step=DAY,
    )
    sim = simulate_schedules(
        scheds,
        trainer=trainer,
        evaluator=FakeEvaluator(ts, items),
        start=START,
        end=END,
        step=DAY,
        drift=_fake_drift(ts, items),
    )
    return sim, trainer


def _by_spec(sim):
    return {run.schedule.spec: run for run in sim.runs}


def test_engine_timeline(simulation) -> None:
    sim, trainer = simulation
    assert sim.tick == timedelta(hours=6)
    assert len(sim.step_starts) == 11 and sim.step_starts[0] == START
    runs = _by_spec(sim)
    for run in sim.runs:
        assert len(run.steps) == 11
        assert all(step.requests == 24 * 30 for step in run.steps)
        assert run.initial.mode == "initial" and run.initial.time == START
    assert runs["never"].updates == []
    assert len(runs["stateless:1d:3d"].updates) == 10  # every day boundary after the start
    assert len(runs["stateful:6h"].updates) == 10 * 4 + 3
    assert {u.mode for u in runs["stateful:1d"].updates} == {WARM}
    # Shared trainings run once: 1 initial + 10 stateless (stateful:1d starts from the same
    # initial model but continues its own lineage) ...
    assert trainer.calls < sum(len(r.updates) for r in sim.runs) + len(sim.runs)


def test_never_decays_and_updating_schedules_recover(simulation) -> None:
    sim, _ = simulation
    runs = _by_spec(sim)
    shift_step = sim.step_starts.index(SHIFT)
    never = runs["never"].steps
    before = sum(s.hits for s in never[:shift_step]) / sum(s.requests for s in never[:shift_step])
    after = sum(s.hits for s in never[shift_step:]) / sum(s.requests for s in never[shift_step:])
    assert before > 0.4 and after == 0.0
    for spec, run in runs.items():
        if spec == "never":
            continue
        last = run.steps[-1]
        assert last.hr > 0.4, spec  # recovered by the last step


def test_triggers_fire_at_the_shift_only(simulation) -> None:
    sim, _ = simulation
    runs = _by_spec(sim)
    for spec in ("triggered:psi", "triggered:performance"):
        fired = [c.time for c in runs[spec].checks if c.reading.fired]
        assert fired, spec
        assert all(t > SHIFT for t in fired), spec  # no false alarm before the shift
        assert fired[0] - SHIFT <= 2 * DAY, spec
        assert [u.time for u in runs[spec].updates] == fired
    psi_checks = runs["triggered:psi"].checks
    assert len(psi_checks) == 10  # one check per step boundary


def test_stateful_reads_fewer_rows_than_stateless(simulation) -> None:
    sim, _ = simulation
    runs = _by_spec(sim)
    assert runs["stateful:1d"].rows * 2 < runs["stateless:1d:3d"].rows
    # A triggered schedule reads the same new rows, but in fewer (larger) updates.
    assert runs["triggered:psi"].rows <= runs["stateful:1d"].rows
    assert len(runs["triggered:psi"].updates) < len(runs["stateful:1d"].updates)


def test_engine_is_deterministic() -> None:
    ts, items = _world(seed=5)

    def run():
        sim = simulate_schedules(
            parse_schedules("stateful:1d,triggered", step=DAY),
            trainer=FakeTrainer(ts, items),
            evaluator=FakeEvaluator(ts, items),
            start=START,
            end=END,
            step=DAY,
            drift=_fake_drift(ts, items),
        )
        return [(r.steps, [(u.time, u.mode, u.rows) for u in r.updates]) for r in sim.runs]

    assert run() == run()


@pytest.mark.parametrize(
    ("start", "end", "step", "message"),
    [
        (START, START, DAY, "must be after --start"),
        (START, START + timedelta(hours=36), DAY, "not a whole number of --step"),
        (START, END, timedelta(0), "must be a positive duration"),
    ],
)
def test_engine_rejects_bad_windows(start, end, step, message) -> None:
    ts, items = _world()
    with pytest.raises(UsageError, match=message):
        simulate_schedules(
            parse_schedules("never", step=DAY),
            trainer=FakeTrainer(ts, items),
            evaluator=FakeEvaluator(ts, items),
            start=start,
            end=end,
            step=step,
        )


def test_engine_caps_ticks() -> None:
    with pytest.raises(UsageError, match="clock ticks"):
        simulate_schedules(
            parse_schedules("stateful:1s", step=DAY),
            trainer=FakeTrainer(np.array([0.0]), np.array([0])),
            evaluator=FakeEvaluator(np.array([0.0]), np.array([0])),
            start=START,
            end=END,
            step=DAY,
        )


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 48), st.lists(st.integers(1, 72), min_size=1, max_size=4))
def test_tick_divides_step_and_periods(step_h: int, periods_h: list[int]) -> None:
    step = timedelta(hours=step_h)
    scheds = [Stateful(timedelta(hours=p)) for p in dict.fromkeys(periods_h)]
    tick = tick_for(step, scheds)
    assert step % tick == timedelta(0)
    for sched in scheds:
        assert sched.period % tick == timedelta(0)
        # Over 6 days of ticks a schedule updates once per whole period elapsed.
        n = int(timedelta(days=6) / tick)
        updates = sum(
            sched.due(_ctx(START + i * tick, step=step)) is not None for i in range(n + 1)
        )
        assert updates == timedelta(days=6) // sched.period
