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
from rtml_cli.online.stage2 import session_vector, top_by_score, unseen_mask

if TYPE_CHECKING:
    from rtml_cli.online.stage3 import OnlineRanker

SESSION_COLUMNS = 7  # the session (realtime) family's columns: ``session_block``
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


def knn_batch(env: Env, batch: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
    """``stage2.knn_scores`` of every request at once, top ``env.n_candidates`` per request:
    (request * n_items + item ascending, score float32)."""
    n = env.n_items
    owners, items, weights = [], [], []
    for r, request in enumerate(batch):
        recent = request.items[-KNN_RECENT:]
        if len(recent):
            owners.append(np.full(len(recent), r, np.int64))
            items.append(recent)
            steps = np.arange(len(recent) - 1, -1, -1)
            weights.append(np.array([env.decay**s for s in steps.tolist()], dtype=np.float32))
    if not owners:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    owner, item, weight = np.concatenate(owners), np.concatenate(items), np.concatenate(weights)
    lo, hi = env.indptr[item], env.indptr[item + 1]
    sizes = hi - lo
    ends = np.cumsum(sizes)
    at = np.repeat(lo - (ends - sizes), sizes) + np.arange(int(ends[-1]) if len(ends) else 0)
    keys = np.repeat(owner, sizes) * n + env.nbr[at]
    score = env.nbr_score[at] * np.repeat(weight, sizes)
    uniq, inverse = np.unique(keys, return_inverse=True)
    summed = np.bincount(inverse, weights=score).astype(np.float32)
    # at most n_candidates per request, as the per-request generator keeps
    req = uniq // n
    bounds = np.searchsorted(req, np.arange(len(batch) + 1))
    keep = np.ones(len(uniq), dtype=bool)
    for r in np.flatnonzero(np.diff(bounds) > env.n_candidates).tolist():
        a, b = int(bounds[r]), int(bounds[r + 1])
        top = np.argpartition(-summed[a:b], env.n_candidates - 1)[: env.n_candidates]
        keep[a:b] = False
        keep[a + top] = True
    return uniq[keep], summed[keep]


def batch_candidates(env: Env, batch: Sequence[Request]) -> BatchCandidates:
    """Candidates of every request of ``batch``: IVF lists ∪ kNN items, unseen, ascending;
    the popularity list for a session without a known item (as ``OnlineRanker._generate``)."""
    from rtml_cli.online.kernels import unique_keys_by_request

    n, n_req = env.n_items, len(batch)
    vectors = np.zeros((n_req, env.embeddings.shape[1]), dtype=np.float32)
    has_vector = np.array([len(r.items) > 0 for r in batch], dtype=bool)
    parts = []
    live = np.flatnonzero(has_vector)
    if len(live):
        vectors[live] = np.stack([session_vector(env, batch[r].items, None) for r in live.tolist()])
        index = env.ivf()
        lists = index.probe(vectors[live], candidate_lists(env))
        sizes = index.sizes[lists].sum(axis=1)
        members = index.members(lists.ravel())
        parts.append(np.repeat(live, sizes) * n + members)
    knn_keys, knn_score = knn_batch(env, batch)
    parts.append(knn_keys)
    for r in np.flatnonzero(~has_vector).tolist():
        seen = batch[r].seen
        pool = env.popular[: env.n_candidates + len(seen)]
        parts.append(r * n + pool[unseen_mask(pool, seen)][: env.n_candidates])
    seen_keys = np.concatenate(
        [r * n + request.seen for r, request in enumerate(batch)] + [np.zeros(0, np.int64)]
    )
    keys = unique_keys_by_request(
        np.concatenate(parts).astype(np.int64, copy=False), np.sort(seen_keys), n, n_req
    )
    req = keys // n
    knn_req = knn_keys // n
    knn_best = np.zeros(n_req, dtype=np.float32)
    if len(knn_keys):
        np.maximum.at(knn_best, knn_req, knn_score)
    return BatchCandidates(
        req=req,
        item=keys - req * n,
        bounds=np.searchsorted(req, np.arange(n_req + 1)),
        vectors=vectors,
        has_vector=has_vector,
        knn_keys=knn_keys,
        knn_score=knn_score,
        knn_best=knn_best,
    )


def batch_features(
    ranker: OnlineRanker, batch: Sequence[Request], cands: BatchCandidates
) -> np.ndarray:
    """(rows, n_features): ``OnlineRanker.features`` for every row of ``cands``."""
    env, req, cand = ranker.env, cands.req, cands.item
    n_rows = len(cand)
    stream_counts = None
    if "streaming" in ranker.families:
        if ranker.lag_us is None:
            raise ValueError("online-ranker reads streaming features but has no freshness lag")
        stream = batch[0].streams[ranker.lag_us]
        times = np.array([r.ts for r in batch], dtype=np.int64)
        stream_counts = stream.features_many(times, req, cand)
    width = (3 if "batch" in ranker.families else 0) + (
        SESSION_COLUMNS if "realtime" in ranker.families else 0
    )
    if stream_counts is not None:
        width += stream_counts.shape[1] + 1
    out = np.empty((n_rows, width), dtype=np.float32)
    col = 0
    if "batch" in ranker.families:
        out[:, :3] = ranker.batch[cand]
        col = 3
    if "realtime" in ranker.families:
        from rtml_cli.online.kernels import ranker_session_features

        log_len = np.array([math.log1p(r.n_events) for r in batch], dtype=np.float64)
        log_elapsed = np.array(
            [math.log1p(max(r.ts - r.session_start, 0) / 60e6) for r in batch], dtype=np.float64
        )
        # one compiled pass, request by request: each row reads only its request's vector and
        # kNN keys, in an order fixed by the compiled code whatever the batch
        ranker_session_features(
            cand,
            cands.bounds.astype(np.int64, copy=False),
            cands.has_vector,
            cands.vectors,
            env.unit,
            cands.knn_keys,
            cands.knn_score,
            cands.knn_best,
            env.n_items,
            log_len,
            log_elapsed,
            np.asarray(_category_match(env, batch, req, cand), dtype=np.float64),
            out,
            col,
        )
        col += SESSION_COLUMNS
    if stream_counts is not None:
        out[:, col:] = streaming_block(stream_counts)
    return out


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


def _category_match(
    env: Env, batch: Sequence[Request], req: np.ndarray, cand: np.ndarray
) -> np.ndarray:
    """Share of each row's request's session items in the candidate's category (0 unknown);
    rows grouped by request (``req`` non-decreasing), one compiled pass."""
    from rtml_cli.online.kernels import category_match

    lengths = np.array([len(r.items) for r in batch], dtype=np.int64)
    items = np.concatenate([r.items for r in batch] + [np.zeros(0, np.int64)])
    return category_match(
        items.astype(np.int64, copy=False),
        np.r_[0, np.cumsum(lengths)].astype(np.int64),
        np.asarray(cand, dtype=np.int64),
        np.searchsorted(req, np.arange(len(batch) + 1)).astype(np.int64),
        env.item_category.astype(np.int64, copy=False),
        int(env.item_category.max()) + 1,
    )


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
    out = []
    for r, request in enumerate(batch):
        if count[r] == k and not tied[r]:
            out.append(best[r])
            continue
        a, b = bounds[r], bounds[r + 1]
        if a == b:
            out.append(ranker.env.fill([], request.seen_set, k))
            continue
        ranked = top_by_score(cands.item[a:b], scores[a:b], none, k)
        out.append(ranker.env.fill(ranked.tolist(), request.seen_set, k))
    return out
