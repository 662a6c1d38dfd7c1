"""The online ranker over a micro-batch of requests: candidates, features and scores at once.

With ``--ann ivf`` the ranker serves a micro-batch (``Strategy.recommend_batch``) in a few
vectorised steps instead of one Python pass per request: the batch's session vectors probe
the IVF once (the ANN candidates of a request are the items of its nearest lists, about
``--candidates`` of them: ``candidate_lists``),
the session-kNN scores of every request come from one pass over the neighbour lists, the
union of both is one sort of (request, item) keys, and the features of every (request,
candidate) row are computed together — streaming counts each at its own request's time
(``WindowedCounts.features_many``) — then scored with one matrix-vector product. Rows
are grouped by request throughout, and nothing of one request reaches another's rows.

The features are those of ``OnlineRanker.features`` (tested row for row), so the weights
trained per request serve the batch unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rtml_cli.online.base import Env, Request
from rtml_cli.online.replay import RequestBatch
from rtml_cli.online.stage2 import top_by_score

if TYPE_CHECKING:
    from rtml_cli.online.stage3 import OnlineRanker

SESSION_COLUMNS = 7  # the session (realtime) family's columns: ``session_block``
STREAMING_COLUMNS = 7  # the streaming family's: ``streaming_block``
KNN_RECENT = 10  # the session-kNN aggregation reads the last 10 items (``stage2.knn_scores``)


@dataclass
class BatchCandidates:
    """Every (request, candidate) row of a micro-batch, grouped by request, items ascending."""

    req: np.ndarray  # request position in the batch, per row (non-decreasing)
    item: np.ndarray  # candidate item_idx per row
    bounds: np.ndarray  # rows of request r: bounds[r]:bounds[r + 1]
    vectors: np.ndarray  # (batch, dim) float32 session vectors (0 for an empty session)
    has_vector: np.ndarray  # bool per request
    knn_keys: np.ndarray  # request * n_items + item of every kNN-proposed item, ascending
    knn_score: np.ndarray  # their scores (float32)
    knn_best: np.ndarray  # per request: its best kNN score (0 when none)
    session: BatchSessions | None = None  # the requests' sessions as arrays
    lists: np.ndarray | None = None  # (batch, lists) each request's probed IVF lists


@dataclass
class BatchSessions:
    """What the ranker reads of a micro-batch's requests, as arrays (``batch_sessions``)."""

    items: np.ndarray  # int64 known items of every request's session, request after request
    item_bounds: np.ndarray  # int64 (requests + 1): request r's are items[a:b]
    times: np.ndarray  # int64 request time (µs)
    log_len: np.ndarray  # float64 log1p(earlier events, unknown items included)
    log_elapsed: np.ndarray  # float64 log1p(minutes since the session started)


def batch_sessions(env: Env, batch: Sequence[Request]) -> tuple[BatchSessions, tuple]:
    """The batch's sessions as arrays, and the raw inputs of ``kernels.ranker_sessions``:
    (codes, starts, ends, seen items flat, their bounds). A ``RequestBatch`` is read straight
    from the replay arrays (no ``Request`` objects: request ``q``'s history is its session's
    events before its own); any other sequence from its ``Request`` objects."""
    n_req = len(batch)
    if isinstance(batch, RequestBatch) and batch.data.n_items == env.n_items:
        data = batch.data
        ends = data.req_row[batch.lo : batch.hi]
        starts = data.sess_start[data.req_sess[batch.lo : batch.hi]]
        codes = data.code
        times = data.ts[ends]
        n_events = (ends - starts).tolist()
        elapsed = (times - data.ts[starts]).tolist()
        seen = None  # the session's own items under next-unseen, none under next-item
        unseen = batch.protocol == "next-unseen"
    else:
        lengths = np.array([len(r.items) for r in batch], dtype=np.int64)
        ends = np.cumsum(lengths)
        starts = ends - lengths
        codes = np.concatenate([r.items for r in batch] + [np.zeros(0, np.int64)])
        times = np.array([r.ts for r in batch], dtype=np.int64)
        n_events = [r.n_events for r in batch]
        elapsed = [r.ts - r.session_start for r in batch]
        seen = [r.seen for r in batch]
        unseen = True
    log_len = np.array([math.log1p(n) for n in n_events], dtype=np.float64)
    log_elapsed = np.array([math.log1p(max(e, 0) / 60e6) for e in elapsed], dtype=np.float64)
    raw = (
        np.ascontiguousarray(codes, dtype=np.int64),
        np.ascontiguousarray(starts, dtype=np.int64),
        np.ascontiguousarray(ends, dtype=np.int64),
    )
    sessions = BatchSessions(
        items=np.zeros(0, np.int64),
        item_bounds=np.zeros(n_req + 1, np.int64),
        times=np.ascontiguousarray(times, dtype=np.int64),
        log_len=log_len,
        log_elapsed=log_elapsed,
    )
    if seen is not None:
        seen_bounds = np.r_[0, np.cumsum([len(x) for x in seen])].astype(np.int64)
        seen_flat = np.concatenate(seen + [np.zeros(0, np.int64)]).astype(np.int64, copy=False)
        return sessions, (*raw, seen_flat, seen_bounds, False)
    return sessions, (*raw, None, None, unseen)


