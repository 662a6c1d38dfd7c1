"""`rtml retrain`: stateless vs stateful vs drift-triggered retraining, on a team's own log.

:func:`run_retrain` wires the schedule engine (``continual.engine``) to the real
jobs: :class:`PrecomputeTrainer` runs ``rtml precompute`` (full, or
``--warm-start`` from the schedule's previous run) and :class:`ReplayEvaluator`
replays the next step's traffic with ``rtml simulate``'s engine against each
schedule's current artifacts. :class:`PopularitySignal` is the input-distribution
drift signal triggered schedules watch (item popularity, ``continual.drift``).
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rtml_cli.continual.engine import ZERO, Score, Simulation, TrainOutcome, simulate_schedules
from rtml_cli.continual.schedules import Reading, Schedule
from rtml_cli.errors import DataError, UsageError
from rtml_cli.fsutil import scratch_dir
from rtml_cli.timeutil import format_duration

if TYPE_CHECKING:
    import numpy as np

DEFAULT_STRATEGY = "session-embedding"


# --- the input-distribution signal ---------------------------------------------------------


class PopularitySignal:
    """Drift of what people view: item-popularity PSI, or KS on popularity percentiles.

    ``psi``: PSI between the item view shares of the reference and current windows
    over the reference window's N most viewed items + ``(other)``, with N from the
    current window's volume (``drift.auto_bins``: about one bin per 25 views, so PSI's
    sampling noise stays near 0.04 whatever the traffic).
    ``ks``: each view is mapped to its item's popularity percentile in the reference
    window (0 = most viewed, 1 = never viewed there); the KS statistic D between the
    reference's and the current window's percentiles. D, not the p-value, is compared:
    with thousands of views a day every trending burst would be "significant".
    """

    def __init__(self, views) -> None:
        import numpy as np
        import polars as pl

        self.ts = views["ts"].dt.epoch("us").to_numpy()
        codes = views["item_id"].cast(pl.String).cast(pl.Categorical).to_physical()
        self.item = codes.to_numpy().astype(np.int64)
        self.n_items = int(self.item.max()) + 1 if len(self.item) else 0

    def _slice(self, window: tuple[datetime, datetime]) -> np.ndarray:
        import numpy as np

        lo, hi = (int(t.timestamp() * 1_000_000) for t in window)
        a, b = np.searchsorted(self.ts, [lo, hi], side="left")
        return self.item[a:b]

    def __call__(self, detector: str, threshold: float, *, reference, current) -> Reading:
        import numpy as np

        from rtml_cli.continual.drift import PSIDetector, auto_bins, categorical_distribution

        ref, cur = self._slice(reference), self._slice(current)
        if len(ref) == 0 or len(cur) == 0:
            return Reading(detector, 0.0, threshold, False, "no views to compare")
        ref_counts = np.bincount(ref, minlength=self.n_items)
        cur_counts = np.bincount(cur, minlength=self.n_items)
        if detector == "psi":
            ref_map = {i: int(c) for i, c in enumerate(ref_counts) if c}
            cur_map = {i: int(c) for i, c in enumerate(cur_counts) if c}
            bins = auto_bins(len(cur))
            dist = categorical_distribution("item share", ref_map, cur_map, max_categories=bins)
            res = PSIDetector(threshold).score(dist)
            return Reading(
                "psi", res.value, threshold, res.drift, f"PSI {res.value:.3f} over {bins} bins"
            )
        if detector == "ks":
            from scipy.stats import ks_2samp

            order = np.lexsort((np.arange(self.n_items), -ref_counts))
            pct = np.empty(self.n_items, dtype=np.float64)
            pct[order] = np.arange(self.n_items) / max(int((ref_counts > 0).sum()), 1)
            pct[ref_counts == 0] = 1.0
            stat = float(ks_2samp(pct[ref], pct[cur], method="asymp").statistic)
            return Reading("ks", stat, threshold, stat > threshold, f"KS D {stat:.3f}")
        raise UsageError(f"no input-distribution signal named {detector!r}")


# --- training: the real precompute -----------------------------------------------------------


@dataclass
class PrecomputeTrainer:
    """Full or warm-start ``rtml precompute`` runs, one output root per model lineage."""

    events: Path
    work: Path
    items: Path | None = None
    frame: Any = None  # the events as a polars DataFrame (for sliding-window files)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int = 0

    def _root(self, until: datetime, since: datetime | None, state: Any) -> Path:
        key = f"{until.isoformat()}|{since.isoformat() if since else '-'}|{state or '-'}"
        return self.work / "models" / hashlib.sha1(key.encode()).hexdigest()[:16]

    def train(self, *, until: datetime, since: datetime | None, state: Any | None) -> TrainOutcome:
        from rtml_cli.batch.artifacts import load_artifacts
        from rtml_cli.batch.precompute import run_precompute

        root = self._root(until, since, state)
        events: Path = self.events
        if state is None and since is not None:  # a sliding window: only [since, until)
            events = self._window_file(since, until)
        result = run_precompute(
            events,
            root,
            items=self.items,
            as_of=until,
            warm_start=state,
            seed=self.seed,
            force=True,
            **self.params,
        )
        rows = result.manifest.get("rows", {})
        used = int(rows.get("events_read_for_model", rows.get("events_before_as_of", 0)))
        return TrainOutcome(
            model=load_artifacts(result.run_dir), state=str(result.run_dir), rows=used
        )

    def release(self, outcome: TrainOutcome) -> None:
        """Delete a model nobody holds any more (its run dir's root)."""
        if outcome.state:
            shutil.rmtree(Path(outcome.state).parent.parent, ignore_errors=True)

    def _window_file(self, since: datetime, until: datetime) -> Path:
        import polars as pl

        path = self.work / "windows" / f"{since:%Y%m%dT%H%M%S}-{until:%Y%m%dT%H%M%S}.parquet"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            window = self.frame.filter((pl.col("ts") >= since) & (pl.col("ts") < until))
            window.write_parquet(path)
        return path


# --- evaluation: the real replay engine -------------------------------------------------------


@dataclass
class ReplayEvaluator:
    """HR@K / MRR@K of one strategy of ``rtml simulate`` over a window, for a model."""

    events: Any  # polars DataFrame of the events contract (sorted by ts)
    strategy: str = DEFAULT_STRATEGY
    k: int = 20
    sample: int = 1  # replay the sessions of shard 1 of ``sample`` only
    seed: int = 0
    # ``online.distributed``: run each replay as ``shards`` tasks there (None: in process)
    executor: Any = None
    shards: int | None = None

    def __post_init__(self) -> None:

        self._us = self.events["ts"].dt.epoch("us").to_numpy()
        self._cached: tuple[tuple[datetime, datetime], Any] | None = None

    def _window(self, start: datetime, end: datetime):
        """The sessions active in ``[start, end)`` with their earlier events (their history);
        None when the window holds no event. Shared by every model replayed on it."""
        import numpy as np
        import polars as pl

        from rtml_cli.online.strategies import trains

        if self._cached is not None and self._cached[0] == (start, end):
            return self._cached[1]
        lo, hi = np.searchsorted(
            self._us, [int(start.timestamp() * 1e6), int(end.timestamp() * 1e6)], side="left"
        )
        frame = None
        if hi > lo:
            if trains([self.strategy]):
                # The ranker learns from the week before the model's as-of: keep everything.
                frame = self.events[: int(hi)]
            else:
                active = self.events[int(lo) : int(hi)]["session_id"].unique()
                frame = self.events[: int(hi)].filter(pl.col("session_id").is_in(active.implode()))
        self._cached = ((start, end), frame)
        return frame

    def evaluate(self, model: Any, start: datetime, end: datetime) -> Score:
        from rtml_cli.online.engine import simulate

        frame = self._window(start, end)
        if frame is None:
            return ZERO
        options: dict[str, Any] = dict(
            strategies=[self.strategy],
            k=self.k,
            start=start,
            end=end,
            shard=(1, self.sample) if self.sample > 1 else None,
            seed=self.seed,
        )
        try:
            if self.executor is not None:
                from rtml_cli.online.distributed import simulate_sharded

                result = simulate_sharded(
                    frame, model, executor=self.executor, shards=self.shards, **options
                )
            else:
                result = simulate(frame, model, **options)
        except DataError as exc:
            if "no requests to replay" in str(exc):
                return ZERO
            raise
        frame = result.frame.filter(result.frame["hit"].is_not_null())  # requests with a truth
        if frame.height == 0:
            return ZERO
        return Score(frame.height, int(frame["hit"].sum()), float(frame["rr"].sum()))


# --- the command's library function -----------------------------------------------------------


@dataclass
class RetrainInputs:
    events: Any  # polars DataFrame (ts UTC µs, sorted)
    first: datetime
    last: datetime
    world: dict[str, Any] | None
    world_path: Path | None


def load_inputs(events: str | Path, world: str | Path | None = None) -> RetrainInputs:
    """Read the events log (sorted by time) and its sample world's ground truth, if any
    (``--world``, else the world.json beside EVENTS: ``data.world.find_world``)."""
    import polars as pl

    from rtml_cli.continual.drift import scan_events
    from rtml_cli.data.world import find_world, read_world

    lazy = scan_events(events)
    try:
        frame = lazy.select("ts", "user_id", "session_id", "item_id", "event").sort("ts").collect()
    except pl.exceptions.ColumnNotFoundError as exc:
        raise DataError(
            f"EVENTS {events} lacks a column of the events contract: {str(exc).splitlines()[0]}"
        ) from None
    frame = frame.with_columns(pl.col("ts").dt.cast_time_unit("us"))
    if frame.height == 0:
        raise DataError(f"EVENTS {events} has no rows")
    world_path = find_world(events, world)
    doc = read_world(world_path) if world_path is not None else None
    first, last = frame["ts"][0], frame["ts"][-1]
    return RetrainInputs(frame, first, last, doc, world_path)


def shift_time_of(world: dict[str, Any] | None) -> datetime | None:
    if not world:
        return None
    text = world.get("shift_time") or (world.get("shift") or {}).get("time")
    if not text:
        return None
    from rtml_cli.timeutil import parse_timestamp

    return parse_timestamp(text)


def default_window(
    first: datetime, last: datetime, step: timedelta, start: datetime | None, end: datetime | None
) -> tuple[datetime, datetime]:
    """``--start`` defaults to a week of history after the first event (floored to the step
    grid from midnight); ``--end`` to the last whole step before the last event."""
    if start is None:
        midnight = first.replace(hour=0, minute=0, second=0, microsecond=0)
        start = midnight + timedelta(days=7)
    if end is None:
        end = start + ((last - start) // step) * step
    return start, end


def check_window(inputs: RetrainInputs, start: datetime, end: datetime, step: timedelta) -> None:
    """Bad windows, as one-line errors: outside the data, no history, empty steps."""
    import polars as pl

    first, last = inputs.first, inputs.last
    if end <= start:
        raise UsageError(f"--end {end.isoformat()} must be after --start {start.isoformat()}")
    if start <= first:
        raise UsageError(
            f"--start {start.isoformat()} leaves no history to train the initial model: the "
            f"data begin at {first.isoformat()}; start later"
        )
    if start > last or end > last + step:
        raise UsageError(
            f"the window {start.isoformat()} – {end.isoformat()} falls outside the data "
            f"({first.isoformat()} – {last.isoformat()}): change --start/--end"
        )
    if (end - start) % step:
        raise UsageError(
            f"--start to --end ({end - start}) is not a whole number of --step "
            f"{format_duration(step)}"
        )
    n_steps = (end - start) // step
    counts = (
        inputs.events.lazy()
        .filter((pl.col("ts") >= start) & (pl.col("ts") < end))
        .group_by(
            (
                (pl.col("ts").dt.epoch("us") - int(start.timestamp() * 1_000_000))
                // int(step.total_seconds() * 1_000_000)
            ).alias("step")
        )
        .len()
        .collect()
    )
    present = set(counts["step"].cast(pl.Int64).to_list())
    empty = [start + i * step for i in range(n_steps) if i not in present]
    if empty:
        raise DataError(
            f"{len(empty)} of {n_steps} steps hold no events (first: "
            f"{empty[0].isoformat()}): pick --start/--end inside the data or a longer --step"
        )


def precompute_params(*, n_trees: int, dim: int | None, k: int) -> dict[str, Any]:
    """The parameters of every precompute run a retrain makes (``--trees``, ``--dim``, K)."""
    if n_trees < 1 or (dim is not None and dim < 2):
        raise UsageError("--trees must be >= 1 and --dim >= 2")
    # Stage-1 lists only need K items to score HR@K: no need to rank 50 per user.
    params: dict[str, Any] = {"n_trees": n_trees, "top_k": k}
    if dim is not None:
        params["dim"] = dim
    return params


def run_retrain(
    events: str | Path,
    schedules: list[Schedule],
    *,
    step: timedelta,
    start: datetime | None = None,
    end: datetime | None = None,
    k: int = 20,
    strategy: str = DEFAULT_STRATEGY,
    sample: int = 1,
    items: str | Path | None = None,
    world: str | Path | None = None,
    precompute_params: dict[str, Any] | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    on_tick=None,
    engine: str = "local",
    address: str | None = None,
    shards: int | None = None,
) -> tuple[Simulation, dict[str, Any]]:
    """Simulate every schedule over ``[start, end)`` of EVENTS; returns the simulation and
    its summary (``continual.report.summarize``) with the run's parameters added.
    ``engine``/``address``/``shards``: run every replay as shard tasks
    (``online.distributed``; local with ``shards=None``: in this process, unsharded)."""
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    if sample < 1:
        raise UsageError(f"--sample must be at least 1 (replay one session in N), got {sample}")
    from rtml_cli.online.distributed import check_engine_options, open_executor

    check_engine_options(engine, address, shards)
    with contextlib.ExitStack() as stack:
        executor = None
        if engine != "local" or shards is not None:
            executor = stack.enter_context(open_executor(engine, address, shards))
        sim, summary = _run_retrain(
            events,
            schedules,
            step=step,
            start=start,
            end=end,
            k=k,
            strategy=strategy,
            sample=sample,
            items=items,
            world=world,
            precompute_params=precompute_params,
            seed=seed,
            work_dir=work_dir,
            on_tick=on_tick,
            evaluator=(executor, shards),
        )
    summary["params"]["engine"] = engine
    summary["params"]["shards"] = shards
    return sim, summary


def _run_retrain(
    events: str | Path,
    schedules: list[Schedule],
    *,
    step: timedelta,
    start: datetime | None,
    end: datetime | None,
    k: int,
    strategy: str,
    sample: int,
    items: str | Path | None,
    world: str | Path | None,
    precompute_params: dict[str, Any] | None,
    seed: int,
    work_dir: str | Path | None,
    on_tick: Any,
    evaluator: tuple[Any, int | None],
) -> tuple[Simulation, dict[str, Any]]:
    import polars as pl

    from rtml_cli.continual.report import summarize

    inputs = load_inputs(events, world)
    start, end = default_window(inputs.first, inputs.last, step, start, end)
    check_window(inputs, start, end, step)
    if (
        items is None
        and Path(events).is_file()
        and (Path(events).parent / "items.parquet").exists()
    ):
        items = Path(events).parent / "items.parquet"
    views = inputs.events.filter(pl.col("event") == "view").select("ts", "item_id")
    with contextlib.ExitStack() as stack:
        # a killed retrain's work directory is removed by the next run (fsutil.scratch_dir)
        work = Path(work_dir) if work_dir else stack.enter_context(scratch_dir("retrain"))
        trainer = PrecomputeTrainer(
            Path(events),
            work,
            Path(items) if items else None,
            inputs.events,
            dict(precompute_params or {}),
            seed,
        )
        executor, shards = evaluator
        replayer = ReplayEvaluator(inputs.events, strategy, k, sample, seed, executor, shards)
        sim = simulate_schedules(
            schedules,
            trainer=trainer,
            evaluator=replayer,
            start=start,
            end=end,
            step=step,
            drift=PopularitySignal(views),
            on_tick=on_tick,
        )
    summary = summarize(sim, k=k, shift_time=shift_time_of(inputs.world))
    summary["params"] = {
        "events": str(events),
        "world": str(inputs.world_path) if inputs.world_path else None,
        "schedules": [s.spec for s in schedules],
        "step": format_duration(step),
        "strategy": strategy,
        "sample": sample,
        "seed": seed,
        "precompute": dict(precompute_params or {}),
    }
    return sim, summary
