"""Users: long-term tastes over bundles (before and after the shift) and how active they are."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rtml_cli.data.world.catalogue import _Catalogue
from rtml_cli.data.world.common import P_TASTE_MOVES, WorldSize, _rng


@dataclass
class _Users:
    fav_before: np.ndarray
    sec_before: np.ndarray
    fav_after: np.ndarray
    sec_after: np.ndarray
    activity_old: np.ndarray  # sampling weights of the registered users (cumulative)
    activity_new: np.ndarray


def _build_users(cfg: WorldSize, cat: _Catalogue, seed: int) -> _Users:
    rng = _rng(seed, 2)
    n = cfg.n_users + cfg.n_new_users
    nb = cfg.n_bundles
    fav = rng.choice(nb, size=n, p=cat.bundle_pop_before)
    sec = (fav + rng.integers(1, nb, size=n)) % nb
    moves = rng.random(n) < P_TASTE_MOVES
    new_fav = rng.choice(nb, size=n, p=cat.bundle_pop_after)
    fav_after = np.where(moves, new_fav, fav)
    sec_after = np.where(moves & (new_fav != fav), fav, sec)
    sec_after = np.where(sec_after == fav_after, (fav_after + 1) % nb, sec_after)
    activity = rng.lognormal(0.0, 1.0, size=n)
    act_old = np.cumsum(activity[: cfg.n_users])
    act_new = np.cumsum(activity[cfg.n_users :])
    return _Users(fav, sec, fav_after, sec_after, act_old / act_old[-1], act_new / act_new[-1])
