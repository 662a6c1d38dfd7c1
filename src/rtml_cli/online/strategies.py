"""Serving strategies: one interface, registered by name.

A ``Strategy`` answers a ``Request`` (the session so far, the visitor, the time and
the published streaming state) with the item_idx of its top-K items, best first,
never an item already seen in the session. Each stage of the migration is one
strategy:

==================== ======= ==========================================================
name                 stage   what it serves
==================== ======= ==========================================================
popular              1       the precomputed popularity list
batch                1       the precomputed per-user list; strangers get ``popular``
session-embedding    2       mean of the session's item embeddings → Annoy → cosine
session-embedding-decay 2    the same with a position-decayed mean (recent items weigh more)
session-itemknn      2       item-item neighbours of the session's items, aggregated
online-ranker        3       logistic regression over batch + real-time + streaming
                             features, on the union of the two Stage-2 generators
online-ranker-no-F   3       ablation: the ranker without feature family F
                             (batch, realtime, streaming)
==================== ======= ==========================================================

Any strategy that reads streaming features takes a freshness suffix, e.g.
``online-ranker@5m``: it sees the stream as published 5 minutes before the request.
New strategies register with ``@register("name", description=...)``; the contract test
in ``tests/test_online_strategies.py`` runs every registered one through the same checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rtml_cli.errors import UsageError


class Request:
    """What a strategy may know when a request arrives (and nothing else).

    ``items``: item_idx of the session's earlier events with known items, in order;
    ``seen_set`` / ``seen`` (ascending array, built on first use): the distinct ones, never
    recommended again; ``n_events``: earlier events including unknown items; ``streams``:
    lag µs → ``WindowedCounts`` as published; ``cache``: work strategies may share.
    """

    __slots__ = (
        "ts",
        "session_start",
        "user_id",
        "segment",
        "items",
        "seen_set",
        "n_events",
        "streams",
        "cache",
        "_seen",
    )

    def __init__(
        self,
        ts: int,
        session_start: int,
        user_id: Any,
        segment: int,
        items: np.ndarray,
        *,
        n_events: int,
        seen_set: set[int] | None = None,
        seen: np.ndarray | None = None,
        streams: dict[int, Any] | None = None,
        cache: dict[str, Any] | None = None,
    ) -> None:
        self.ts = ts  # request time, µs since the epoch
        self.session_start = session_start  # µs
        self.user_id = user_id  # None for anonymous visitors
        self.segment = segment  # index into replay.SEGMENTS
        self.items = items
        self.seen_set = set(items.tolist()) if seen_set is None else seen_set
        self.n_events = n_events
        self.streams = {} if streams is None else streams
        self.cache = {} if cache is None else cache
        self._seen = seen

    @property
    def seen(self) -> np.ndarray:
        if self._seen is None:
            self._seen = np.array(sorted(self.seen_set), dtype=np.int64)
        return self._seen


@runtime_checkable
class Strategy(Protocol):
    name: str
    lag: timedelta | None  # the freshness of the streaming features it reads; None: none
    # ns of shared work (e.g. candidates) another strategy computed for this request and this
    # one reused; the engine adds it to this strategy's latency and resets it to 0
    borrowed_ns: int

    def recommend(self, request: Request, k: int) -> np.ndarray:
        """The top ``k`` item_idx, distinct, best first, excluding ``request.seen``."""
        ...


@dataclass
class Env:
    """What strategies are built from: the batch artifacts and the replay settings."""

    artifacts: Any
    n_candidates: int = 500
    decay: float = 0.7
    search_k: int = -1
    freshness: timedelta = timedelta(seconds=60)
    seed: int = 0
    fit_ranker: Callable[..., Any] | None = None  # set by the engine: trains online-ranker

    def __post_init__(self) -> None:
        art = self.artifacts
        self.n_items = art.n_items
        self.embeddings = np.ascontiguousarray(art.embeddings, dtype=np.float32)
        norms = np.linalg.norm(self.embeddings, axis=1, keepdims=True)
        self.unit = self.embeddings / np.maximum(norms, 1e-12)
        popular = art.popular_idx
        popular = popular[popular >= 0]
        # the popularity list covers every item so fills never run dry
        rest = np.setdiff1d(np.arange(self.n_items), popular, assume_unique=False)
        self.popular = np.concatenate([popular, rest]).astype(np.int64)
        self.popular_list = self.popular.tolist()
        self.indptr, self.nbr, self.nbr_score = art.neighbor_lists
        self.index = art.index
        self.item_category = _item_categories(art)

    def fill(self, chosen: list[int], seen: set[int], k: int) -> np.ndarray:
        """Top up ``chosen`` to ``k`` items from the popularity list (no seen, no repeats)."""
        if len(chosen) < k:
            taken = seen.union(chosen)
            for item in self.popular_list:
                if item not in taken:
                    chosen.append(item)
                    taken.add(item)
                    if len(chosen) == k:
                        break
        return np.asarray(chosen[:k], dtype=np.int64)


def _item_categories(art) -> np.ndarray:
    """Dense category code per item_idx (-1 unknown), from item_features."""
    import polars as pl

    feats = art.item_features
    if "category" not in feats.columns:
        return np.full(art.n_items, -1, dtype=np.int64)
    frame = feats.select(
        pl.Series("_idx", art.to_idx(feats["item_id"].to_list())),
        pl.col("category").cast(pl.String).rank("dense").cast(pl.Int64).fill_null(0) - 1,
    ).filter(pl.col("_idx") >= 0)
    out = np.full(art.n_items, -1, dtype=np.int64)
    out[frame["_idx"].to_numpy()] = frame["category"].to_numpy()
    return out


def take_unseen(ranked, seen: set[int], k: int) -> list[int]:
    """The first ``k`` items of ``ranked`` not in ``seen`` (order kept; ``ranked`` distinct)."""
    return [item for item in ranked if item not in seen][:k]


# --------------------------------------------------------------------------- registry

Factory = Callable[[Env, "timedelta | None"], Strategy]


@dataclass(frozen=True)
class Registered:
    name: str
    factory: Factory
    description: str
    stage: int
    streaming: bool  # takes an @freshness suffix


REGISTRY: dict[str, Registered] = {}


def register(name: str, *, description: str, stage: int, streaming: bool = False):
    """Class/function decorator adding a strategy factory ``(env, lag) -> Strategy``."""

    def wrap(factory: Factory) -> Factory:
        REGISTRY[name] = Registered(name, factory, description, stage, streaming)
        return factory

    return wrap


def parse_name(spec: str) -> tuple[str, timedelta | None]:
    """``online-ranker@5m`` → (``online-ranker``, 5 minutes); unknown names → UsageError."""
    from rtml_cli.timeutil import parse_duration

    base, _, lag_text = spec.strip().partition("@")
    if base not in REGISTRY:
        raise UsageError(f"unknown strategy {base!r}: choose from {', '.join(sorted(REGISTRY))}")
    if lag_text and not REGISTRY[base].streaming:
        raise UsageError(f"strategy {base!r} reads no streaming features: drop '@{lag_text}'")
    return base, parse_duration(lag_text) if lag_text else None


def build(spec: str, env: Env) -> Strategy:
    """Build the strategy named ``spec`` (with an optional ``@freshness``)."""
    base, lag = parse_name(spec)
    entry = REGISTRY[base]
    strategy = entry.factory(
        env, lag if lag is not None else env.freshness if entry.streaming else None
    )
    strategy.name = spec.strip()
    return strategy


# --------------------------------------------------------------------------- Stage 1


class Popular:
    """What a batch system shows a stranger: the precomputed popularity list."""

    lag = None
    borrowed_ns = 0

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = "popular"

    def recommend(self, request: Request, k: int) -> np.ndarray:
        return self.env.fill([], request.seen_set, k)


class Batch:
    """Stage 1: the user's precomputed list; anonymous and unknown visitors get ``popular``."""

    lag = None
    borrowed_ns = 0

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = "batch"
        self.lists = {u: v.tolist() for u, v in env.artifacts.user_recs.items()}

    def recommend(self, request: Request, k: int) -> np.ndarray:
        seen = request.seen_set
        ranked = self.lists.get(request.user_id) if request.user_id is not None else None
        chosen = take_unseen((i for i in ranked if i >= 0), seen, k) if ranked else []
        return self.env.fill(chosen, seen, k)


