"""Stage 1 strategies: what a batch system serves (the precomputed lists)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import numpy as np

from rtml_cli.online.base import STRATEGIES, Env, Request, Strategy, take_unseen


class Popular(Strategy):
    """What a batch system shows a stranger: the precomputed popularity list."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = "popular"

    def recommend(self, request: Request, k: int) -> np.ndarray:
        return self.env.fill([], request.seen_set, k)


class Batch(Strategy):
    """Stage 1: the user's precomputed list; anonymous and unknown visitors get ``popular``."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.name = "batch"
        # every list in one array (known items only, best first): user → its row's bounds
        self.rows, self.indptr, self.items = _user_lists(env.artifacts)

    def recommend(self, request: Request, k: int) -> np.ndarray:
        seen = request.seen_set
        row = self.rows.get(request.user_id) if request.user_id is not None else None
        chosen: list[int] = []
        if row is not None:
            ranked = self.items[self.indptr[row] : self.indptr[row + 1]].tolist()
            chosen = take_unseen(ranked, seen, k)
        return self.env.fill(chosen, seen, k)


def _user_lists(art: Any) -> tuple[dict[Any, int], np.ndarray, np.ndarray]:
    """The Stage-1 lists as CSR arrays: user_id → row, row bounds, item_idx best first
    (items the artifacts do not index left out); one join, not a lookup per item."""
    frame = art.batch_recs.sort(["user_id", "rank"])
    if frame.height == 0:
        return {}, np.zeros(1, np.int64), np.zeros(0, np.int32)
    items = art.idx_of(frame["item_id"])
    group = frame["user_id"].rle_id().to_numpy()
    known = items >= 0
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    users = frame["user_id"].gather(starts).to_list()
    counts = np.bincount(group[known], minlength=len(starts))
    indptr = np.r_[0, np.cumsum(counts)].astype(np.int64)
    return {user: row for row, user in enumerate(users)}, indptr, items[known].astype(np.int32)


def _popular(env: Env, lag: timedelta | None) -> Strategy:
    return Popular(env)


def _batch(env: Env, lag: timedelta | None) -> Strategy:
    return Batch(env)


STRATEGIES.add(
    "popular",
    _popular,
    description="the precomputed popularity list",
    stage=1,
    streaming=False,
    default=True,
)
STRATEGIES.add(
    "batch",
    _batch,
    description="precomputed per-user lists; strangers get popular",
    stage=1,
    streaming=False,
    default=True,
)
