"""A sample world that behaves like a real shop, with its ground truth written down.

``generate_world`` writes an event log, an item catalogue, two bandit logs and a
known click model whose properties are the ones the migration argument rests on,
built in by construction so tests can check them:

- items live in categories; categories form *intent bundles* (keyboards → monitors →
  hdmi cables → monitor stands) that a session walks through in order;
- Zipf-like popularity within and across categories, plus short trending *bursts*
  of single items (what streaming features are for);
- returning users with a long-term taste over bundles, and about half of the
  sessions after the batch-history cutoff from anonymous or new visitors (what a
  batch job cannot serve);
- a session follows one intent, often not the user's long-term taste;
- a view → cart → purchase funnel;
- a distribution shift at a known time: new items launch and become popular,
  bundle popularity and user tastes move;
- bandit logs (a known non-uniform logging policy and a uniform one) with clicks
  drawn from a known ``ClickModel``, so the true value of any policy is computable.

Everything is vectorised with numpy; the event log is generated one day of
sessions at a time (a chunk) so memory stays bounded for the large size. All
randomness comes from ``numpy.random.default_rng`` seeded by ``(seed, stream,
chunk)``: the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import UsageError
from rtml_cli.fsutil import directory_output

# the committed sample world predates the output marker: its world.json identifies it
SAMPLE_WORLD_OUTPUT = directory_output("data sample", legacy_marker="world.json")

# --------------------------------------------------------------------------- catalogue

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


def _singular(name: str) -> str:
    if name.endswith("lenses"):
        return name[:-2]
    if name.endswith(("sses", "shes", "ches", "xes")):
        return name[:-2]
    if name.endswith("ies"):
        return name[:-3] + "y"
    return name[:-1] if name.endswith("s") else name


def _zipf(n: int, exponent: float) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1, dtype=float) ** exponent


def _iso(us: int) -> str:
    return (START + timedelta(microseconds=int(us))).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------- the world


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
    for b, cats in enumerate(bundle_cats):
        reach = 0.55 ** np.arange(len(cats))  # later categories of a bundle are reached less
        cat_share[cats] = bundle_pop_before[b] * (0.6 + 0.4 * reach) / (0.6 + 0.4 * reach).sum()
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


# --------------------------------------------------------------------------- events


def _day_sessions(cfg, cat, users, bursts, seed, day, shift_us, cutoff_us):
    """Sessions starting on ``day`` and their events, as numpy arrays."""
    rng = _rng(seed, 10, day)
    weekday = (START.weekday() + day) % 7
    mean = cfg.sessions_per_day * (1.12 if weekday >= 5 else 0.97)
    n = int(rng.poisson(mean))
    hour = rng.choice(24, size=n, p=HOURLY / HOURLY.sum())
    start = np.sort(day * DAY_US + hour * 3600 * US + rng.integers(0, 3600 * US, size=n))

    # who: anonymous, a registered user, or (after the cutoff) a new user
    anon = rng.random(n) < P_ANONYMOUS
    newcomer = ~anon & (start >= cutoff_us) & (rng.random(n) < P_NEW_AFTER_CUTOFF)
    user = np.full(n, -1, dtype=np.int64)
    reg = ~anon & ~newcomer
    user[reg] = np.searchsorted(users.activity_old, rng.random(reg.sum()), side="right")
    user[newcomer] = cfg.n_users + np.searchsorted(
        users.activity_new, rng.random(newcomer.sum()), side="right"
    )
    user = np.where(user >= 0, np.minimum(user, cfg.n_users + cfg.n_new_users - 1), -1)

    # intent: the user's taste, or what is popular in the shop right now
    after = start >= shift_us
    pop = np.where(after[:, None], cat.bundle_pop_after[None, :], cat.bundle_pop_before[None, :])
    cum = np.cumsum(pop, axis=1)
    popular = np.minimum((cum < rng.random(n)[:, None]).sum(axis=1), cfg.n_bundles - 1)
    u = rng.random(n)
    safe = np.maximum(user, 0)
    fav = np.where(after, users.fav_after[safe], users.fav_before[safe])
    sec = np.where(after, users.sec_after[safe], users.sec_before[safe])
    intent = np.where(
        user < 0,
        popular,
        np.where(
            u < P_INTENT_FAVOURITE,
            fav,
            np.where(u < P_INTENT_FAVOURITE + P_INTENT_SECOND, sec, popular),
        ),
    )
    bundle_len = np.array([len(c) for c in cat.bundle_cats])
    bundle_first = np.array([c[0] for c in cat.bundle_cats])
    entry = np.where(rng.random(n) < 0.6, 0, rng.integers(0, 1 << 30, size=n) % bundle_len[intent])
    # trending: some sessions start at a burst item (a link, a campaign), more come to
    # shop its bundle and enter at its category (they meet the item mid-session, below)
    first_item = np.full(n, -1, dtype=np.int64)
    for b in bursts:
        window = (start >= b["start_us"]) & (start < b["end_us"])
        u_b = rng.random(n)
        hit = window & (u_b < b["session_share"])
        drawn = window & ~hit & (u_b < b["session_share"] + b["drawn_share"])
        c = cat.item_cat[b["item"]]
        intent[hit | drawn] = cat.cat_bundle[c]
        entry[hit | drawn] = cat.cat_pos[c]
        first_item[hit] = b["item"]

    # views: session lengths, a walk through the bundle, items by (time-varying) popularity
    n_views = 1 + np.minimum(rng.negative_binomial(2, 2 / (2 + MEAN_VIEWS - 1), size=n), 39)
    total = int(n_views.sum())
    sess = np.repeat(np.arange(n), n_views)
    offsets = np.cumsum(n_views) - n_views
    r = rng.random(total)
    step = np.where(r < P_STEP_FORWARD, 1, np.where(r < P_STEP_FORWARD + P_STEP_BACK, -1, 0))
    step[offsets] = 0
    walk = np.cumsum(step)
    walk = walk - (walk[offsets] - step[offsets])[sess]  # restart the sum in each session
    pos = np.clip(entry[sess] + walk, 0, bundle_len[intent][sess] - 1)
    vcat = bundle_first[intent][sess] + pos
    wander = rng.random(total) < P_WANDER
    vcat[wander] = rng.integers(0, len(cat.cat_names), size=int(wander.sum()))

    gaps = np.exp(np.log(GAP_MEDIAN_S) + rng.normal(0, 1.0, size=total))
    gaps = (np.clip(gaps, 2.0, GAP_MAX_S) * US).astype(np.int64)
    gaps[offsets] = 0
    gsum = np.cumsum(gaps)
    vts = start[sess] + gsum - gsum[offsets][sess]

    u = rng.random(total)
    vafter = vts >= shift_us
    item = np.empty(total, dtype=np.int64)
    order = cat.order
    item[~vafter] = order[_draw_items(cat.cdf_before, vcat[~vafter], u[~vafter])]
    item[vafter] = order[_draw_items(cat.cdf_after, vcat[vafter], u[vafter])]
    # trending bursts (world.json "bursts"), besides the sessions that start at the item:
    # while it trends, a later view (not a session's first) in its category is the burst
    # item with probability `pull`, and any later view may be a detour to it (a "trending
    # now" shelf, a social post) with probability `detour_same_bundle` when the session's
    # intent bundle holds its category, `detour_other` otherwise. Only the first such view
    # of a session is kept: a visitor who has seen the item moves on with their intent.
    later = np.ones(total, dtype=bool)
    later[offsets] = False
    sess_bundle = intent[sess]
    entered = first_item[sess]
    day_lo, day_hi = day * DAY_US, (day + 2) * DAY_US  # a day's sessions end within a day
    for b in bursts:
        if b["end_us"] <= day_lo or b["start_us"] >= day_hi:
            continue
        i, c = b["item"], cat.item_cat[b["item"]]
        inside = later & (vts >= b["start_us"]) & (vts < b["end_us"]) & (entered != i)
        if not inside.any():
            continue
        p = np.where(
            vcat == c,
            b["pull"],
            np.where(sess_bundle == cat.cat_bundle[c], b["detour_same_bundle"], b["detour_other"]),
        )
        take = np.flatnonzero(inside & (rng.random(total) < p))
        if len(take):
            _, first = np.unique(sess[take], return_index=True)
            item[take[first]] = i
    first = first_item[sess[offsets]] >= 0
    item[offsets[first]] = first_item[first]

    # funnel: some views are carted moments later; some carts are bought at checkout
    seg_cart = np.where(
        user < 0,
        P_CART["anonymous"],
        np.where(user >= cfg.n_users, P_CART["new"], P_CART["returning"]),
    )
    carted = rng.random(total) < seg_cart[sess]
    c_idx = np.flatnonzero(carted)
    c_ts = vts[c_idx] + rng.integers(3 * US, 120 * US, size=len(c_idx))
    bought = rng.random(len(c_idx)) < P_PURCHASE
    p_idx = c_idx[bought]
    checkout = vts[offsets + n_views - 1].copy()  # after the last view and the last cart
    np.maximum.at(checkout, sess[c_idx], c_ts)
    p_ts = checkout[sess[p_idx]] + rng.integers(60 * US, 600 * US, size=len(p_idx))

    ev_ts = np.concatenate([vts, c_ts, p_ts])
    ev_sess = np.concatenate([sess, sess[c_idx], sess[p_idx]])
    ev_item = np.concatenate([item, item[c_idx], item[p_idx]])
    ev_code = np.concatenate(
        [np.zeros(total, np.int8), np.ones(len(c_idx), np.int8), np.full(len(p_idx), 2, np.int8)]
    )
    sessions = {
        "start": start,
        "user": user,
        "intent": intent,
        "n_views": n_views,
        "burst_entry": first_item >= 0,
        "favourite": np.where(user >= 0, fav, -1),
        "second": np.where(user >= 0, sec, -1),
    }
    events = {"ts": ev_ts, "sess": ev_sess, "item": ev_item, "code": ev_code}
    return sessions, events


def _ids(prefix: str, numbers: np.ndarray, width: int):
    """``prefix`` + zero-padded numbers as an Arrow string array (null where number < 0)."""
    import polars as pl

    s = pl.Series(numbers.astype(np.int64))
    out = pl.select(
        pl.when(s >= 0).then(pl.lit(prefix) + s.cast(pl.String).str.zfill(width)).otherwise(None)
    ).to_series()
    return out.to_arrow().cast("string")


# --------------------------------------------------------------------------- bandit


def _build_click_model(cfg: WorldSize, cat: _Catalogue, users: _Users, seed: int):
    """Featured items (the arms) and a click model whose tastes follow bundle preferences."""
    rng = _rng(seed, 4)
    dim = 8
    emb = rng.normal(size=(cfg.n_bundles, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # arms: the most popular items of each bundle before the shift
    arms = []
    for cats in cat.bundle_cats:
        members = np.flatnonzero(np.isin(cat.item_cat, cats) & ~cat.item_new)
        top = members[np.argsort(-cat.item_pop_before[members], kind="stable")]
        arms.extend(top[: cfg.arms_per_bundle].tolist())
    arms = np.array(arms, dtype=np.int64)
    arm_bundle = cat.cat_bundle[cat.item_cat[arms]]
    item_vec = emb[arm_bundle] + 0.35 * rng.normal(size=(len(arms), dim)) / np.sqrt(dim)
    n_u = cfg.n_click_users
    pref = np.zeros((n_u, cfg.n_bundles))
    pref[np.arange(n_u), users.fav_before[:n_u]] += 0.75
    pref[np.arange(n_u), users.sec_before[:n_u]] += 0.25
    taste = pref @ emb
    noise = 0.3 * rng.normal(size=taste.shape) / np.sqrt(dim)
    context = np.hstack([taste + noise, np.ones((n_u, 1))]).astype(np.float32)
    pop = np.log(cat.item_pop_before[arms])
    model = ClickModel(
        taste=taste,
        user_context=context,
        item_vec=item_vec,
        popularity_logit=pop - pop.mean(),
        position_logit=np.array([0.0, -0.45, -0.8]),
        intercept=-2.9,
        affinity_weight=2.4,
        popularity_weight=0.35,
    )
    weights = np.diff(np.concatenate([[0.0], users.activity_old]))[:n_u]
    return model, arms, weights / weights.sum()


LOGGING_TEMPERATURE = 0.5
LOGGING_EPSILON = 0.15  # uniform mixing: every arm has propensity >= epsilon / n_arms


def logging_policy_probs(model: ClickModel, context: np.ndarray) -> np.ndarray:
    """The known logging policy of ``bandit.parquet``: a softmax over a noisy-context score.

    score = context[:d] · item_vec + 0.5 · popularity_logit, softmax at temperature
    0.5, mixed with the uniform policy (epsilon 0.15) so every arm keeps a floor.
    """
    d = model.item_vec.shape[1]
    score = (context[:, :d] @ model.item_vec.T + 0.5 * model.popularity_logit[None, :]) / (
        LOGGING_TEMPERATURE
    )
    score -= score.max(axis=1, keepdims=True)
    soft = np.exp(score)
    soft /= soft.sum(axis=1, keepdims=True)
    return (1 - LOGGING_EPSILON) * soft + LOGGING_EPSILON / model.n_items


def _bandit_table(model, arm_item_ids, weights, seed, stream, n_rows, end_us, uniform: bool):
    import pyarrow as pa

    rng = _rng(seed, stream)
    users = rng.choice(model.n_users, size=n_rows, p=weights)
    ts = np.sort(rng.integers(0, end_us, size=n_rows)).astype(np.int64)
    position = rng.integers(1, model.n_positions + 1, size=n_rows)
    action = np.empty(n_rows, dtype=np.int64)
    prop = np.empty(n_rows)
    chunk = 50_000
    for lo in range(0, n_rows, chunk):  # bounded memory: (chunk, n_arms) at a time
        hi = min(n_rows, lo + chunk)
        if uniform:
            action[lo:hi] = rng.integers(0, model.n_items, size=hi - lo)
            prop[lo:hi] = 1.0 / model.n_items
        else:
            probs = logging_policy_probs(model, model.user_context[users[lo:hi]])
            cum = np.cumsum(probs, axis=1)
            a = (cum < rng.random(hi - lo)[:, None] * cum[:, -1:]).sum(axis=1)
            action[lo:hi] = np.minimum(a, model.n_items - 1)
            prop[lo:hi] = probs[np.arange(hi - lo), action[lo:hi]]
    reward = model.sample_clicks(rng, users, action, position)
    cols = {
        "ts": _timestamps(ts),
        "action": pa.array(action),
        "item_id": pa.array(arm_item_ids[action]),
        "position": pa.array(position.astype(np.int64)),
        "reward": pa.array(reward.astype(np.int64)),
        "propensity": pa.array(prop),
        "policy": _labels(
            np.zeros(n_rows, np.int8), ["uniform" if uniform else "softmax-affinity"]
        ),
        "user_idx": pa.array(users.astype(np.int64)),
    }
    ctx = model.user_context[users]
    for j in range(ctx.shape[1]):
        cols[f"ctx_{j}"] = pa.array(ctx[:, j])
    return pa.table(cols)


def policy_value(model: ClickModel, user_weights: np.ndarray, probs: np.ndarray) -> float:
    """Exact expected click rate of a policy: probs is (n_users, n_arms), positions uniform."""
    value = 0.0
    users = np.arange(model.n_users)
    for p in range(1, model.n_positions + 1):
        value += float(user_weights @ (probs * model.all_probs(users, p)).sum(axis=1))
    return value / model.n_positions


# --------------------------------------------------------------------------- driver


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


@dataclass
class _EventStats:
    counts: np.ndarray  # events by code (view, cart, purchase)
    sessions: dict[str, np.ndarray]  # per-session ground truth, all days
    first_seen: np.ndarray  # per user: start of their first session (int64 max if never)


def _write_events(path, cfg, cat, users, bursts, seed, item_ids, on_progress) -> _EventStats:
    """Generate sessions a day at a time and append them to ``path`` in ``ts`` order.

    A session that starts before midnight may end after it, so events at or after
    the end of the day are carried over and merged with the next day's events.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    shift_us = int(cfg.shift_day * DAY_US)
    cutoff_us = int(HISTORY_CUTOFF * cfg.days * DAY_US)
    schema = pa.schema(
        [
            ("ts", pa.timestamp("us", tz="UTC")),
            ("user_id", pa.string()),
            ("session_id", pa.string()),
            ("item_id", pa.int64()),
            ("event", pa.string()),
        ]
    )
    first_seen = np.full(cfg.n_users + cfg.n_new_users, np.iinfo(np.int64).max, dtype=np.int64)
    parts: list[dict] = []
    counts = np.zeros(3, dtype=np.int64)
    n_sessions = 0
    kinds = {"ts": np.int64, "sess": np.int64, "item": np.int64, "code": np.int8, "user": np.int64}
    carry = {k: np.empty(0, dtype=t) for k, t in kinds.items()}
    with pq.ParquetWriter(path, schema, compression="zstd") as writer:
        for day in range(cfg.days):
            sessions, ev = _day_sessions(cfg, cat, users, bursts, seed, day, shift_us, cutoff_us)
            ev["user"] = sessions["user"][ev["sess"]]
            ev["sess"] = ev["sess"] + n_sessions
            sessions["id"] = n_sessions + np.arange(len(sessions["start"]))
            n_sessions += len(sessions["start"])
            parts.append(sessions)
            known = sessions["user"] >= 0
            np.minimum.at(first_seen, sessions["user"][known], sessions["start"][known])

            merged = {k: np.concatenate([carry[k], ev[k]]) for k in kinds}
            order = np.lexsort((merged["code"], merged["sess"], merged["ts"]))
            merged = {k: v[order] for k, v in merged.items()}
            # the log is an extract that ends at `end`: sessions still open then are cut
            cut = int(np.searchsorted(merged["ts"], (day + 1) * DAY_US))
            emit = {k: v[:cut] for k, v in merged.items()}
            carry = {k: v[cut:] for k, v in merged.items()}
            counts += np.bincount(emit["code"], minlength=3)
            table = pa.table(
                {
                    "ts": _timestamps(emit["ts"]),
                    "user_id": _ids("u", emit["user"], 6),
                    "session_id": _ids("s", emit["sess"], 8),
                    "item_id": pa.array(item_ids[emit["item"]]),
                    "event": _labels(emit["code"], list(_EVENTS)),
                },
                schema=schema,
            )
            writer.write_table(table)
            if on_progress:
                on_progress(day + 1, cfg.days + 2)
    all_sessions = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return _EventStats(counts, all_sessions, first_seen)


