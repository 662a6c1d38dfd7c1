"""The ground truth written to ``world.json`` and the world's README."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_cli.data.world.bandit import logging_policy_probs, policy_value
from rtml_cli.data.world.common import (
    _EVENTS,
    DAY_US,
    GAP_MAX_S,
    HISTORY_CUTOFF,
    MEAN_VIEWS,
    P_CART,
    P_INTENT_FAVOURITE,
    P_INTENT_SECOND,
    P_PURCHASE,
    P_STEP_BACK,
    P_STEP_FORWARD,
    P_WANDER,
    RISING_BUNDLE_FACTOR,
    ZIPF_BUNDLE,
    ZIPF_ITEM,
    _iso,
)
from rtml_cli.data.world.sessions import _SEGMENTS


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
