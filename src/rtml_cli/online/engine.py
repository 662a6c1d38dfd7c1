"""The replay engine: ``simulate()`` serves every request of a log with every strategy.

Time-ordered replay of all sessions, interleaved as they happened. At each request the
engine (1) moves every streaming view forward to the request time — the streaming
job's work, asynchronous in production, so outside the measured latency — (2) builds
the ``Request`` from the session's earlier events only, and (3) asks each strategy,
timing the call with ``time.perf_counter_ns`` (candidate generation, feature lookup
and computation, ranking). Metrics are computed after the loop, vectorised.

Sharding (``shard=(i, n)``) keeps the requests of sessions whose CRC-32 falls in shard
``i``; the stream is still built from all events, so streaming features are the same
as in one run and the shards' RESULTS concatenate (sorted by ``request_id``) into the
single-run RESULTS.
"""

from __future__ import annotations

import dataclasses
import gc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.online import replay, trending
from rtml_cli.online.metrics import request_metrics, summarise
from rtml_cli.online.replay import SEGMENTS, ReplayData, from_us, to_us, truth_for
from rtml_cli.online.strategies import DEFAULT_STRATEGIES, Env, Request, Strategy, build, parse_name
from rtml_cli.online.streaming import WINDOWS, WindowedCounts

ProgressFn = Callable[[int, int], None]


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
                "mrr_delta": row["mrr"] - ref["mrr"],
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
        ablation = [s for s in self.strategies if s.startswith("online-ranker-no-")]
        sweep = [s for s in self.strategies if s.startswith("online-ranker@")]
        if "online-ranker" in self.strategies and ablation:
            doc["ablation"] = self.comparison("online-ranker", ablation)
        if "online-ranker" in self.strategies and sweep:
            doc["freshness"] = self.comparison("online-ranker", sweep)
        return doc


def write_results(frame, path: str | Path) -> Path:
    """Write RESULTS atomically (a killed or failed run leaves no partial file)."""
    from rtml_cli.fsutil import PARQUET_OUTPUT, atomic_path

    path = Path(path)
    with atomic_path(path, PARQUET_OUTPUT, option="--out") as tmp:
        frame.write_parquet(tmp)
    return path


def _request(data: ReplayData, j: int, rows, sesses, streams) -> Request:
    row = rows[j]
    s = sesses[j]
    s0 = int(data.sess_start[s])
    history = data.code[s0:row]
    return Request(
        int(data.ts[row]),
        int(data.ts[s0]),
        data.user_ids[s],
        int(data.segment[s]),
        history[history < data.n_items],
        n_events=row - s0,
        streams=streams,
    )


def _streams_for(data: ReplayData, lags: set[timedelta]) -> dict[int, WindowedCounts]:
    return {
        round(lag.total_seconds() * 1e6): WindowedCounts(
            data.stream_ts, data.stream_item, data.stream_kind, data.n_items, lag=lag
        )
        for lag in lags
    }


def _replay_loop(data, served, streams, lists, latency, k, progress, step) -> None:
    """Serve every request with every strategy, in time order; time each call."""
    rows, sesses = data.req_row.tolist(), data.req_sess.tolist()
    clock = time.perf_counter_ns
    n = data.n_requests
    for j in range(n):
        req = _request(data, j, rows, sesses, streams)
        for stream in streams.values():
            stream.advance(req.ts)
        for si, strategy in enumerate(served):
            t0 = clock()
            out = strategy.recommend(req, k)
            latency[si, j] = clock() - t0 + strategy.borrowed_ns
            strategy.borrowed_ns = 0
            lists[si, j, : len(out)] = out[:k]
        if progress is not None and (j + 1) % step == 0:
            progress(j + 1, n)