def _segments(stats: _EventStats, cutoff_us: int) -> np.ndarray:
    """0 anonymous, 1 new (first seen at or after the cutoff), 2 returning — per session."""
    user = stats.sessions["user"]
    first = stats.first_seen[np.maximum(user, 0)]
    return np.where(user < 0, 0, np.where(first >= cutoff_us, 1, 2))


_SEGMENTS = ["anonymous", "new", "returning"]


def _write_ground_truth(tmp: Path, cat, users, stats: _EventStats, segment: np.ndarray) -> int:
    """sessions.parquet (intent, segment per session) and users.parquet (tastes); returns n_users."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    S = stats.sessions
    pq.write_table(
        pa.table(
            {
                "session_id": _ids("s", S["id"], 8),
                "user_id": _ids("u", S["user"], 6),
                "start": _timestamps(S["start"]),
                "segment": _labels(segment, _SEGMENTS),
                "intent": _labels(S["intent"], cat.bundle_names),
                "favourite": _labels(S["favourite"], cat.bundle_names),
                "n_views": pa.array(S["n_views"].astype(np.int64)),
                "burst_entry": pa.array(S["burst_entry"]),
            }
        ),
        tmp / "sessions.parquet",
        compression="zstd",
    )
    seen = np.flatnonzero(stats.first_seen < np.iinfo(np.int64).max)
    pq.write_table(
        pa.table(
            {
                "user_id": _ids("u", seen, 6),
                "first_seen": _timestamps(stats.first_seen[seen]),
                "favourite_before": _labels(users.fav_before[seen], cat.bundle_names),
                "second_before": _labels(users.sec_before[seen], cat.bundle_names),
                "favourite_after": _labels(users.fav_after[seen], cat.bundle_names),
                "second_after": _labels(users.sec_after[seen], cat.bundle_names),
            }
        ),
        tmp / "users.parquet",
        compression="zstd",
    )
    return len(seen)


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


def _write_click_users(path: Path, user_weights: np.ndarray) -> None:
    """Who the click model's rows are and how often each visits (the bandit logs' user mix)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.arange(len(user_weights))
    pq.write_table(
        pa.table(
            {
                "user_idx": pa.array(rows),
                "user_id": _ids("u", rows, 6),
                "weight": pa.array(user_weights),
            }
        ),
        path,
        compression="zstd",
    )


