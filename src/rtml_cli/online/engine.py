"""The replay engine: ``simulate()`` serves every request of a log with every strategy.

Time-ordered replay of all sessions, interleaved as they happened. At each request the
engine (1) moves every streaming view forward to the request time — the streaming
job's work, asynchronous in production, so outside the measured latency — (2) builds
the ``Request`` from the session's earlier events only, and (3) asks each strategy,
timing the call with ``time.perf_counter_ns`` (candidate generation, feature lookup
and computation, ranking). Metrics are computed after the loop, vectorised. A strategy
that batches (``Strategy.batched``: ``session-embedding`` and ``online-ranker`` with
``ann="ivf"``) is asked once per micro-batch of consecutive requests instead, each request
reading only its own state, and each is charged the batch's time divided by its size.

Sharding (``shard=(i, n)``) keeps the requests of sessions whose CRC-32 falls in shard
``i``; the stream is still built from all events, so streaming features are the same
as in one run and the shards' RESULTS concatenate (sorted by ``request_id``) into the
single-run RESULTS.
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.online import replay, trending
from rtml_cli.online.base import DEFAULT_PROTOCOL, PROTOCOLS, Env, Strategy
from rtml_cli.online.intervals import DEFAULT_BOOTSTRAP, SessionBootstrap, interval
from rtml_cli.online.ivf import DEFAULT_NPROBE
from rtml_cli.online.metrics import request_metrics, summarise
from rtml_cli.online.replay import (
    SEGMENTS,
    ReplayData,
    RequestBatch,
    Truth,
    from_us,
    streams_for,
    to_us,
    truth_for,
)
from rtml_cli.online.strategies import DEFAULT_STRATEGIES, build, parse_name
from rtml_cli.online.streaming import WINDOWS, WindowedCounts

ProgressFn = Callable[[int, int], None]
ANN = ("annoy", "ivf")
#: Consecutive requests a strategy that batches (``Strategy.batched``) serves per call.
DEFAULT_MICRO_BATCH = 256


@dataclass
class SimulationResult:
    """Per-request results (the RESULTS frame) and their summaries."""

    frame: Any  # polars.DataFrame, columns of contracts.RESULTS (+ next_item_id)
    summary: list[dict[str, Any]]  # one row per strategy and segment ("all" first)
    info: dict[str, Any]  # window, requests, unknown items, ranker weights, throughput…
    strategies: list[str]
    lists: dict[str, np.ndarray] = field(default_factory=dict)  # strategy → (n, k) item_idx
    # HR/MRR/NDCG per strategy on slices of the requests ("trending", "world_bursts")
    slices: list[dict[str, Any]] = field(default_factory=list)
    # strategy → metric ("hr", "mrr", "ndcg") → session-bootstrap replicates of the overall
    # figure, shared across strategies (paired); empty when the run drew none
    replicates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)

    def delta_ci(self, name: str, base: str, key: str = "hr") -> list[float] | None:
        """The paired 95% interval of ``name``'s figure minus ``base``'s (None without one)."""
        if name not in self.replicates or base not in self.replicates:
            return None
        ci = interval(self.replicates[name][key] - self.replicates[base][key])
        return None if ci is None else list(ci)

    def differences(self) -> list[dict[str, Any]]:
        """Every pair of strategies: HR and MRR differences with paired 95% intervals."""
        out = []
        for i, a in enumerate(self.strategies):
            for b in self.strategies[i + 1 :]:
                ra, rb = self.summary_for(a), self.summary_for(b)
                entry: dict[str, Any] = {"a": a, "b": b}
                for key in ("hr", "mrr"):
                    both = ra[key] is not None and rb[key] is not None
                    entry[f"{key}_delta"] = ra[key] - rb[key] if both else None
                    entry[f"{key}_delta_ci"] = self.delta_ci(a, b, key)
                out.append(entry)
        return out

    def slice_for(self, strategy: str, name: str) -> dict[str, Any] | None:
        for row in self.slices:
            if row["strategy"] == strategy and row["slice"] == name:
                return row
        return None

    def summary_for(self, strategy: str, segment: str = "all") -> dict[str, Any]:
        for row in self.summary:
            if row["strategy"] == strategy and row["segment"] == segment:
                return row
        raise KeyError((strategy, segment))

    def comparison(self, base: str, names: Sequence[str]) -> list[dict[str, Any]]:
        """HR/MRR/NDCG of ``names`` with their difference to ``base`` (overall)."""
        ref = self.summary_for(base)
        out = []
        for name in names:
            row = self.summary_for(name)
            entry = {
                "strategy": name,
                "hr": row["hr"],
                "mrr": row["mrr"],
                "ndcg": row["ndcg"],
                "hr_delta": row["hr"] - ref["hr"],
                "hr_delta_ci": self.delta_ci(name, base, "hr"),
                "mrr_delta": row["mrr"] - ref["mrr"],
                "mrr_delta_ci": self.delta_ci(name, base, "mrr"),
            }
            for slice_name in dict.fromkeys(r["slice"] for r in self.slices):
                mine, theirs = self.slice_for(name, slice_name), self.slice_for(base, slice_name)
                hr = None if mine is None else mine["hr"]
                entry[f"hr_{slice_name}"] = hr
                entry[f"hr_{slice_name}_delta"] = (
                    None
                    if hr is None or theirs is None or theirs["hr"] is None
                    else hr - theirs["hr"]
                )
            out.append(entry)
        return out

    def to_dict(self) -> dict[str, Any]:
        doc = {"info": self.info, "summary": self.summary, "slices": self.slices}
        if self.replicates:
            doc["differences"] = self.differences()
        ablation = [s for s in self.strategies if s.startswith("online-ranker-no-")]
        sweep = [s for s in self.strategies if s.startswith("online-ranker@")]
        if "online-ranker" in self.strategies and ablation:
            doc["ablation"] = self.comparison("online-ranker", ablation)
        if "online-ranker" in self.strategies and sweep:
            doc["freshness"] = self.comparison("online-ranker", sweep)
        return doc


#: RESULTS Parquet key-value metadata: how the replay that wrote it scored requests.
RESULTS_METADATA = ("protocol", "k")


def write_results(frame: Any, path: str | Path, info: dict[str, Any] | None = None) -> Path:
    """Write RESULTS atomically (a killed or failed run leaves no partial file); ``info`` (a
    run's ``SimulationResult.info``) puts the protocol and K in the file's metadata
    (``rtml.protocol``, ``rtml.k``), where ``rtml evaluate`` reads them."""
    from rtml_cli.fsutil import PARQUET_OUTPUT, atomic_path

    path = Path(path)
    metadata = {f"rtml.{key}": str(info[key]) for key in RESULTS_METADATA if info and key in info}
    with atomic_path(path, PARQUET_OUTPUT, option="--out") as tmp:
        frame.write_parquet(tmp, metadata=metadata or None)
    return path


# --------------------------------------------------------------------------- the job
#
# simulate() = validate the options → prepare the replay (artifacts, window, arrays) →
# build and prepare the strategies → serve every request → summarise.


@dataclass(frozen=True)
class _Settings:
    """The validated options of one run."""

    names: list[str]  # strategy specs, in order
    lags: list[timedelta]  # every freshness lag the run reads (for the stream's reach)
    k: int
    freshness: timedelta
    n_candidates: int
    shard: tuple[int, int] | None
    seed: int
    decay: float
    search_k: int
    train_window: timedelta
    max_train_requests: int
    keep_lists: bool
    protocol: str
    sample: tuple[str, float] | None  # replay.parse_sample: a hash sample of the sessions
    bootstrap: int  # session-bootstrap replicates for the intervals (0: none)
    baseline_recs: Any  # the team's own lists for the ``baseline`` strategy (path or None)
    ann: str = "annoy"  # session-embedding's nearest-neighbour search: "annoy" or "ivf"
    nprobe: int = DEFAULT_NPROBE  # lists the IVF search probes
    micro_batch: int = DEFAULT_MICRO_BATCH  # consecutive requests per batched strategy call


@dataclass
class _Replay:
    """What a run replays: the artifacts, the events, the window and the replay arrays."""

    art: Any  # batch.artifacts.Artifacts
    events: Any  # polars.DataFrame of the events contract
    known_users: list[str]
    as_of_us: int
    start_us: int
    end_us: int | None
    reach_us: int  # how far before a request the stream must reach
    data: ReplayData  # this shard's requests (the stream is always every event)
    total_requests: int  # requests in the window, all shards
    warnings: list[str]
    world: dict[str, Any] | None  # a sample world's ground truth (world.json)


def check_bootstrap(replicates: int) -> None:
    """0 (no intervals) or at least 100 session-bootstrap replicates; else ``UsageError``."""
    if replicates and replicates < 100:
        raise UsageError(f"--bootstrap must be 0 (no intervals) or at least 100, got {replicates}")


def served_names(strategies: Sequence[str], baseline_recs: Any = None) -> list[str]:
    """The strategies a replay serves: the given names, with the team's lists (``baseline``)
    first when ``baseline_recs`` is given, since they are the reference of every verdict."""
    names = [s.strip() for s in strategies if s.strip()]
    if baseline_recs is not None and "baseline" not in names:
        names.insert(0, "baseline")
    return names


#: ``simulate``'s parameters that ``_validate`` does not take.
_NOT_VALIDATED = frozenset(
    {"events", "artifacts", "strategies", "start", "end", "world", "progress"}
)


def simulate_defaults() -> dict[str, Any]:
    """``simulate``'s defaults for the options ``_validate`` checks."""
    import inspect

    params = inspect.signature(simulate).parameters
    return {name: p.default for name, p in params.items() if name not in _NOT_VALIDATED}


def check_options(strategies: Sequence[str], **options: Any) -> None:
    """Raise ``UsageError`` for options ``simulate`` would refuse, before any data is read:
    lets a caller announce long set-up work (training the ranker) only for a valid run.
    ``options`` are ``simulate``'s keyword options; the missing ones take its defaults."""
    given = {k: v for k, v in options.items() if k not in _NOT_VALIDATED}
    _validate(strategies, **{**simulate_defaults(), **given})


def _validate(
    strategies: Sequence[str],
    *,
    k: int,
    n_candidates: int,
    decay: float,
    freshness: timedelta,
    shard: tuple[int, int] | str | None,
    **rest: Any,
) -> _Settings:
    """Check the options (``UsageError``) and parse the strategy names and the shard."""
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    if n_candidates < k:
        raise UsageError(f"--candidates ({n_candidates}) must be at least --k ({k})")
    if not 0 < decay <= 1:
        raise UsageError(f"--decay must be in (0, 1], got {decay}")
    if freshness < timedelta(0):
        raise UsageError("--freshness cannot be negative")
    check_bootstrap(rest.get("bootstrap", 0))
    if rest.get("ann", "annoy") not in ANN:
        raise UsageError(f"--ann must be one of {', '.join(ANN)}, got {rest.get('ann')!r}")
    if rest.get("nprobe", DEFAULT_NPROBE) < 1:
        raise UsageError(f"--nprobe must be at least 1, got {rest.get('nprobe')}")
    if rest.get("micro_batch", DEFAULT_MICRO_BATCH) < 1:
        raise UsageError(f"--micro-batch must be at least 1, got {rest.get('micro_batch')}")
    rest["sample"] = replay.parse_sample(rest.get("sample"))
    if rest.get("protocol") not in PROTOCOLS:
        raise UsageError(
            f"--protocol must be one of {', '.join(PROTOCOLS)}, got {rest.get('protocol')!r}"
        )
    names = served_names(strategies, rest.get("baseline_recs"))
    if not names:
        raise UsageError("no strategy given: e.g. --strategies popular,session-embedding")
    if len(set(names)) != len(names):
        raise UsageError(f"strategy listed twice in {','.join(names)}")
    lags = [freshness] + [parse_name(name)[1] or freshness for name in names]
    return _Settings(
        names=names,
        lags=lags,
        k=k,
        freshness=freshness,
        n_candidates=n_candidates,
        shard=replay.parse_shard(shard),
        decay=decay,
        **rest,
    )


def _prepare(
    events: Any,
    artifacts: Any,
    settings: _Settings,
    *,
    start: datetime | None,
    end: datetime | None,
    world: dict[str, Any] | str | Path | None,
) -> _Replay:
    """Load the artifacts and the events and build this shard's replay arrays (once)."""
    import polars as pl

    from rtml_cli.batch.artifacts import Artifacts, load_artifacts

    warnings: list[str] = []
    if not isinstance(artifacts, Artifacts) and start is not None:
        artifacts = _run_for(Path(artifacts), start, warnings)
    art = artifacts if isinstance(artifacts, Artifacts) else load_artifacts(artifacts)
    as_of_us = to_us(art.as_of)
    start_us = to_us(start) if start is not None else as_of_us
    end_us = to_us(end) if end is not None else None
    if end_us is not None and end_us <= start_us:
        raise UsageError(f"empty window: --end {from_us(end_us)} is not after {from_us(start_us)}")
    if start_us < as_of_us:
        warnings.append(
            f"the replay starts before the artifacts' as-of ({art.as_of.isoformat()}): the batch "
            "artifacts already know those events, so Stage-1 and Stage-2 figures are optimistic"
        )
    known_users = (
        art.user_features["user_id"].cast(pl.String).to_list()
        if "user_id" in art.user_features.columns
        else []
    )
    frame = replay.read_events(events)
    reach_us = _reach_us(settings)
    # ... and the trending slice a day of views before each request
    window_reach_us = max(reach_us, trending.REACH_US)
    data: ReplayData | None = None
    with contextlib.suppress(replay.EmptyWindow):  # no event there: no request either
        data = replay.prepare(
            frame,
            art.item_ids,
            known_users,
            start=start_us,
            end=end_us,
            shard=settings.shard,
            stream_from=start_us - window_reach_us,
            sample=settings.sample,
        )
    if data is None or data.stats["requests_all_shards"] == 0:
        raise DataError(
            f"no requests to replay in [{from_us(start_us):%Y-%m-%d %H:%M:%S}, "
            f"{'end' if end_us is None else f'{from_us(end_us):%Y-%m-%d %H:%M:%S}'}): "
            "no session has a second event there; check --start/--end and the artifacts' "
            f"as-of ({art.as_of.isoformat()})"
        )
    return _Replay(
        art=art,
        events=frame,
        known_users=known_users,
        as_of_us=as_of_us,
        start_us=start_us,
        end_us=end_us,
        reach_us=reach_us,
        data=data,
        total_requests=data.stats["requests_all_shards"],
        warnings=warnings,
        world=None if world is None else trending.load_world(world),
    )


def _reach_us(settings: _Settings) -> int:
    """How far before a request the stream must reach: the longest window plus the
    largest lag (``online.distributed``'s build task prepares the training window too)."""
    return round((max(WINDOWS) + max(settings.lags)).total_seconds() * 1e6)


def _run_for(root: Path, start: datetime, notes: list[str]) -> Path:
    """With ``--start`` and a ROOT, the run whose as-of is the newest at or before the start
    (``latest`` may be newer: a replay must not use artifacts that know its window). Without
    such a run, ``latest`` (and the replay warns that its figures are optimistic)."""
    from rtml_cli.batch.artifacts import resolve_run_dir
    from rtml_cli.batch.publish import newest_at_or_before

    if not root.is_dir() or (root / "manifest.json").exists():
        return root
    chosen = newest_at_or_before(
        root, start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    )
    if chosen is None:
        return root  # latest; the replay warns that it starts before the as-of
    if chosen.resolve() != resolve_run_dir(root):
        notes.append(
            f"using run {chosen.name}, the newest in {root} at or before --start (latest is "
            f"{resolve_run_dir(root).name}, which already knows the replay window)"
        )
    return chosen


def _training_data(run: _Replay, window: timedelta) -> Callable[[], ReplayData | None]:
    """The requests of ``window`` before the as-of, replayed on first call (then kept)."""
    kept: dict[str, ReplayData | None] = {}

    def load() -> ReplayData | None:
        if "data" not in kept:
            lo = run.as_of_us - round(window.total_seconds() * 1e6)
            try:
                kept["data"] = replay.prepare(
                    run.events,
                    run.art.item_ids,
                    run.known_users,
                    start=lo,
                    end=run.as_of_us,
                    stream_from=lo - run.reach_us,
                )
            except DataError:
                kept["data"] = None
        return kept["data"]

    return load


def _build(run: _Replay, settings: _Settings) -> tuple[list[Strategy], float]:
    """Every strategy of the run, prepared (the ranker trained); and the seconds it took."""
    return _build_with(run.art, settings, _training_data(run, settings.train_window))


def _build_with(
    art: Any, settings: _Settings, training: Callable[[], ReplayData | None]
) -> tuple[list[Strategy], float]:
    """``_build`` from the artifacts and the training window."""
    return _build_in(_env(art, settings, training), settings)


def _env(art: Any, settings: _Settings, training: Callable[[], ReplayData | None] | None) -> Env:
    """What the strategies of a run are built from (``online.distributed``'s tasks bind the
    driver's built strategies to one of their own)."""
    return Env(
        art,
        n_candidates=settings.n_candidates,
        decay=settings.decay,
        search_k=settings.search_k,
        freshness=settings.freshness,
        seed=settings.seed,
        training=training,
        max_train_requests=settings.max_train_requests,
        protocol=settings.protocol,
        baseline_recs=settings.baseline_recs,
        ann=settings.ann,
        nprobe=settings.nprobe,
    )


def _build_in(env: Env, settings: _Settings) -> tuple[list[Strategy], float]:
    """Every strategy of the run built from ``env``; and the seconds it took."""
    built_at = time.perf_counter()
    served = [build(name, env) for name in settings.names]
    return served, time.perf_counter() - built_at


def _replay_loop(
    data: ReplayData,
    served: Sequence[Strategy],
    streams: dict[int, WindowedCounts],
    lists: np.ndarray,
    latency: np.ndarray,
    k: int,
    progress: ProgressFn | None,
    step: int,
    protocol: str,
    micro_batch: int = DEFAULT_MICRO_BATCH,
) -> None:
    """Serve every request with every strategy, in time order; time each call.

    Requests go in micro-batches of ``micro_batch`` consecutive ones. A strategy that
    batches (``Strategy.batched``) gets the whole batch in one ``recommend_batch`` call,
    with the streams published as of the batch's first request (each request reads its own
    state with ``WindowedCounts.features_at``), and each request is charged the call's time
    divided by the batch size. Every other strategy is asked request by request, the streams
    moved to each request's time first, and timed per call."""
    rows, sesses = data.req_row.tolist(), data.req_sess.tolist()
    clock = time.perf_counter_ns
    n = data.n_requests
    together = [si for si, strategy in enumerate(served) if strategy.batched]
    alone = [si for si in range(len(served)) if si not in together]
    for lo in range(0, n, micro_batch):
        hi = min(n, lo + micro_batch)
        batch = RequestBatch(data, lo, hi, rows, sesses, streams, protocol)
        for stream in streams.values():
            stream.advance(batch.first_ts)
        for si in together:
            strategy = served[si]
            t0 = clock()
            outs = strategy.recommend_batch(batch, k)
            latency[si, lo:hi] = (clock() - t0 + strategy.borrowed_ns) // (hi - lo)
            strategy.borrowed_ns = 0
            if isinstance(outs, np.ndarray) and outs.ndim == 2:  # (requests, <= k) at once
                lists[si, lo:hi, : outs.shape[1]] = outs[:, :k]
                continue
            for j, out in enumerate(outs, start=lo):
                lists[si, j, : len(out)] = out[:k]
        if not alone:
            if progress is not None and hi // step > lo // step:
                progress(hi, n)
            continue
        for j, req in enumerate(batch, start=lo):
            for stream in streams.values():
                stream.advance(req.ts)
            for si in alone:
                strategy = served[si]
                t0 = clock()
                out = strategy.recommend(req, k)
                latency[si, j] = clock() - t0 + strategy.borrowed_ns
                strategy.borrowed_ns = 0
                lists[si, j, : len(out)] = out[:k]
        if progress is not None and hi // step > lo // step:
            progress(hi, n)


def _serve(
    data: ReplayData,
    served: Sequence[Strategy],
    k: int,
    progress: ProgressFn | None,
    protocol: str,
    micro_batch: int = DEFAULT_MICRO_BATCH,
) -> tuple[np.ndarray, np.ndarray, float]:
    """The lists served ((strategies, requests, k) item_idx, -1 padded), each call's ns,
    and the seconds the replay took."""
    streams = streams_for(data, {s.lag for s in served if s.lag is not None})
    n, n_strat = data.n_requests, len(served)
    lists = np.full((n_strat, n, k), -1, dtype=np.int64)
    latency = np.zeros((n_strat, n), dtype=np.int64)
    started = time.perf_counter()
    step = max(1, min(2000, n // 50 or 1))
    # the garbage collector would pause random requests: latency is measured with it off
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _replay_loop(
            data, served, streams, lists, latency, k, progress, step, protocol, micro_batch
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    replay_seconds = time.perf_counter() - started
    if progress is not None:
        progress(n, n)
    return lists, latency, replay_seconds


def simulate(
    events: Any,
    artifacts: Any,
    *,
    strategies: Sequence[str] = DEFAULT_STRATEGIES,
    k: int = 20,
    start: datetime | None = None,
    end: datetime | None = None,
    freshness: timedelta = timedelta(seconds=60),
    n_candidates: int = 500,
    shard: tuple[int, int] | str | None = None,
    seed: int = 0,
    decay: float = 0.7,
    train_window: timedelta = timedelta(days=7),
    max_train_requests: int = 4000,
    search_k: int = -1,
    keep_lists: bool = False,
    world: dict[str, Any] | str | Path | None = None,
    progress: ProgressFn | None = None,
    protocol: str = DEFAULT_PROTOCOL,
    sample: str | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    baseline_recs: str | Path | None = None,
    ann: str = "annoy",
    nprobe: int = DEFAULT_NPROBE,
    micro_batch: int = DEFAULT_MICRO_BATCH,
) -> SimulationResult:
    """Replay ``events`` after the artifacts' as-of and serve every request with each strategy.

    ``events``: a Parquet path/glob/directory or a Polars frame of the events contract.
    ``artifacts``: a precompute ROOT / run directory or a loaded ``Artifacts``.
    ``strategies``: registered names (``strategies.REGISTRY``), optionally ``name@freshness``.
    The window is ``[start, end)``, ``start`` defaulting to the artifacts' as-of.
    ``freshness`` is the lag after which streaming features become visible.
    ``shard=(i, n)`` or ``"i/n"`` serves only the requests of shard ``i`` of ``n``.
    ``keep_lists`` keeps each strategy's served lists (item_idx) in ``result.lists``.
    ``decay``: weight per step back (decayed session embedding, session-kNN);
    ``search_k``: Annoy ``search_k`` of session-embedding (-1: n × trees);
    ``train_window`` / ``max_train_requests``: where and how many requests before the
    as-of the online-ranker variants are trained on (fewer = faster setup);
    ``world``: a sample world's ``world.json`` (path or loaded dict); adds the
    ``world_bursts`` slice (requests whose next item is a ground-truth burst item during
    its burst) next to the log-derived ``trending`` slice (``online.trending``).
    ``protocol``: ``next-unseen`` (lists never hold a seen item; the truth is the first
    later unseen item) or ``next-item`` (the truth is the next event's item, re-views
    included, as in published session-based benchmarks); see ``base.PROTOCOLS``.
    ``sample``: ``"10%"`` or ``"5000"`` (sessions) replays a deterministic hash sample of
    the sessions (the stream still counts every event).
    ``bootstrap``: replicates of the session bootstrap behind every interval (``hr_ci``…,
    paired differences in ``differences`` and the comparisons); 0: no intervals.
    ``baseline_recs``: the team's own lists (Parquet/CSV: user_id, rank, item_id[, as_of]),
    served as the ``baseline`` strategy (added to ``strategies`` when not named).
    ``ann``: session-embedding's nearest-neighbour search, ``"annoy"`` (the published index,
    one query per request) or ``"ivf"`` (an in-memory IVF over the same embeddings built at
    start, ``nprobe`` lists probed, one search per micro-batch: ``online.ivf``);
    ``micro_batch``: consecutive requests a batching strategy serves per call (its latency
    is the call's time divided by the batch size); the lists do not depend on it.
    ``progress(done, total)`` is called during the replay.
    Raises ``UsageError`` for bad options and ``DataError``/``InputMissing`` for bad inputs.
    """
    settings = _validate(
        strategies,
        k=k,
        n_candidates=n_candidates,
        decay=decay,
        freshness=freshness,
        shard=shard,
        seed=seed,
        search_k=search_k,
        train_window=train_window,
        max_train_requests=max_train_requests,
        keep_lists=keep_lists,
        protocol=protocol,
        sample=sample,
        bootstrap=bootstrap,
        baseline_recs=baseline_recs,
        ann=ann,
        nprobe=nprobe,
        micro_batch=micro_batch,
    )
    run = _prepare(events, artifacts, settings, start=start, end=end, world=world)
    served, setup_seconds = _build(run, settings)
    lists, latency, replay_seconds = _serve(
        run.data, served, settings.k, progress, settings.protocol, settings.micro_batch
    )
    return _summarise(run, settings, served, lists, latency, setup_seconds, replay_seconds)


# --------------------------------------------------------------------------- summaries


def _summarise(
    run: _Replay,
    settings: _Settings,
    served: Sequence[Strategy],
    lists: np.ndarray,
    latency: np.ndarray,
    setup_seconds: float,
    replay_seconds: float,
    truth: Truth | None = None,
) -> SimulationResult:
    """Metrics per request, their summaries per strategy, segment and slice, and the info.
    ``truth``: ``truth_for(run.data)`` when already computed (by a distributed run's tasks)."""
    data, names = run.data, settings.names
    if truth is None:
        truth = truth_for(data, settings.protocol)
    latency_us = latency / 1000.0
    segment = data.segment[data.req_sess] if data.n_requests else np.zeros(0, np.int8)
    metrics = [request_metrics(lists[si], truth, data.n_items) for si in range(len(names))]

    def rows(mask: np.ndarray, si: int, segment_name: str = "all") -> dict[str, Any]:
        return summarise(
            names[si], segment_name, mask, metrics[si], latency_us[si], lists[si], data.n_items
        )

    groups = {"all": np.ones(data.n_requests, bool)}
    summary = []
    for si in range(len(names)):
        summary.append(rows(groups["all"], si))
        for code, seg_name in enumerate(SEGMENTS):
            groups[seg_name] = segment == code
            summary.append(rows(groups[seg_name], si, seg_name))
    slices = []
    for slice_name, mask in _slice_masks(run, truth).items():
        groups[f"slice:{slice_name}"] = mask
        for si, name in enumerate(names):
            row = rows(mask, si)
            slices.append(
                {
                    "slice": slice_name,
                    "strategy": name,
                    "requests": row["requests"],
                    "hr": row["hr"],
                    "mrr": row["mrr"],
                    "ndcg": row["ndcg"],
                }
            )
    boot = _Intervals.compute(data, metrics, groups, settings) if settings.bootstrap else None
    if boot is not None:
        boot.annotate(summary, slices, names)
    return SimulationResult(
        frame=_results_frame(data, truth, names, metrics, latency_us, run.art.item_ids, segment),
        summary=summary,
        info=_info(run, settings, truth, served, setup_seconds, replay_seconds),
        strategies=names,
        lists={name: lists[si] for si, name in enumerate(names)} if settings.keep_lists else {},
        slices=slices,
        replicates=boot.overall(names) if boot is not None else {},
    )


_METRICS = (("hit", "hr"), ("rr", "mrr"), ("ndcg", "ndcg"))


@dataclass
class _Intervals:
    """Session-bootstrap replicates of HR/MRR/NDCG per group (all, segment, slice), metric
    and strategy: one pass over shared replicates (``intervals.SessionBootstrap``)."""

    keys: list[tuple[str, str, int]]  # (group, metric key, strategy index) per column
    replicates: np.ndarray  # (n_boot, columns)

    @classmethod
    def compute(
        cls,
        data: ReplayData,
        metrics: list[dict[str, np.ndarray]],
        groups: dict[str, np.ndarray],
        settings: _Settings,
    ) -> _Intervals | None:
        if not data.n_requests:
            return None
        _, sess = np.unique(data.req_sess, return_inverse=True)
        n_sess = int(sess.max()) + 1
        keys, sums, counts = [], [], []
        for group, mask in groups.items():
            for si, m in enumerate(metrics):
                scored = mask & m["has_truth"]
                count = np.bincount(sess[scored], minlength=n_sess)
                for name, key in _METRICS:
                    values = np.asarray(m[name], dtype=np.float64)[scored]
                    sums.append(np.bincount(sess[scored], weights=values, minlength=n_sess))
                    counts.append(count)
                    keys.append((group, key, si))
        boot = SessionBootstrap(n_sess, settings.bootstrap, settings.seed)
        return cls(keys, boot.ratios(np.stack(sums, axis=1), np.stack(counts, axis=1)))

    def column(self, group: str, key: str, si: int) -> np.ndarray:
        return self.replicates[:, self.keys.index((group, key, si))]

    def annotate(
        self, summary: list[dict[str, Any]], slices: list[dict[str, Any]], names: list[str]
    ) -> None:
        """Add ``hr_ci``, ``mrr_ci``, ``ndcg_ci`` ([low, high], 95%) to every row."""
        index = {name: si for si, name in enumerate(names)}
        for row in summary:
            for _, key in _METRICS:
                ci = interval(self.column(row["segment"], key, index[row["strategy"]]))
                row[f"{key}_ci"] = None if ci is None else list(ci)
        for row in slices:
            for _, key in _METRICS:
                group = f"slice:{row['slice']}"
                ci = interval(self.column(group, key, index[row["strategy"]]))
                row[f"{key}_ci"] = None if ci is None else list(ci)

    def overall(self, names: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """strategy → metric key → the overall replicates (for paired differences)."""
        return {
            name: {key: self.column("all", key, si) for _, key in _METRICS}
            for si, name in enumerate(names)
        }


def _slice_masks(run: _Replay, truth: Truth) -> dict[str, np.ndarray]:
    """Requests of each slice: ``trending`` (from the log), ``world_bursts`` (with a world)."""
    data = run.data
    req_ts = data.ts[data.req_row]
    masks = {
        "trending": trending.trending_mask(
            data.stream_ts,
            data.stream_item,
            data.stream_kind,
            req_ts,
            truth.next_code,
            data.n_items,
        )
    }
    if run.world is not None:
        masks["world_bursts"] = trending.world_bursts_mask(
            run.world, run.art.to_idx, req_ts, truth.next_code
        )
    return masks


def _info(
    run: _Replay,
    settings: _Settings,
    truth: Truth,
    served: Sequence[Strategy],
    setup_seconds: float,
    replay_seconds: float,
) -> dict[str, Any]:
    """The run's facts: window, counts, unknown items, timings, what strategies report."""
    data, shard, n = run.data, settings.shard, run.data.n_requests
    reports = {s.name: s.report() for s in served}
    return {
        "as_of": run.art.as_of.isoformat(),
        "window_start": from_us(run.start_us).isoformat(),
        "window_end": None if run.end_us is None else from_us(run.end_us).isoformat(),
        "protocol": settings.protocol,
        "run": run.art.run_dir.name,  # the precompute run the replay read
        "k": settings.k,
        "freshness_s": settings.freshness.total_seconds(),
        "candidates": settings.n_candidates,
        "ann": settings.ann,
        "nprobe": settings.nprobe if settings.ann == "ivf" else None,
        "micro_batch": settings.micro_batch,
        "seed": settings.seed,
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "sample": _sample_text(settings.sample),
        "requests_before_sample": data.stats["requests_before_sample"],
        "sessions_served": data.stats["sessions_served"],
        "bootstrap": settings.bootstrap,
        "intervals": (
            f"95% percentile intervals from a Poisson bootstrap over the "
            f"{data.stats['sessions_served']:,} sessions served ({settings.bootstrap} "
            "replicates), paired across strategies"
            if settings.bootstrap
            else None
        ),
        "requests": n,
        "requests_all_shards": run.total_requests,
        "sessions_in_window": data.stats["sessions_in_window"],
        "events_in_window": data.stats["events_in_window"],
        "unknown_item_events": data.stats["unknown_item_events"],
        "unknown_items": data.stats["unknown_items"],
        "requests_with_unknown_truth": int((truth.next_code >= data.n_items).sum()),
        "requests_without_truth": int((truth.next_code < 0).sum()),
        "replay_seconds": round(replay_seconds, 3),
        "requests_per_second": round(n / replay_seconds, 1) if replay_seconds > 0 else None,
        "setup_seconds": round(setup_seconds, 3),
        "rankers": {name: report for name, report in reports.items() if report is not None},
        "warnings": run.warnings,
        "slices": {
            "trending": trending.definition(),
            **(
                {"world_bursts": "the next item is a world.json burst item, during its burst"}
                if run.world is not None
                else {}
            ),
        },
    }


def _sample_text(sample: tuple[str, float] | None) -> str | None:
    if sample is None:
        return None
    kind, amount = sample
    return f"{amount * 100:g}%" if kind == "share" else f"{int(amount)} sessions"


def _results_frame(
    data: ReplayData,
    truth: Truth,
    names: list[str],
    metrics: list[dict[str, np.ndarray]],
    latency_us: np.ndarray,
    item_ids: np.ndarray,
    segment: np.ndarray,
) -> Any:
    """The RESULTS frame: one row per request and strategy (``contracts.RESULTS``)."""
    import polars as pl

    n, n_strat = data.n_requests, len(names)
    req_ts = data.ts[data.req_row]

    def per_request(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, n_strat)

    def per_strategy(key: str) -> np.ndarray:
        return np.stack([m[key] for m in metrics], axis=1).ravel()

    rank = per_strategy("rank")
    has_purchase = per_request(truth.purchase_code >= 0)
    next_known = (truth.next_code >= 0) & (truth.next_code < data.n_items)
    next_item = np.where(next_known, truth.next_code, 0)
    session_ids = np.asarray(data.session_ids, dtype=object)[data.req_sess] if n else []
    frame = pl.DataFrame(
        {
            "request_id": per_request(data.request_id),
            "ts": pl.Series(per_request(req_ts)).cast(pl.Datetime("us", "UTC")),
            "session_id": pl.Series(
                np.repeat(np.asarray(session_ids, dtype=object), n_strat), dtype=pl.String
            )
            if n
            else pl.Series([], dtype=pl.String),
            "segment": pl.Series(
                np.repeat(np.asarray(SEGMENTS, dtype=object)[segment], n_strat) if n else [],
                dtype=pl.String,
            ),
            "position": per_request(data.req_row - data.sess_start[data.req_sess] + 1),
            "strategy": pl.Series(np.tile(np.asarray(names, dtype=object), n), dtype=pl.String),
            "rank": pl.Series(np.where(rank > 0, rank, 0), dtype=pl.Int32),
            "hit": per_strategy("hit"),
            "rr": per_strategy("rr"),
            "ndcg": per_strategy("ndcg"),
            "hit_later": per_strategy("hit_later"),
            "hit_purchase": per_strategy("hit_purchase"),
            "latency_us": np.stack(list(latency_us), axis=1).ravel() if n else np.zeros(0),
            "_has_purchase": has_purchase,
            "_has_truth": per_request(truth.next_code >= 0),
            "_rank_known": rank > 0,
            "_next_known": per_request(next_known),
            "next_item_id": pl.Series(per_request(item_ids[next_item] if n else np.zeros(0))),
        }
    )
    return frame.with_columns(
        pl.when(pl.col("_rank_known")).then(pl.col("rank")).alias("rank"),
        pl.when(pl.col("_has_purchase")).then(pl.col("hit_purchase")).alias("hit_purchase"),
        pl.when(pl.col("_next_known")).then(pl.col("next_item_id")).alias("next_item_id"),
        # a request without a truth is not a miss: no hit, rr, ndcg (rtml evaluate drops it)
        *(
            pl.when(pl.col("_has_truth")).then(pl.col(c)).alias(c)
            for c in ("hit", "rr", "ndcg", "hit_later")
        ),
    ).drop("_has_purchase", "_has_truth", "_rank_known", "_next_known")
