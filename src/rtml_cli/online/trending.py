"""The trending slice: requests whose next item was trending at that moment, from the log alone.

Streaming features are for trends a nightly batch job cannot know about, so their
value shows on the requests where the visitor went next to an item that was trending
right then. Real logs carry no ground truth of what was trending; this defines it from
the replayed stream, using only events strictly before each request (never the future):

    the request's truth item had at least ``min_views`` views in the last ``window``
    (30 min) and at least ``ratio`` (4) times its trailing rate — its views in the
    ``baseline`` (24 h) before that window, scaled to the window's length.

The slice is a subset of the requests; HR/MRR per strategy on it go into the summary
(``SimulationResult.trending``) next to the overall figures. ``world_bursts_mask`` is
the same slice from a sample world's ground truth (``world.json`` bursts).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError

WINDOW = timedelta(minutes=30)
BASELINE = timedelta(hours=24)
RATIO = 4.0
MIN_VIEWS = 3
US = 1_000_000
REACH_US = round((WINDOW + BASELINE).total_seconds() * US)  # history the definition needs


def definition() -> str:
    return (
        f"the next item had >= {MIN_VIEWS} views in the {WINDOW.total_seconds() / 60:g} min "
        f"before the request and >= {RATIO:g}x its rate over the {BASELINE.total_seconds() / 3600:g}"
        " h before that (events strictly before the request only)"
    )


def _counts_before(
    view_key: np.ndarray, item: np.ndarray, lo_us: np.ndarray, hi_us: np.ndarray, span: int
) -> np.ndarray:
    """Views of ``item[j]`` with ``lo_us[j] <= ts < hi_us[j]`` (keys: item * span + ts)."""
    lo = np.searchsorted(view_key, item * span + lo_us, side="left")
    hi = np.searchsorted(view_key, item * span + hi_us, side="left")
    return hi - lo


def trending_mask(
    stream_ts: np.ndarray,
    stream_item: np.ndarray,
    stream_kind: np.ndarray,
    req_ts: np.ndarray,
    truth_item: np.ndarray,
    n_items: int,
) -> np.ndarray:
    """Per request: was its truth item (item_idx; < 0 or >= n_items: none) trending then?"""
    out = np.zeros(len(req_ts), dtype=bool)
    known = (truth_item >= 0) & (truth_item < n_items)
    views = stream_kind == 0
    if not known.any() or not views.any():
        return out
    ts = stream_ts[views].astype(np.int64)
    item = stream_item[views].astype(np.int64)
    q_ts = req_ts[known].astype(np.int64)
    q_item = truth_item[known].astype(np.int64)
    window_us = round(WINDOW.total_seconds() * US)
    base_us = round(BASELINE.total_seconds() * US)
    t0 = int(min(ts.min(), q_ts.min())) - window_us - base_us
    resolution = 1
    span = int(max(ts.max(), q_ts.max())) - t0 + 1
    while n_items * (span // resolution + 1) >= 2**62:  # keep item * span + ts in int64
        resolution *= 1000
    span = span // resolution + 1
    key = np.sort(item * span + (ts - t0) // resolution)
    rel = (q_ts - t0) // resolution
    w, b = window_us // resolution, base_us // resolution
    recent = _counts_before(key, q_item, rel - w, rel, span)
    before = _counts_before(key, q_item, rel - w - b, rel - w, span)
    rate = before * (window_us / base_us)
    out[known] = (recent >= MIN_VIEWS) & (recent >= RATIO * rate)
    return out


def world_bursts_mask(
    world: dict[str, Any],
    to_idx: Callable[[list[Any]], np.ndarray],
    req_ts: np.ndarray,
    truth_item: np.ndarray,
) -> np.ndarray:
    """Requests whose truth is a ground-truth burst item during its burst (``world.json``)."""
    from rtml_cli.online.replay import to_us
    from rtml_cli.timeutil import parse_timestamp

    out = np.zeros(len(req_ts), dtype=bool)
    bursts = world.get("bursts") or []
    if not bursts:
        return out
    codes = to_idx([b["item_id"] for b in bursts])
    for code, burst in zip(np.asarray(codes).tolist(), bursts, strict=True):
        if code < 0:
            continue
        lo = to_us(parse_timestamp(burst["start"]))
        hi = to_us(parse_timestamp(burst["end"]))
        out |= (truth_item == code) & (req_ts >= lo) & (req_ts < hi)
    return out


def load_world(world: dict[str, Any] | str | os.PathLike[str]) -> dict[str, Any]:
    """A sample world's ground truth for the ``world_bursts`` slice.

    A loaded dict is taken as it is; a path (``world.json`` or its directory) is read
    with ``data.world.read_world`` and must hold the ``bursts`` list the slice needs
    (``DataError`` otherwise; a missing file is ``InputMissing``)."""
    if isinstance(world, dict):
        return world
    from rtml_cli.data.world import read_world

    path = Path(world)
    path = path / "world.json" if path.is_dir() else path
    doc = read_world(path)
    if not isinstance(doc.get("bursts"), list):
        raise DataError(f"{path} has no 'bursts' list: is it a sample world's world.json?")
    return doc