register("popular", description="the precomputed popularity list", stage=1)(
    lambda env, lag: Popular(env)
)
register("batch", description="precomputed per-user lists; strangers get popular", stage=1)(
    lambda env, lag: Batch(env)
)


# --------------------------------------------------------------------------- Stage 2


def session_vector(env: Env, items: np.ndarray, decay: float | None) -> np.ndarray:
    """Mean (or position-decayed mean: the last item weighs 1, the one before ``decay``…).

    Returned unscaled (the sum): only its direction matters for cosine and Annoy's
    angular distance, and skipping the division saves time on every request."""
    vectors = env.embeddings[items]
    if decay is None or len(items) == 1:
        return vectors.sum(axis=0)
    weights = decay ** np.arange(len(items) - 1, -1, -1, dtype=np.float32)
    return weights @ vectors


class SessionEmbedding:
    """Stage 2: session embedding = mean of item embeddings; nearest items from Annoy."""

    lag = None
    borrowed_ns = 0

    def __init__(self, env: Env, decay: float | None) -> None:
        self.env = env
        self.decay = decay
        self.name = "session-embedding"

    def recommend(self, request: Request, k: int) -> np.ndarray:
        env = self.env
        seen = request.seen_set
        if not len(request.items):
            return env.fill([], seen, k)
        vector = session_vector(env, request.items, self.decay)
        found = env.index.get_nns_by_vector(vector.tolist(), k + len(seen), env.search_k)
        return env.fill(take_unseen(found, seen, k), seen, k)


register(
    "session-embedding",
    description="mean item embedding of the session, nearest items by Annoy (cosine)",
    stage=2,
)(lambda env, lag: SessionEmbedding(env, None))
register(
    "session-embedding-decay",
    description="position-decayed mean embedding (--decay), nearest items by Annoy",
    stage=2,
)(lambda env, lag: SessionEmbedding(env, env.decay))


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


class SessionItemKNN:
    """Stage 2: candidates and scores from item-item neighbours of the session's items."""

    lag = None
    borrowed_ns = 0

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


register(
    "session-itemknn",
    description="item-item neighbours of the session's items, recency-weighted sum",
    stage=2,
)(lambda env, lag: SessionItemKNN(env))


# --------------------------------------------------------------------------- Stage 3


def _ranker_factory(families: tuple[str, ...]):
    def factory(env: Env, lag: timedelta | None) -> Strategy:
        from rtml_cli.online.ranker import OnlineRanker

        return OnlineRanker(env, families=families, lag=lag)

    return factory


_FAMILIES = ("batch", "realtime", "streaming")
register(
    "online-ranker",
    description="logistic regression over batch, real-time and streaming features",
    stage=3,
    streaming=True,
)(_ranker_factory(_FAMILIES))
for _family in _FAMILIES:
    register(
        f"online-ranker-no-{_family}",
        description=f"ablation: online-ranker without {_family} features",
        stage=3,
        streaming=_family != "streaming",
    )(_ranker_factory(tuple(f for f in _FAMILIES if f != _family)))

DEFAULT_STRATEGIES = ("popular", "batch", "session-embedding", "session-itemknn", "online-ranker")