def _ranker_trainer(
    load_training: Callable[[], ReplayData | None], max_requests: int, seed: int
) -> Callable[[Any], None]:
    """A function that trains an ``OnlineRanker`` on requests replayed before the as-of."""
    from rtml_cli.online.ranker import NEGATIVES_PER_REQUEST

    shared: dict[int, dict] = {}  # per training request: candidates every variant reuses

    def fit(ranker) -> None:
        data = load_training()
        if data is None or data.n_requests == 0:
            ranker.use_prior()
            return
        rng = np.random.default_rng(seed)
        pick = np.arange(data.n_requests)
        if len(pick) > max_requests:
            pick = np.sort(rng.choice(pick, size=max_requests, replace=False))
        sub = dataclasses.replace(
            data,
            req_row=data.req_row[pick],
            req_sess=data.req_sess[pick],
            request_id=data.request_id[pick],
        )
        truth = truth_for(sub)
        lags = {ranker.lag} if ranker.lag is not None else set()
        streams = _streams_for(sub, lags)
        rows, sesses = sub.req_row.tolist(), sub.req_sess.tolist()
        xs, ys = [], []
        for j in range(sub.n_requests):
            target = truth.next_code[j]
            if target < 0 or target >= sub.n_items:
                continue
            req = _request(sub, j, rows, sesses, streams)
            req.cache = shared.setdefault(j, {})
            for stream in streams.values():
                stream.advance(req.ts)
            cand, vector, knn = ranker.candidates(req)
            positive = np.flatnonzero(cand == target)
            if not len(positive):
                continue
            negatives = np.flatnonzero(cand != target)
            if len(negatives) > NEGATIVES_PER_REQUEST:
                negatives = rng.choice(negatives, NEGATIVES_PER_REQUEST, replace=False)
            keep = np.concatenate([positive, np.sort(negatives)])
            xs.append(ranker.features(req, cand[keep], vector, knn))
            ys.append(np.r_[1.0, np.zeros(len(keep) - 1)])
        if not xs:
            ranker.use_prior()
            return
        ranker.fit(np.concatenate(xs), np.concatenate(ys))

    return fit


