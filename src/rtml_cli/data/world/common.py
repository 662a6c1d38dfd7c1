"""What every part of the sample world shares: its sizes, the shop's behaviour rates
(ground truth, written to world.json), seeded random streams and Arrow column helpers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import numpy as np

_EVENTS = ("view", "cart", "purchase")
US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US


@dataclass(frozen=True)
class WorldSize:
    """How big a world is; every other rate is shared by all sizes."""

    days: int
    shift_day: float
    n_bundles: int
    n_items: int  # before the shift (new items come on top)
    sessions_per_day: int
    n_users: int  # registered users known before the history cutoff
    n_new_users: int  # users who first arrive after the cutoff
    n_bandit: int  # rows per bandit log
    n_click_users: int
    arms_per_bundle: int


SIZES: dict[str, WorldSize] = {
    # tiny: for tests (seconds), not a realistic shop
    "tiny": WorldSize(7, 5.0, 6, 300, 250, 300, 150, 3_000, 200, 5),
    "small": WorldSize(28, 20.0, 16, 1_850, 900, 4_000, 1_500, 20_000, 2_000, 4),
    "medium": WorldSize(42, 28.0, 26, 22_000, 8_200, 50_000, 20_000, 200_000, 10_000, 3),
    "large": WorldSize(35, 24.5, 26, 110_000, 51_000, 300_000, 120_000, 1_000_000, 20_000, 3),
}

START = datetime(2024, 3, 4, tzinfo=timezone.utc)  # a Monday

# Behaviour of the shop (ground truth, written to world.json).
P_ANONYMOUS = 0.32  # share of sessions without a user id
P_NEW_AFTER_CUTOFF = 0.28  # among identified sessions after the cutoff: new users
HISTORY_CUTOFF = 2.0 / 3.0  # a batch job's history ends here (share of the timeline)
P_INTENT_FAVOURITE = 0.52  # a known user's session follows their favourite bundle
P_INTENT_SECOND = 0.12  # ... or their second bundle; otherwise a globally popular one
P_TASTE_MOVES = 0.4  # share of users whose favourite bundle changes at the shift
MEAN_VIEWS = 5.2  # mean views per session
P_STEP_FORWARD, P_STEP_BACK = 0.34, 0.05  # walk through the bundle's categories
P_WANDER = 0.02  # a view outside the session's intent
P_CART = {"anonymous": 0.06, "new": 0.08, "returning": 0.10}  # per view
P_PURCHASE = 0.35  # per cart
NEW_ITEM_SHARE = 0.08  # items launched at the shift, relative to the old catalogue
RISING_BUNDLE_FACTOR = 4.0  # popularity multiplier of the bundles that rise at the shift
ZIPF_ITEM, ZIPF_BUNDLE = 1.1, 0.8
BURSTS_PER_DAY = 3.0
GAP_MEDIAN_S, GAP_MAX_S = 40.0, 20 * 60.0
HOURLY = np.array(
    [3, 2, 1.5, 1, 1, 1.5, 3, 5, 6, 6.5, 7, 7.5, 8, 7.5, 7, 7, 7.5, 8, 9, 10, 10, 9, 7, 5],
    dtype=float,
)


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream])


def _zipf(n: int, exponent: float) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1, dtype=float) ** exponent


def _iso(us: int) -> str:
    return (START + timedelta(microseconds=int(us))).isoformat().replace("+00:00", "Z")


def _ids(prefix: str, numbers: np.ndarray, width: int):
    """``prefix`` + zero-padded numbers as an Arrow string array (null where number < 0)."""
    import polars as pl

    s = pl.Series(numbers.astype(np.int64))
    out = pl.select(
        pl.when(s >= 0).then(pl.lit(prefix) + s.cast(pl.String).str.zfill(width)).otherwise(None)
    ).to_series()
    return out.to_arrow().cast("string")


def _labels(codes: np.ndarray, names: list[str]):
    """Arrow string array of ``names[code]`` (null where code < 0), without Python objects."""
    import pyarrow as pa

    codes = np.asarray(codes)
    mask = codes < 0
    arr = pa.DictionaryArray.from_arrays(
        pa.array(np.where(mask, 0, codes).astype(np.int32), mask=mask), pa.array(names)
    )
    return arr.cast(pa.string())


def _timestamps(us_since_start: np.ndarray):
    import pyarrow as pa

    absolute = int(START.timestamp() * US) + np.asarray(us_since_start, dtype=np.int64)
    return pa.array(absolute, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
