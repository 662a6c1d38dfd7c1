"""Sessions and their events, a day at a time: ``events.parquet`` and the per-session and
per-user ground truth (``sessions.parquet``, ``users.parquet``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtml_cli.data.world.catalogue import _draw_items
from rtml_cli.data.world.common import (
    _EVENTS,
    DAY_US,
    GAP_MAX_S,
    GAP_MEDIAN_S,
    HISTORY_CUTOFF,
    HOURLY,
    MEAN_VIEWS,
    P_ANONYMOUS,
    P_CART,
    P_INTENT_FAVOURITE,
    P_INTENT_SECOND,
    P_NEW_AFTER_CUTOFF,
    P_PURCHASE,
    P_STEP_BACK,
    P_STEP_FORWARD,
    P_WANDER,
    START,
    US,
    _ids,
    _labels,
    _rng,
    _timestamps,
)


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


@dataclass
class _EventStats:
    counts: np.ndarray  # events by code (view, cart, purchase)
    sessions: dict[str, np.ndarray]  # per-session ground truth, all days
    first_seen: np.ndarray  # per user: start of their first session (int64 max if never)


# --scale: copy k of a user or session has its number + k * stride (more digits than any
# number of the world itself, so every copy's ids are new)
USER_STRIDE = 10_000_000
SESSION_STRIDE = 1_000_000_000


def _write_events(
    path, cfg, cat, users, bursts, seed, item_ids, on_progress, scale: int = 1
) -> _EventStats:
    """Generate sessions a day at a time and append them to ``path`` in ``ts`` order.

    A session that starts before midnight may end after it, so events at or after
    the end of the day are carried over and merged with the next day's events.
    With ``scale`` > 1 each day is written ``scale`` times (a row group each), copy k
    with its user and session numbers offset by k times ``USER_STRIDE`` and
    ``SESSION_STRIDE``: ``scale`` times the users, sessions and events in the memory of
    one day. The returned statistics describe the first copy.
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
            columns = {
                "ts": _timestamps(emit["ts"]),
                "item_id": pa.array(item_ids[emit["item"]]),
                "event": _labels(emit["code"], list(_EVENTS)),
            }
            for copy in range(scale):
                user = np.where(emit["user"] >= 0, emit["user"] + copy * USER_STRIDE, -1)
                columns["user_id"] = _ids("u", user, 6)
                columns["session_id"] = _ids("s", emit["sess"] + copy * SESSION_STRIDE, 8)
                writer.write_table(pa.table(columns, schema=schema))
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