def expected_reward(
    model: ClickModel, users: np.ndarray, positions: np.ndarray, probs: np.ndarray
) -> np.ndarray:
    """Per logged row, the true expected click of a policy choosing arms with ``probs``.

    ``probs`` is (n_rows, n_arms), the policy's distribution for each row's context;
    the mean over a log's rows is the policy's true value on that log's users and
    positions — what an off-policy estimate should recover.
    """
    users = np.asarray(users)
    positions = np.asarray(positions)
    logits = (
        model.intercept
        + model.affinity_weight * (model.taste[users] @ model.item_vec.T)
        + model.popularity_weight * model.popularity_logit[None, :]
        + model.position_logit[positions - 1][:, None]
    )
    return (probs * (1.0 / (1.0 + np.exp(-logits)))).sum(axis=1)


def _summary(cfg, size, seed, cat, users, bursts, item_ids, stats, segment, n_users, click):
    """The ground truth written to world.json."""
    model, arms, user_weights = click
    end_us = cfg.days * DAY_US
    shift_us = int(cfg.shift_day * DAY_US)
    cutoff_us = int(HISTORY_CUTOFF * end_us)
    S, counts = stats.sessions, stats.counts
    n_sessions = len(S["start"])
    after_cut = S["start"] >= cutoff_us
    n_seg = np.bincount(segment, minlength=3)
    n_seg_after = np.bincount(segment[after_cut], minlength=3)
    known = S["favourite"] >= 0
    off_fav = S["intent"][known] != S["favourite"][known]
    off_taste = off_fav & (S["intent"][known] != S["second"][known])

    all_users = np.arange(model.n_users)
    log_probs = logging_policy_probs(model, model.user_context)
    best = np.zeros_like(log_probs)
    best[all_users, np.argmax(model.all_probs(all_users, 1), axis=1)] = 1.0
    uniform = np.full_like(log_probs, 1.0 / model.n_items)

    def shares(n: np.ndarray) -> dict:
        return dict(zip(_SEGMENTS, (n / max(1, n.sum())).round(4).tolist(), strict=True))

    return {
        "format_version": 1,
        "seed": seed,
        "size": size,
        "start": _iso(0),
        "end": _iso(end_us),
        "days": cfg.days,
        "shift_time": _iso(shift_us),
        "history_cutoff": _iso(cutoff_us),
        "n_events": int(counts.sum()),
        "event_counts": dict(zip(_EVENTS, counts.tolist(), strict=True)),
        "n_sessions": int(n_sessions),
        "n_users": int(n_users),
        "n_items": int(len(item_ids)),
        "n_items_before_shift": int((~cat.item_new).sum()),
        "segments": {
            "definition": "anonymous: user_id null; new: user first seen at or after "
            "history_cutoff (a batch job's history ends there); returning: seen before it",
            "all_sessions": shares(n_seg),
            "sessions_after_cutoff": shares(n_seg_after),
            "anonymous_share": round(float(n_seg[0] / n_sessions), 4),
            "anonymous_or_new_share_after_cutoff": round(
                float(n_seg_after[:2].sum() / max(1, after_cut.sum())), 4
            ),
        },
        "intent": {
            "p_favourite": P_INTENT_FAVOURITE,
            "p_second": P_INTENT_SECOND,
            "p_popular": round(1 - P_INTENT_FAVOURITE - P_INTENT_SECOND, 4),
            "share_sessions_off_favourite": round(float(off_fav.mean()), 4),
            "share_sessions_off_taste": round(float(off_taste.mean()), 4),
            "walk": {"p_forward": P_STEP_FORWARD, "p_back": P_STEP_BACK, "p_wander": P_WANDER},
            "mean_views_per_session": MEAN_VIEWS,
            "max_gap_seconds": GAP_MAX_S,
        },
        "funnel": {
            "p_cart_per_view": P_CART,
            "p_purchase_per_cart": P_PURCHASE,
            "observed_cart_per_view": round(float(counts[1] / counts[0]), 4),
            "observed_purchase_per_cart": round(float(counts[2] / max(1, counts[1])), 4),
        },
        "popularity": {"zipf_item_exponent": ZIPF_ITEM, "zipf_bundle_exponent": ZIPF_BUNDLE},
        "bundles": [
            {
                "name": cat.bundle_names[b],
                "categories": [cat.cat_names[c] for c in cats],
                "popularity_before_shift": round(float(cat.bundle_pop_before[b]), 4),
                "popularity_after_shift": round(float(cat.bundle_pop_after[b]), 4),
            }
            for b, cats in enumerate(cat.bundle_cats)
        ],
        "categories": [
            {
                "name": cat.cat_names[c],
                "bundle": cat.bundle_names[cat.cat_bundle[c]],
                "position": int(cat.cat_pos[c]),
            }
            for c in range(len(cat.cat_names))
        ],
        "bursts": [
            {
                "item_id": int(item_ids[b["item"]]),
                "category": cat.cat_names[cat.item_cat[b["item"]]],
                "start": _iso(b["start_us"]),
                "end": _iso(b["end_us"]),
                "pull": b["pull"],
                "session_share": b["session_share"],
                "drawn_share": b["drawn_share"],
                "detour_same_bundle": b["detour_same_bundle"],
                "detour_other": b["detour_other"],
            }
            for b in bursts
        ],
        "shift": {
            "time": _iso(shift_us),
            "n_new_items": int(cat.item_new.sum()),
            "new_item_ids": [int(item_ids[cat.item_new][0]), int(item_ids[cat.item_new][-1])],
            "new_items_launched_at": "shift time (items.parquet launched_at)",
            "share_users_taste_moved": round(
                float(np.mean(users.fav_before != users.fav_after)), 4
            ),
            "rising_bundles": [cat.bundle_names[b] for b in cat.rising],
            "rising_bundle_factor": RISING_BUNDLE_FACTOR,
        },
        "click_model": {
            "file": "click_model.npz",
            "n_users": model.n_users,
            "n_arms": model.n_items,
            "dim": int(model.item_vec.shape[1]),
            "context_dim": int(model.user_context.shape[1]),
            "user_idx": "row i of the click model is user_id u{i:06d} (their taste before the shift)",
            "users_file": "click_users.parquet (user_idx, user_id, weight: the probability a "
            "bandit row is that user)",
            "arm_item_ids": item_ids[arms].tolist(),
            "true_value": "bandit rows draw users by click_users.weight and positions uniformly; a "
            "policy's true value on a log is the mean over its rows of "
            "rtml_cli.data.world.expected_reward(model, user_idx, position, pi(.|ctx))",
            "logging_policy": "softmax((ctx[:d]·item_vec + 0.5·popularity_logit) / 0.5), "
            "mixed 0.15 with uniform (rtml_cli.data.world.logging_policy_probs)",
            "value_logging_policy": round(policy_value(model, user_weights, log_probs), 6),
            "value_uniform_policy": round(policy_value(model, user_weights, uniform), 6),
            "value_best_policy": round(policy_value(model, user_weights, best), 6),
            "min_logging_propensity": float(log_probs.min()),
            "bandit_rows": cfg.n_bandit,
            "bandit_period": [_iso(0), _iso(shift_us)],
        },
        "files": {
            "events": "events.parquet",
            "items": "items.parquet",
            "sessions": "sessions.parquet",
            "users": "users.parquet",
            "bandit": "bandit.parquet",
            "bandit_random": "bandit_random.parquet",
            "click_model": "click_model.npz",
            "click_users": "click_users.parquet",
            "readme": "README.md",
        },
    }


