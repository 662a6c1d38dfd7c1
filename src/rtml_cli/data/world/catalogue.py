"""The catalogue: categories grouped into intent bundles, items with Zipf popularity,
the items launched at the shift, trending bursts, and ``items.parquet``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml_cli.data.world.common import (
    BURSTS_PER_DAY,
    DAY_US,
    NEW_ITEM_SHARE,
    RISING_BUNDLE_FACTOR,
    US,
    ZIPF_BUNDLE,
    ZIPF_ITEM,
    WorldSize,
    _labels,
    _rng,
    _timestamps,
    _zipf,
)

# Intent bundles: ordered category sequences a shopping intent moves through.
BUNDLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("home office", ("keyboards", "monitors", "hdmi cables", "monitor stands")),
    ("coffee corner", ("coffee beans", "coffee grinders", "espresso machines", "milk frothers")),
    ("running", ("running shoes", "running socks", "sports watches", "water bottles")),
    ("camping", ("tents", "sleeping bags", "camping stoves", "headlamps")),
    ("photography", ("cameras", "camera lenses", "memory cards", "tripods", "camera bags")),
    ("baby", ("strollers", "car seats", "baby carriers", "diaper bags")),
    ("gaming", ("gaming mice", "mouse pads", "gaming headsets", "game controllers")),
    ("home cinema", ("televisions", "soundbars", "tv wall mounts", "streaming sticks")),
    ("baking", ("stand mixers", "baking pans", "cooling racks", "piping bags")),
    ("gardening", ("garden hoses", "hose nozzles", "garden gloves", "pruning shears")),
    ("yoga", ("yoga mats", "yoga blocks", "yoga straps", "foam rollers")),
    ("cycling", ("bicycles", "bike helmets", "bike lights", "bike locks")),
    ("painting", ("wall paints", "paint rollers", "painter's tapes", "drop cloths")),
    ("dog care", ("dog foods", "dog bowls", "dog leashes", "dog beds")),
    ("smartphone", ("smartphones", "phone cases", "screen protectors", "phone chargers")),
    ("vinyl", ("turntables", "vinyl records", "speakers", "speaker cables")),
    ("skincare", ("cleansers", "moisturizers", "sunscreens", "face masks")),
    ("back to school", ("backpacks", "notebooks", "pens", "pencil cases")),
    ("tea time", ("loose-leaf teas", "teapots", "tea cups", "kettles")),
    ("fishing", ("fishing rods", "fishing reels", "fishing lines", "tackle boxes")),
    ("sleep", ("mattresses", "pillows", "bed sheets", "duvets")),
    ("cleaning", ("vacuum cleaners", "vacuum bags", "mops", "cleaning sprays")),
    ("barbecue", ("grills", "charcoal bags", "grill tools", "meat thermometers")),
    ("home network", ("wifi routers", "ethernet cables", "network switches", "wifi extenders")),
    ("travel", ("suitcases", "travel adapters", "neck pillows", "packing cubes")),
    ("guitar", ("guitars", "guitar strings", "guitar tuners", "guitar amps")),
)
_BRANDS = (
    "Norda", "Valo", "Kestrel", "Orbit", "Lumen", "Tideway", "Brisk", "Cobalt",
    "Fjell", "Maple", "Quill", "Rook", "Sable", "Tern", "Umber", "Vesta",
)  # fmt: skip


def _singular(name: str) -> str:
    if name.endswith("lenses"):
        return name[:-2]
    if name.endswith(("sses", "shes", "ches", "xes")):
        return name[:-2]
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


@dataclass
class _Catalogue:
    bundle_names: list[str]
    bundle_cats: list[list[int]]  # category ids per bundle, in intent order
    cat_names: list[str]
    cat_bundle: np.ndarray  # (n_cats,) bundle id
    cat_pos: np.ndarray  # (n_cats,) position in its bundle
    item_cat: np.ndarray  # (n_items,) category id; items are grouped by category
    item_new: np.ndarray  # (n_items,) launched at the shift
    w_before: np.ndarray  # within-category weight before the shift (0 for new items)
    w_after: np.ndarray
    price: np.ndarray
    title: list[str]
    cdf_before: np.ndarray  # per-category cumulative weights, category c in [c, c+1)
    cdf_after: np.ndarray
    bundle_pop_before: np.ndarray
    bundle_pop_after: np.ndarray
    item_pop_before: np.ndarray  # global view share of each item before the shift
    rising: np.ndarray  # bundles whose popularity rises at the shift
    order: np.ndarray  # item indices sorted by category: position in the CDFs -> item


def _category_cdf(item_cat: np.ndarray, weights: np.ndarray, n_cats: int) -> np.ndarray:
    totals = np.bincount(item_cat, weights=weights, minlength=n_cats)
    cum = np.cumsum(weights) - np.repeat(np.cumsum(totals) - totals, np.bincount(item_cat))
    return item_cat + cum / totals[item_cat]


def _draw_items(cdf: np.ndarray, cats: np.ndarray, u: np.ndarray) -> np.ndarray:
    idx = np.searchsorted(cdf, cats + u, side="right")
    return np.minimum(idx, len(cdf) - 1)


def _build_catalogue(cfg: WorldSize, seed: int) -> _Catalogue:
    rng = _rng(seed, 1)
    chosen = BUNDLES[: cfg.n_bundles]
    bundle_names = [name for name, _ in chosen]
    cat_names: list[str] = []
    bundle_cats: list[list[int]] = []
    cat_bundle, cat_pos = [], []
    for b, (_, cats) in enumerate(chosen):
        bundle_cats.append(list(range(len(cat_names), len(cat_names) + len(cats))))
        for pos, cat in enumerate(cats):
            cat_names.append(cat)
            cat_bundle.append(b)
            cat_pos.append(pos)
    n_cats = len(cat_names)
    cat_bundle_a = np.array(cat_bundle)
    cat_pos_a = np.array(cat_pos)

    # items per category: uneven (a Dirichlet share), at least 3 each
    share = rng.dirichlet(np.full(n_cats, 4.0))
    n_old = np.maximum(3, np.round(share * cfg.n_items)).astype(int)
    n_new = np.maximum(1, np.round(n_old * NEW_ITEM_SHARE)).astype(int)
    # ids: old catalogue first (grouped by category), new items after (grouped by category)
    old_cat = np.repeat(np.arange(n_cats), n_old)
    new_cat = np.repeat(np.arange(n_cats), n_new)
    # within-category Zipf popularity over a random rank order
    w_old = np.empty(len(old_cat))
    starts = np.cumsum(n_old) - n_old
    for c in range(n_cats):  # a loop over categories, not events
        w_old[starts[c] : starts[c] + n_old[c]] = rng.permutation(_zipf(n_old[c], ZIPF_ITEM))
    # new items become popular: each category's best launch rivals its top seller,
    # the other launches decay like the Zipf tail
    new_rank = np.arange(len(new_cat)) - np.repeat(np.cumsum(n_new) - n_new, n_new)
    new_strength = rng.uniform(0.7, 1.5, size=len(new_cat)) * np.where(
        new_rank == 0, 1.0, 0.5 / (1.0 + new_rank) ** ZIPF_ITEM
    )
    item_cat = np.concatenate([old_cat, new_cat])
    item_new = np.concatenate([np.zeros(len(old_cat), bool), np.ones(len(new_cat), bool)])
    w_before = np.concatenate([w_old, np.zeros(len(new_cat))])
    w_after = np.concatenate([w_old, new_strength])
    # ids keep the old catalogue first; the per-category CDFs use a category-sorted view
    order = np.argsort(item_cat, kind="stable")

    bundle_pop_before = rng.permutation(_zipf(cfg.n_bundles, ZIPF_BUNDLE))
    bundle_pop_before /= bundle_pop_before.sum()
    # at the shift a quarter of the bundles, from the less popular half, rise (a season turns)
    lower_half = np.argsort(-bundle_pop_before, kind="stable")[cfg.n_bundles // 2 :]
    rising = np.sort(rng.choice(lower_half, size=max(2, cfg.n_bundles // 4), replace=False))
    bundle_pop_after = bundle_pop_before.copy()
    bundle_pop_after[rising] *= RISING_BUNDLE_FACTOR
    bundle_pop_after /= bundle_pop_after.sum()

    base_price = np.exp(rng.uniform(np.log(6), np.log(900), size=n_cats))
    price = np.round(base_price[item_cat] * rng.lognormal(0, 0.35, len(item_cat))) - 0.01
    price = np.maximum(price, 0.99)
    brands = rng.integers(0, len(_BRANDS), len(item_cat))
    # a model number within the category: "Lumen keyboard 0042"
    per_cat = np.bincount(item_cat, minlength=n_cats)
    number = np.empty(len(item_cat), dtype=np.int64)
    number[order] = np.arange(len(item_cat)) - np.repeat(np.cumsum(per_cat) - per_cat, per_cat) + 1
    title = [
        f"{_BRANDS[b]} {_singular(cat_names[c])} {n:04d}"
        for b, c, n in zip(brands.tolist(), item_cat.tolist(), number.tolist(), strict=True)
    ]

    # popularity of an item across the shop: bundle popularity × category entry rate × item
    cat_share = np.zeros(n_cats)
    for b, cat_ids in enumerate(bundle_cats):
        reach = 0.55 ** np.arange(len(cat_ids))  # later categories of a bundle are reached less
        cat_share[cat_ids] = bundle_pop_before[b] * (0.6 + 0.4 * reach) / (0.6 + 0.4 * reach).sum()
    tot = np.bincount(item_cat, weights=w_before, minlength=n_cats)
    item_pop_before = cat_share[item_cat] * w_before / tot[item_cat]

    return _Catalogue(
        bundle_names=bundle_names,
        bundle_cats=bundle_cats,
        cat_names=cat_names,
        cat_bundle=cat_bundle_a,
        cat_pos=cat_pos_a,
        item_cat=item_cat,
        item_new=item_new,
        w_before=w_before,
        w_after=w_after,
        price=price,
        title=title,
        cdf_before=_category_cdf(item_cat[order], w_before[order], n_cats),
        cdf_after=_category_cdf(item_cat[order], w_after[order], n_cats),
        bundle_pop_before=bundle_pop_before,
        bundle_pop_after=bundle_pop_after,
        item_pop_before=item_pop_before,
        rising=rising,
        order=order,
    )


def _draw_bursts(cfg: WorldSize, cat: _Catalogue, seed: int) -> list[dict]:
    rng = _rng(seed, 3)
    n = max(3, round(BURSTS_PER_DAY * cfg.days))
    end_us = cfg.days * DAY_US
    starts = np.sort(rng.integers(2 * 3600 * US, end_us - 8 * 3600 * US, size=n))
    # bursts start in the daytime (shift to 08:00-20:00 of their day)
    day = starts // DAY_US
    starts = day * DAY_US + rng.integers(8 * 3600 * US, 20 * 3600 * US, size=n)
    duration = rng.integers(3600 * US, 3 * 3600 * US, size=n)
    old_items = np.flatnonzero(~cat.item_new)
    n_cats = len(cat.cat_names)
    # mid-popularity items (not the top of their category): a burst is a real change
    tot = np.bincount(cat.item_cat, weights=cat.w_before, minlength=n_cats)
    share = cat.w_before / np.maximum(tot[cat.item_cat], 1e-12)
    candidates = old_items[(share[old_items] < 0.08) & (share[old_items] > 0.004)]
    if len(candidates) < n:
        candidates = old_items
    items = rng.choice(candidates, size=n, replace=False)
    out = []
    for i in range(n):  # a few dozen bursts
        out.append(
            {
                "item": int(items[i]),
                "start_us": int(starts[i]),
                "end_us": int(starts[i] + duration[i]),
                "pull": float(np.round(rng.uniform(0.6, 0.9), 3)),
                "session_share": float(np.round(rng.uniform(0.05, 0.1), 3)),
                "drawn_share": float(np.round(rng.uniform(0.3, 0.45), 3)),
                "detour_same_bundle": float(np.round(rng.uniform(0.25, 0.4), 3)),
                "detour_other": float(np.round(rng.uniform(0.005, 0.015), 3)),
            }
        )
    return out


def _write_items(path: Path, cat, item_ids: np.ndarray, seed: int, shift_us: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    n = len(item_ids)
    # the old catalogue launched over the year before the world starts
    launched = np.where(
        cat.item_new, shift_us, -_rng(seed, 5).integers(1, 365 * 24, size=n) * 3600 * US
    )
    pq.write_table(
        pa.table(
            {
                "item_id": pa.array(item_ids),
                "category": _labels(cat.item_cat, cat.cat_names),
                "bundle": _labels(cat.cat_bundle[cat.item_cat], cat.bundle_names),
                "price": pa.array(cat.price),
                "title": pa.array(cat.title, pa.string()),
                "launched_at": _timestamps(launched),
            }
        ),
        path,
        compression="zstd",
    )
