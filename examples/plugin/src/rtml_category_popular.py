"""An rtml plug-in strategy: the most popular items of the categories the session viewed.

Importing this module registers ``category-popular``; rtml imports it through the
``rtml.strategies`` entry point (see pyproject.toml) or ``--strategy-module``.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from rtml_cli.online.plugins import Env, Request, Strategy, register_strategy


class CategoryPopular(Strategy):
    """The most popular items of the session's latest category, then of its earlier ones."""

    def __init__(self, env: Env, lag: timedelta | None = None) -> None:
        self.env = env
        # every category's items, most popular first (env.popular_list: all items by popularity)
        self.by_category: dict[int, list[int]] = {}
        for item in env.popular_list:
            self.by_category.setdefault(int(env.item_category[item]), []).append(item)

    def recommend(self, request: Request, k: int) -> np.ndarray:
        # request.seen_set: what the list must not hold (empty under the next-item protocol)
        chosen: list[int] = []
        taken = set(request.seen_set)
        for last in reversed(request.items.tolist()):  # the latest item's category first
            for item in self.by_category.get(int(self.env.item_category[last]), ()):
                if item not in taken:
                    chosen.append(item)
                    taken.add(item)
                    if len(chosen) == k:
                        return np.asarray(chosen, dtype=np.int64)
        return self.env.fill(chosen, request.seen_set, k)  # top up with overall popularity


register_strategy(
    "category-popular",
    CategoryPopular,
    description="the most popular items of the session's categories, latest first",
    stage=2,
)