_README = """\
# {name} — a sample world made by `rtml data sample`

Generated with:

```bash
rtml data sample --out {out} --seed {seed} --size {size}
```

Same command, same files (the Parquet files are byte-identical). A synthetic shop of
{days} days ({start} → {end}, UTC) with {n_events:,} events, {n_sessions:,} sessions,
{n_users:,} users and {n_items:,} items in {n_categories} categories grouped into
{n_bundles} intent bundles. Ground truth is in `world.json`; the distribution shift is at
{shift_time}.

| file | what it is |
|---|---|
| `events.parquet` | the event log (events contract): `ts` (UTC, µs), `user_id` (null = anonymous), `session_id`, `item_id` (int64), `event` (view, cart, purchase); sorted by `ts` |
| `items.parquet` | the catalogue: `item_id`, `category`, `bundle` (the intent bundle of the category), `price`, `title`, `launched_at` (= the shift time for items launched at the shift) |
| `sessions.parquet` | ground truth per session: `session_id`, `user_id`, `start`, `segment` (anonymous/new/returning relative to `history_cutoff`), `intent` (the bundle the session follows), `favourite` (the user's favourite bundle at that time), `n_views` (as generated; sessions still open at the end of the log are cut), `burst_entry` (the session entered at a trending item) |
| `users.parquet` | ground truth per user: `first_seen`, favourite and second bundle before and after the shift |
| `bandit.parquet` | a bandit log over the period before the shift, logged by a known softmax policy: `ts`, `action` (arm index into the click model), `item_id`, `position` (1-3), `reward` (click 0/1 drawn from the click model), `propensity`, `policy`, `user_idx` (row of the click model), `ctx_0..ctx_{last_ctx}` (= `ClickModel.user_context[user_idx]`) |
| `bandit_random.parquet` | the same experiment logged uniformly at random (propensity 1/{n_arms}) |
| `click_users.parquet` | the click model's users: `user_idx` (row), `user_id`, `weight` (probability that a bandit row is that user; `world.json` policy values use it) |
| `click_model.npz` | the known click model (`rtml_cli.data.clickmodel.ClickModel.load`): the true click probability of any (user, arm, position) |
| `world.json` | ground truth: seed, size, time range, `history_cutoff`, `shift_time` and `shift`, `bundles` and `categories`, trending `bursts`, funnel rates, segment shares, intent rates, click-model summary with the true value of the logging, uniform and best policies |
"""