def simulate(
    events,
    artifacts,
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
    ``progress(done, total)`` is called during the replay.
    Raises ``UsageError`` for bad options and ``DataError``/``InputMissing`` for bad inputs.
    """
    import polars as pl

    from rtml_cli.batch.artifacts import Artifacts, load_artifacts

    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    if n_candidates < k:
        raise UsageError(f"--candidates ({n_candidates}) must be at least --k ({k})")
    if not 0 < decay <= 1:
        raise UsageError(f"--decay must be in (0, 1], got {decay}")
    if freshness < timedelta(0):
        raise UsageError("--freshness cannot be negative")
    names = [s.strip() for s in strategies if s.strip()]
    if not names:
        raise UsageError("no strategy given: e.g. --strategies popular,session-embedding")
    if len(set(names)) != len(names):
        raise UsageError(f"strategy listed twice in {','.join(names)}")
    lags = [freshness]
    for name in names:
        lags.append(parse_name(name)[1] or freshness)
    shard = replay.parse_shard(shard)

    art = artifacts if isinstance(artifacts, Artifacts) else load_artifacts(artifacts)
    as_of_us = to_us(art.as_of)
    start_us = to_us(start) if start is not None else as_of_us
    end_us = to_us(end) if end is not None else None
    if end_us is not None and end_us <= start_us:
        raise UsageError(f"empty window: --to {from_us(end_us)} is not after {from_us(start_us)}")
    warnings = []
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
    # the stream needs the longest window plus the largest lag before each request
    reach_us = round((max(WINDOWS) + max(lags)).total_seconds() * 1e6)
    # ... and the trending slice a day of views before each request
    window_reach_us = max(reach_us, trending.REACH_US)
    try:
        data = replay.prepare(
            frame,
            art.item_ids,
            known_users,
            start=start_us,
            end=end_us,
            stream_from=start_us - window_reach_us,
        )
        total_requests = data.n_requests
    except replay.EmptyWindow:
        total_requests = 0
    if total_requests == 0:
        raise DataError(
            f"no requests to replay in [{from_us(start_us):%Y-%m-%d %H:%M:%S}, "
            f"{'end' if end_us is None else f'{from_us(end_us):%Y-%m-%d %H:%M:%S}'}): "
            "no session has a second event there; check --from/--to and the artifacts' as-of "
            f"({art.as_of.isoformat()})"
        )
    if shard is not None:
        data = replay.prepare(
            frame,
            art.item_ids,
            known_users,
            start=start_us,
            end=end_us,
            shard=shard,
            stream_from=start_us - window_reach_us,
        )

    training: dict[str, ReplayData | None] = {}

    def load_training() -> ReplayData | None:
        if "data" not in training:
            lo = as_of_us - round(train_window.total_seconds() * 1e6)
            try:
                training["data"] = replay.prepare(
                    frame,
                    art.item_ids,
                    known_users,
                    start=lo,
                    end=as_of_us,
                    stream_from=lo - reach_us,
                )
            except DataError:
                training["data"] = None
        return training["data"]

    env = Env(
        art,
        n_candidates=n_candidates,
        decay=decay,
        search_k=search_k,
        freshness=freshness,
        seed=seed,
    )
    env.fit_ranker = _ranker_trainer(load_training, max_train_requests, seed)
    built_at = time.perf_counter()
    served: list[Strategy] = [build(name, env) for name in names]
    setup_seconds = time.perf_counter() - built_at
    lags = {s.lag for s in served if s.lag is not None}
    streams = _streams_for(data, lags)

    n, n_strat = data.n_requests, len(served)
    lists = np.full((n_strat, n, k), -1, dtype=np.int64)
    latency = np.zeros((n_strat, n), dtype=np.int64)
    started = time.perf_counter()
    step = max(1, min(2000, n // 50 or 1))
    # the garbage collector would pause random requests: latency is measured with it off
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        _replay_loop(data, served, streams, lists, latency, k, progress, step)
    finally:
        if gc_was_enabled:
            gc.enable()
    replay_seconds = time.perf_counter() - started
    if progress is not None:
        progress(n, n)

    truth = truth_for(data)
    latency_us = latency / 1000.0
    segment = data.segment[data.req_sess] if n else np.zeros(0, np.int8)
    metrics = [request_metrics(lists[si], truth, data.n_items) for si in range(n_strat)]
    summary = []
    for si, name in enumerate(names):
        summary.append(
            summarise(
                name, "all", np.ones(n, bool), metrics[si], latency_us[si], lists[si], data.n_items
            )
        )
        for code, seg_name in enumerate(SEGMENTS):
            summary.append(
                summarise(
                    name,
                    seg_name,
                    segment == code,
                    metrics[si],
                    latency_us[si],
                    lists[si],
                    data.n_items,
                )
            )

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
    if world is not None:
        if not isinstance(world, dict):
            world = _load_world(world)
        masks["world_bursts"] = trending.world_bursts_mask(
            world, art.to_idx, req_ts, truth.next_code
        )
    slices = []
    for slice_name, mask in masks.items():
        for si, name in enumerate(names):
            row = summarise(name, "all", mask, metrics[si], latency_us[si], lists[si], data.n_items)
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

    result_frame = _results_frame(data, truth, names, metrics, latency_us, art.item_ids, segment)
    ranker_info = {
        s.name: {
            "families": list(s.families),
            "freshness_s": None if s.lag is None else s.lag.total_seconds(),
            "trained_on_rows": s.trained_on,
            "weights": dict(zip(s.feature_names, np.round(s.coef, 4).tolist(), strict=True)),
        }
        for s in served
        if hasattr(s, "families")
    }
    info = {
        "as_of": art.as_of.isoformat(),
        "window_start": from_us(start_us).isoformat(),
        "window_end": None if end_us is None else from_us(end_us).isoformat(),
        "k": k,
        "freshness_s": freshness.total_seconds(),
        "candidates": n_candidates,
        "seed": seed,
        "shard": None if shard is None else f"{shard[0]}/{shard[1]}",
        "requests": n,
        "requests_all_shards": total_requests,
        "sessions_in_window": data.stats["sessions_in_window"],
        "events_in_window": data.stats["events_in_window"],
        "unknown_item_events": data.stats["unknown_item_events"],
        "unknown_items": data.stats["unknown_items"],
        "requests_with_unknown_truth": int((truth.next_code >= data.n_items).sum()),
        "requests_without_truth": int((truth.next_code < 0).sum()),
        "replay_seconds": round(replay_seconds, 3),
        "requests_per_second": round(n / replay_seconds, 1) if replay_seconds > 0 else None,
        "setup_seconds": round(setup_seconds, 3),
        "rankers": ranker_info,
        "warnings": warnings,
        "slices": {
            "trending": trending.definition(),
            **(
                {"world_bursts": "the next item is a world.json burst item, during its burst"}
                if world is not None
                else {}
            ),
        },
    }
    return SimulationResult(
        frame=result_frame,
        summary=summary,
        info=info,
        strategies=names,
        lists={name: lists[si] for si, name in enumerate(names)} if keep_lists else {},
        slices=slices,
    )


def _load_world(path: str | Path) -> dict[str, Any]:
    """A sample world's ``world.json`` (the file or its directory)."""
    import json

    from rtml_cli.errors import InputMissing

    path = Path(path)
    if path.is_dir():
        path = path / "world.json"
    if not path.is_file():
        raise InputMissing(f"world file not found: {path} (give a sample world's world.json)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; give a sample world's world.json") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("bursts"), list):
        raise DataError(f"{path} has no 'bursts' list: is it a sample world's world.json?")
    return doc


def _results_frame(data, truth, names, metrics, latency_us, item_ids, segment):
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
            "_rank_known": rank > 0,
            "_next_known": per_request(next_known),
            "next_item_id": pl.Series(per_request(item_ids[next_item] if n else np.zeros(0))),
        }
    )
    return frame.with_columns(
        pl.when(pl.col("_rank_known")).then(pl.col("rank")).alias("rank"),
        pl.when(pl.col("_has_purchase")).then(pl.col("hit_purchase")).alias("hit_purchase"),
        pl.when(pl.col("_next_known")).then(pl.col("next_item_id")).alias("next_item_id"),
    ).drop("_has_purchase", "_rank_known", "_next_known")
