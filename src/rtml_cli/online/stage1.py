"""Stage 1 strategies: what a batch system serves (the precomputed lists)."""

from __future__ import annotations

from datetime import timedelta

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
        self.lists = {u: v.tolist() for u, v in env.artifacts.user_recs.items()}

    def recommend(self, request: Request, k: int) -> np.ndarray:
        seen = request.seen_set
        ranked = self.lists.get(request.user_id) if request.user_id is not None else None
        chosen = take_unseen((i for i in ranked if i >= 0), seen, k) if ranked else []
        return self.env.fill(chosen, seen, k)


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