def _readme(out: Path, summary: dict) -> str:
    return _README.format(
        name=out.name,
        out=out.as_posix(),
        seed=summary["seed"],
        size=summary["size"],
        days=summary["days"],
        start=summary["start"][:10],
        end=summary["end"][:10],
        n_events=summary["n_events"],
        n_sessions=summary["n_sessions"],
        n_users=summary["n_users"],
        n_items=summary["n_items"],
        n_categories=len(summary["categories"]),
        n_bundles=len(summary["bundles"]),
        shift_time=summary["shift_time"],
        last_ctx=summary["click_model"]["context_dim"] - 1,
        n_arms=summary["click_model"]["n_arms"],
    )


def generate_world(
    out_dir: str | os.PathLike[str],
    *,
    seed: int = 0,
    size: str = "small",
    on_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Generate the sample world into ``out_dir`` (replaced atomically); return its summary.

    The summary is what ``world.json`` holds, plus ``elapsed_s``. ``on_progress(done,
    total)`` is called after each generated day and at the end.
    """
    import pyarrow.parquet as pq

    from rtml_cli.fsutil import atomic_path, check_output

    if size not in SIZES:
        raise UsageError(f"unknown world size {size!r}: use one of {', '.join(SIZES)}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    cfg = SIZES[size]
    out = Path(out_dir)
    check_output(out, SAMPLE_WORLD_OUTPUT, option="--out")
    t0 = time.perf_counter()
    shift_us = int(cfg.shift_day * DAY_US)
    cutoff_us = int(HISTORY_CUTOFF * cfg.days * DAY_US)

    cat = _build_catalogue(cfg, seed)
    users = _build_users(cfg, cat, seed)
    bursts = _draw_bursts(cfg, cat, seed)
    item_ids = 100_000 + np.arange(len(cat.item_cat), dtype=np.int64)

    with atomic_path(out, SAMPLE_WORLD_OUTPUT, option="--out") as tmp:
        tmp.mkdir()
        stats = _write_events(
            tmp / "events.parquet", cfg, cat, users, bursts, seed, item_ids, on_progress
        )
        segment = _segments(stats, cutoff_us)
        n_users = _write_ground_truth(tmp, cat, users, stats, segment)
        _write_items(tmp / "items.parquet", cat, item_ids, seed, shift_us)

        # bandit logs over the stationary period before the shift
        model, arms, user_weights = _build_click_model(cfg, cat, users, seed)
        model.save(tmp / "click_model.npz")
        _write_click_users(tmp / "click_users.parquet", user_weights)
        for name, stream, uniform in (
            ("bandit.parquet", 6, False),
            ("bandit_random.parquet", 7, True),
        ):
            table = _bandit_table(
                model, item_ids[arms], user_weights, seed, stream, cfg.n_bandit, shift_us, uniform
            )
            pq.write_table(table, tmp / name, compression="zstd")
        if on_progress:
            on_progress(cfg.days + 1, cfg.days + 2)

        summary = _summary(
            cfg, size, seed, cat, users, bursts, item_ids, stats, segment, n_users,
            (model, arms, user_weights),
        )  # fmt: skip
        (tmp / "README.md").write_text(_readme(out, summary))
        # world.json last: a directory with it is a complete world
        (tmp / "world.json").write_text(json.dumps(summary, indent=2) + "\n")
        if on_progress:
            on_progress(cfg.days + 2, cfg.days + 2)
    summary["elapsed_s"] = round(time.perf_counter() - t0, 2)
    return summary


def find_world(
    events: str | os.PathLike[str], world: str | os.PathLike[str] | None = None
) -> Path | None:
    """The ``world.json`` for an event log: ``world`` when given (a file or a world
    directory; missing is ``InputMissing``), else the one beside ``events`` (a file's
    directory, or the directory itself), else ``None`` (a real log has no ground truth)."""
    from rtml_cli.errors import InputMissing

    if world is not None:
        path = Path(world)
        path = path / "world.json" if path.is_dir() else path
        if not path.is_file():
            raise InputMissing(f"--world {world} does not exist (give a sample world's world.json)")
        return path
    base = Path(events)
    guess = (base if base.is_dir() else base.parent) / "world.json"
    return guess if guess.is_file() else None


def read_world(path: str | os.PathLike[str]) -> dict:
    """A sample world's ground truth (``world.json``, or the directory holding it)."""
    from rtml_cli.errors import DataError, InputMissing

    path = Path(path)
    path = path / "world.json" if path.is_dir() else path
    if not path.is_file():
        raise InputMissing(f"world file not found: {path} (give a sample world's world.json)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read {path}: {exc}; give a sample world's world.json") from None
    if not isinstance(doc, dict):
        raise DataError(f"{path} is not a sample world's world.json (not a JSON object)")
    return doc


__all__ = [
    "SIZES",
    "WorldSize",
    "expected_reward",
    "find_world",
    "generate_world",
    "read_world",
    "logging_policy_probs",
    "policy_value",
]