def candidate_lists(env: Env) -> int:
    """How many IVF lists give the ranker its ANN candidates: about ``env.n_candidates``
    items (``--candidates``), as many as the Annoy query returns."""
    index = env.ivf()
    return max(1, round(env.n_candidates * index.n_lists / max(env.n_items, 1)))


def ivf_items(env: Env, vector: np.ndarray) -> np.ndarray:
    """The items of the IVF lists nearest ``vector`` (the ranker's ANN candidates)."""
    index = env.ivf()
    return index.members(index.probe(vector[None], candidate_lists(env))[0])


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` by sorting (numpy 2's hashing ``unique`` is ~10x slower on 100k+ keys)."""
    values = np.sort(values)
    return values[np.r_[True, values[1:] != values[:-1]]] if len(values) else values


def knn_weights(env: Env) -> np.ndarray:
    """The session-kNN recency weight per step back, float32 (``stage2.knn_scores``)."""
    return np.array([env.decay**s for s in range(KNN_RECENT)], dtype=np.float32)


def batch_candidates(env: Env, batch: Sequence[Request]) -> BatchCandidates:
    """Candidates of every request of ``batch``: IVF lists ∪ kNN items, unseen, ascending;
    the popularity list for a session without a known item (as ``OnlineRanker._generate``).

    Two compiled passes, request by request (``kernels.ranker_sessions``: items, session
    vector, kNN scores; ``kernels.ranker_candidates``: the union), around the IVF probe of
    the batch's session vectors, which stays in numpy (float64, as ``IVFIndex.probe``)."""
    from rtml_cli.online.kernels import ranker_candidates, ranker_sessions

    n, n_req = env.n_items, len(batch)
    sessions, (codes, starts, ends, seen, seen_bounds, own_seen) = batch_sessions(env, batch)
    items, item_bounds, vectors, has_vector, knn_item, knn_sum, knn_bounds, keep, tied = (
        ranker_sessions(
            codes,
            starts,
            ends,
            n,
            env.embeddings,
            env.indptr,
            env.nbr,
            env.nbr_score,
            knn_weights(env),
            env.n_candidates,
        )
    )
    sessions.items, sessions.item_bounds = items, item_bounds
    for r in np.flatnonzero(tied).tolist():  # ties straddle the cut: numpy's partition decides
        a, b = int(knn_bounds[r]), int(knn_bounds[r + 1])
        top = np.argpartition(-knn_sum[a:b], env.n_candidates - 1)[: env.n_candidates]
        keep[a:b] = False
        keep[a + top] = True
    if seen is None:  # a RequestBatch: the session's own items are the seen ones (or none)
        seen, seen_bounds = (items, item_bounds) if own_seen else (items[:0], item_bounds * 0)
    live = np.flatnonzero(has_vector)
    lists = np.zeros((n_req, 1), dtype=np.int64)
    index = env.ivf() if len(live) else None
    if index is not None:
        probed = index.probe(vectors[live], candidate_lists(env))
        lists = np.zeros((n_req, probed.shape[1]), dtype=np.int64)
        lists[live] = probed
    cand, bounds, knn_keys, knn_score, knn_best = ranker_candidates(
        has_vector,
        lists,
        index.offsets if index is not None else np.zeros(2, np.int64),
        index.items if index is not None else np.zeros(0, np.int64),
        knn_item,
        knn_sum,
        knn_bounds,
        keep,
        env.popular,
        env.n_candidates,
        seen,
        seen_bounds,
        n,
    )
    return BatchCandidates(
        req=np.repeat(np.arange(n_req, dtype=np.int64), np.diff(bounds)),
        item=cand,
        bounds=bounds,
        vectors=vectors,
        has_vector=has_vector,
        knn_keys=knn_keys,
        knn_score=knn_score,
        knn_best=knn_best,
        session=sessions,
        lists=lists if index is not None else None,
    )


def batch_features(
    ranker: OnlineRanker, batch: Sequence[Request], cands: BatchCandidates
) -> np.ndarray:
    """(rows, n_features): ``OnlineRanker.features`` for every row of ``cands``."""
    from rtml_cli.online.kernels import gather_columns

    env, cand = ranker.env, cands.item
    sessions = cands.session
    if sessions is None:
        raise ValueError("batch_features needs the candidates batch_candidates returns")
    n_rows = len(cand)
    streaming = "streaming" in ranker.families
    lag_us = ranker.lag_us
    if streaming and lag_us is None:
        raise ValueError("online-ranker reads streaming features but has no freshness lag")
    width = (3 if "batch" in ranker.families else 0) + (
        SESSION_COLUMNS if "realtime" in ranker.families else 0
    )
    if streaming:
        width += STREAMING_COLUMNS
    out = np.empty((n_rows, width), dtype=np.float32)
    col = 0
    if "batch" in ranker.families:
        gather_columns(ranker.batch, cand, out, 0)
        col = 3
    bounds = cands.bounds.astype(np.int64, copy=False)
    if "realtime" in ranker.families:
        from rtml_cli.online.kernels import category_match, ranker_session_features

        match = category_match(
            sessions.items,
            sessions.item_bounds,
            cand,
            bounds,
            env.item_category.astype(np.int64, copy=False),
            int(env.item_category.max()) + 1,
        )
        # one compiled pass, request by request: each row reads only its request's vector and
        # kNN keys, in an order fixed by the compiled code whatever the batch
        ranker_session_features(
            cand,
            bounds,
            cands.has_vector,
            cands.vectors,
            env.unit,
            cands.knn_keys,
            cands.knn_score,
            cands.knn_best,
            env.n_items,
            sessions.log_len,
            sessions.log_elapsed,
            match,
            out,
            col,
            *_probed(env, cands),
        )
        col += SESSION_COLUMNS
    if streaming and lag_us is not None:
        stream = batch[0].streams[lag_us]
        stream.features_into(sessions.times, bounds, cand, out, col)
    return out


def _probed(env: Env, cands: BatchCandidates) -> tuple[np.ndarray, ...]:
    """The probed IVF lists of ``cands`` and the index arrays ``ranker_session_features``
    reads them from (no lists: every cosine from ``env.unit``)."""
    if cands.lists is None:
        n_req, dim = len(cands.has_vector), env.unit.shape[1]
        none = np.zeros(0, np.int64)
        return np.zeros((n_req, 0), np.int64), none, none, np.zeros((0, dim), np.float32)
    index = env.ivf()
    return cands.lists, index.offsets, index.items, index.vectors


def session_block(sim, log_len, log_elapsed, knn_val, in_knn, match) -> np.ndarray:
    """The session family's columns, in FAMILIES' order (per-request and batched paths)."""
    return np.column_stack(
        [sim, sim * log_len, sim * log_elapsed, knn_val, in_knn, match, match * log_len]
    )


def streaming_block(counts: np.ndarray) -> np.ndarray:
    """The streaming family's columns from the window counts: logs and the 1h-vs-1d trend."""
    counts = counts.astype(np.float32)
    trend = np.log1p(counts[:, 0] * 12.0) - np.log1p(counts[:, 2])
    return np.column_stack([np.log1p(counts), trend])


def rank_batch(
    ranker: OnlineRanker, batch: Sequence[Request], cands: BatchCandidates, k: int
) -> list[np.ndarray]:
    """The ranker's top ``k`` for every request of ``batch`` (``OnlineRanker.recommend_batch``)."""
    from rtml_cli.online.kernels import top_k_rows

    features = batch_features(ranker, batch, cands).astype(np.float64)
    scores = np.einsum("ij,j->i", features, np.asarray(ranker.coef, dtype=np.float64))
    bounds = cands.bounds.astype(np.int64, copy=False)
    best, count, tied = top_k_rows(cands.item, scores, bounds, k)
    none = np.zeros(0, np.int64)
    out = list(best)
    # a request with fewer than k candidates, or ties across the k-th place, on its own
    for r in np.flatnonzero((count < k) | tied).tolist():
        request = batch[r]
        a, b = bounds[r], bounds[r + 1]
        if a == b:
            out[r] = ranker.env.fill([], request.seen_set, k)
            continue
        ranked = top_by_score(cands.item[a:b], scores[a:b], none, k)
        out[r] = ranker.env.fill(ranked.tolist(), request.seen_set, k)
    return out
