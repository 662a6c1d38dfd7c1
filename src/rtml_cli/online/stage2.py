"""Stage 2 strategies: session-based recommendations from the batch artifacts.

``session-embedding`` averages the session's item embeddings and asks the Annoy index for
the nearest items; ``session-itemknn`` sums the item-item neighbours of the session's
items. Their building blocks (``session_vector``, ``knn_scores``, ``top_by_score``) are
also the online ranker's candidate generators (``stage3``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import numpy as np

from rtml_cli.online.base import STRATEGIES, Env, Request, Strategy, take_unseen
from rtml_cli.online.replay import RequestBatch


def session_vector(env: Env, items: np.ndarray, decay: float | None) -> np.ndarray:
    """Mean (or position-decayed mean: the last item weighs 1, the one before ``decay``…).

    Returned unscaled (the sum): only its direction matters for cosine and Annoy's
    angular distance, and skipping the division saves time on every request."""
    vectors = env.embeddings[items]
    if decay is None or len(items) == 1:
        return vectors.sum(axis=0)
    weights = decay ** np.arange(len(items) - 1, -1, -1, dtype=np.float32)
    return weights @ vectors


class SessionEmbedding(Strategy):
    """Stage 2: session embedding = mean of item embeddings; nearest items from Annoy, or
    with ``env.ann == "ivf"`` from one IVF search per micro-batch (``online.ivf``)."""

    def __init__(self, env: Env, decay: float | None) -> None:
        self.env = env
        self.decay = decay
        self.name = "session-embedding"

    @property
    def batched(self) -> bool:
        return self.env.ann == "ivf"

    def prepare(self, env: Env) -> None:
        if env.ann == "ivf":
            env.ivf()  # built before serving: set-up time, not request latency

    def recommend(self, request: Request, k: int) -> np.ndarray:
        env = self.env
        if env.ann == "ivf":
            return self.recommend_batch([request], k)[0]
        seen = request.seen_set
        if not len(request.items):
            return env.fill([], seen, k)
        vector = session_vector(env, request.items, self.decay)
        found = env.index.get_nns_by_vector(vector.tolist(), k + len(seen), env.search_k)
        return env.fill(take_unseen(found, seen, k), seen, k)

    def recommend_batch(self, requests: Sequence[Request], k: int) -> list[np.ndarray]:
        """With the IVF searcher: the whole batch in one compiled call (session vectors,
        probes, exact top-k of the probed lists without the seen items: ``IVFIndex.serve``),
        reading a ``replay.RequestBatch``'s histories as arrays; else ``recommend`` each.
        Returns a (requests, k) array when every list is full."""
        env = self.env
        if env.ann != "ivf":
            return [self.recommend(request, k) for request in requests]
        if not len(requests):
            return []
        if isinstance(requests, RequestBatch):
            codes, starts, ends = requests.codes, requests.starts, requests.ends
            protocol = requests.protocol
        else:  # any sequence of requests: their (known) items, end to end
            lengths = np.fromiter((len(r.items) for r in requests), np.int64, len(requests))
            ends = np.cumsum(lengths)
            starts = ends - lengths
            codes = (
                np.concatenate([r.items for r in requests]) if ends[-1] else np.zeros(0, np.int64)
            )
            protocol = requests[0].protocol
        found = env.ivf().serve(
            codes,
            starts,
            ends,
            env.embeddings,
            k=k,
            nprobe=env.nprobe,
            decay=self.decay,
            exclude_seen=protocol == "next-unseen",
        )
        short = np.flatnonzero(found[:, -1] < 0) if k else np.zeros(0, np.int64)
        if not len(short):
            return found  # rows are the lists (a 2-d array iterates as them)
        out = list(found)
        for q in short.tolist():  # an empty history, or probed lists with < k unseen items
            row = found[q]
            mine = [] if row[0] == -2 else row[row >= 0].tolist()
            out[q] = env.fill(mine, requests[q].seen_set, k)
        return out


def knn_scores(env: Env, items: np.ndarray, max_items: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Session-kNN aggregation: sum of neighbour scores of the last ``max_items`` items,
    each weighted by recency (``decay`` per step back). Returns (items, scores), ascending ids."""
    recent = items[-max_items:]
    parts, scores = [], []
    n = len(recent)
    for pos, item in enumerate(recent.tolist()):
        lo, hi = env.indptr[item], env.indptr[item + 1]
        if hi > lo:
            parts.append(env.nbr[lo:hi])
            scores.append(env.nbr_score[lo:hi] * (env.decay ** (n - 1 - pos)))
    if not parts:
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    cand = np.concatenate(parts)
    score = np.concatenate(scores)
    uniq, inverse = np.unique(cand, return_inverse=True)
    return uniq, np.bincount(inverse, weights=score).astype(np.float32)


def unseen_mask(cand: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """True where ``cand`` is not in ``seen`` (ascending); a binary search, no hashing."""
    if not len(seen):
        return np.ones(len(cand), dtype=bool)
    pos = np.minimum(np.searchsorted(seen, cand), len(seen) - 1)
    return seen[pos] != cand


def top_by_score(cand: np.ndarray, score: np.ndarray, seen: np.ndarray, k: int) -> np.ndarray:
    """Best ``k`` unseen candidates by score; ties broken by item_idx (deterministic)."""
    if len(seen):
        keep = unseen_mask(cand, seen)
        cand, score = cand[keep], score[keep]
    if len(cand) > k:
        part = np.argpartition(-score, k - 1)[:k]
        cand, score = cand[part], score[part]
    order = np.lexsort((cand, -score))
    return cand[order]


class SessionItemKNN(Strategy):
    """Stage 2: candidates and scores from item-item neighbours of the session's items."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = "session-itemknn"

    def recommend(self, request: Request, k: int) -> np.ndarray:
        env = self.env
        seen = request.seen_set
        if not len(request.items):
            return env.fill([], seen, k)
        cand, score = knn_scores(env, request.items)
        ranked = top_by_score(cand, score, request.seen, k)
        return env.fill(ranked.tolist(), seen, k)


def _session_embedding(env: Env, lag: timedelta | None) -> Strategy:
    return SessionEmbedding(env, None)


def _session_embedding_decay(env: Env, lag: timedelta | None) -> Strategy:
    return SessionEmbedding(env, env.decay)


def _session_itemknn(env: Env, lag: timedelta | None) -> Strategy:
    return SessionItemKNN(env)


STRATEGIES.add(
    "session-embedding",
    _session_embedding,
    description="mean item embedding of the session, nearest items by Annoy (cosine)",
    stage=2,
    streaming=False,
    default=True,
)
STRATEGIES.add(
    "session-embedding-decay",
    _session_embedding_decay,
    description="position-decayed mean embedding (--decay), nearest items by Annoy",
    stage=2,
    streaming=False,
    default=False,
)
STRATEGIES.add(
    "session-itemknn",
    _session_itemknn,
    description="item-item neighbours of the session's items, recency-weighted sum",
    stage=2,
    streaming=False,
    default=True,
)
