"""The strategy interface: what a strategy is built from, asked, and must answer.

A ``Strategy`` is built from an ``Env`` (the batch artifacts and the replay settings),
prepared once (``prepare``: e.g. the online ranker trains on requests replayed before
the as-of) and then answers each ``Request`` (the session so far, the visitor, the time
and the published streaming state) with the item_idx of its top-K items, best first,
never an item already seen in the session.

Implementations live by stage (``stage1``: popular, batch; ``stage2``: session
embedding, session-kNN; ``stage3``: the online ranker and its variants) and register a
factory ``(env, lag) -> Strategy`` in :data:`STRATEGIES`; ``strategies`` builds them by
name and ``rtml_cli.checks.strategies`` runs every one through the same contract.
"""

from __future__ import annotations

import functools
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np

from rtml_cli.online.ivf import DEFAULT_NPROBE
from rtml_cli.registry import Registry

#: The replay protocols (docs/replay-protocol.md). ``next-unseen``: lists never contain an
#: item the session has seen, and the truth is the first later unseen item. ``next-item``
#: (the protocol of published session-based benchmarks): the truth is the next event's
#: item, re-views included, and lists may contain seen items.
PROTOCOLS = ("next-unseen", "next-item")
DEFAULT_PROTOCOL = "next-unseen"


class Request:
    """What a strategy may know when a request arrives (and nothing else).

    ``items``: item_idx of the session's earlier events with known items, in order;
    ``seen_set`` / ``seen`` (ascending array, built on first use): the items the list must
    not contain — the distinct ``items`` under the ``next-unseen`` protocol, none under
    ``next-item``; ``protocol``: which of :data:`PROTOCOLS` the replay runs (a strategy that
    re-ranks the session's own items, a "remind" step, does so only under ``next-item``);
    ``n_events``: earlier events including unknown items; ``streams``: lag µs →
    ``WindowedCounts`` as published; ``cache``: work strategies may share.
    """

    __slots__ = (
        "ts",
        "session_start",
        "user_id",
        "segment",
        "items",
        "seen_set",
        "protocol",
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
        protocol: str = DEFAULT_PROTOCOL,
    ) -> None:
        self.ts = ts  # request time, µs since the epoch
        self.session_start = session_start  # µs
        self.user_id = user_id  # None for anonymous visitors
        self.segment = segment  # index into replay.SEGMENTS
        self.items = items
        self.protocol = protocol
        if seen_set is None:
            seen_set = set(items.tolist()) if protocol == "next-unseen" else set()
        self.seen_set = seen_set
        self.n_events = n_events
        self.streams = {} if streams is None else streams
        self.cache = {} if cache is None else cache
        self._seen = seen

    @property
    def seen(self) -> np.ndarray:
        if self._seen is None:
            self._seen = np.array(sorted(self.seen_set), dtype=np.int64)
        return self._seen


@dataclass(eq=False)  # holds arrays and an index: compared by identity
class Env:
    """What strategies are built from: the batch artifacts and the replay settings.

    The fields after ``max_train_requests`` are derived from the artifacts once, in
    ``__post_init__``, and shared by every strategy of a run.
    """

    artifacts: Any  # batch.artifacts.Artifacts
    n_candidates: int = 500
    decay: float = 0.7
    search_k: int = -1
    freshness: timedelta = timedelta(seconds=60)
    seed: int = 0
    # the requests replayed before the as-of that strategies may learn from: a function,
    # called on first use (replaying the window costs time), returning a
    # ``replay.ReplayData`` or None (no usable window); None: nothing to learn from
    training: Callable[[], Any] | None = None
    max_train_requests: int = 4000  # at most this many training requests, sampled by ``seed``
    protocol: str = DEFAULT_PROTOCOL  # the replay protocol: strategies that learn train under it
    baseline_recs: Any = None  # the team's own lists (path) for the ``baseline`` strategy
    # the nearest-neighbour search the replay serves session-embedding from: the published
    # Annoy index ("annoy"), or an in-memory IVF over the same embeddings ("ivf": one
    # vectorised search per micro-batch, ``online.ivf``) probing ``nprobe`` lists
    ann: str = "annoy"
    nprobe: int = DEFAULT_NPROBE

    n_items: int = field(init=False)
    embeddings: np.ndarray = field(init=False)  # float32 (n_items, dim)
    unit: np.ndarray = field(init=False)  # the embeddings scaled to unit length
    popular: np.ndarray = field(init=False)  # every item_idx, most popular first
    popular_list: list[int] = field(init=False)
    index: Any = field(init=False)  # the Annoy index over the embeddings
    # set-up work strategies of one run share (e.g. the ranker variants' feature matrix)
    cache: dict[str, Any] = field(init=False, default_factory=dict)

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
        self.index = art.index

    # read on first use: a replay of session-embedding alone needs neither
    @functools.cached_property
    def indptr(self) -> np.ndarray:
        """Item-item neighbours, CSR by item_idx: row offsets (with ``nbr``, ``nbr_score``)."""
        return self.artifacts.neighbor_lists[0]

    @functools.cached_property
    def nbr(self) -> np.ndarray:
        return self.artifacts.neighbor_lists[1]

    @functools.cached_property
    def nbr_score(self) -> np.ndarray:
        return self.artifacts.neighbor_lists[2]

    @functools.cached_property
    def item_category(self) -> np.ndarray:
        """Dense category code per item_idx, -1 unknown."""
        return _item_categories(self.artifacts)

    def ivf(self) -> Any:
        """The IVF searcher over ``unit`` (``online.ivf.IVFIndex``), built on first use, seeded
        by ``seed``, and shared by every strategy of the run."""
        if "ivf" not in self.cache:
            from rtml_cli.online.ivf import IVFIndex

            self.cache["ivf"] = IVFIndex.cached(self.unit, seed=self.seed)
        return self.cache["ivf"]

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


def _item_categories(art: Any) -> np.ndarray:
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


class Strategy(ABC):
    """A serving strategy: built from an ``Env``, prepared once, then asked per request.

    ``name`` is the name it was built under (``online-ranker@5m``); ``lag`` the freshness
    of the streaming features it reads (None: it reads none); ``borrowed_ns`` the ns of
    shared work (e.g. candidates) another strategy computed for this request and this one
    reused — the engine adds it to this strategy's latency and resets it to 0.
    """

    name: str = ""
    lag: timedelta | None = None
    borrowed_ns: int = 0

    def prepare(self, env: Env) -> None:  # noqa: B027 (a hook: most strategies need nothing)
        """Set-up before serving (e.g. training on ``env.training``); called once by ``build``."""

    @abstractmethod
    def recommend(self, request: Request, k: int) -> np.ndarray:
        """The top ``k`` item_idx, distinct, best first, excluding ``request.seen`` (empty
        under the ``next-item`` protocol)."""

    def recommend_batch(self, requests: Sequence[Request], k: int) -> list[np.ndarray]:
        """``recommend`` for a micro-batch of consecutive requests (time order), one list each.

        A strategy overrides this to share work across the batch (one search, one model
        call); each answer must equal ``recommend(request, k)``. The engine calls it with the
        streams published as of the batch's *first* request: a request's own streaming state
        is ``WindowedCounts.features_at(request.ts, items)``."""
        return [self.recommend(request, k) for request in requests]

    @property
    def batched(self) -> bool:
        """Whether this strategy serves micro-batches itself (overrides ``recommend_batch``)."""
        return type(self).recommend_batch is not Strategy.recommend_batch

    def report(self) -> dict[str, Any] | None:
        """What a run's ``info`` says about this strategy (e.g. a model's weights), if anything."""
        return None


Factory = Callable[[Env, "timedelta | None"], Strategy]

#: Every strategy by name: a factory ``(env, lag) -> Strategy`` with ``meta`` ``stage``
#: (1-3), ``streaming`` (takes an ``@freshness`` suffix) and ``default`` (served when
#: ``--strategies`` is not given). Populated by the stage modules; import
#: ``rtml_cli.online.strategies`` to have them all registered.
STRATEGIES: Registry[Factory] = Registry("strategy")


def take_unseen(ranked: Any, seen: set[int], k: int) -> list[int]:
    """The first ``k`` items of ``ranked`` not in ``seen`` (order kept; ``ranked`` distinct)."""
    return [item for item in ranked if item not in seen][:k]
