"""The bandit logs: featured items (arms), a known click model, the known logging policy,
and the true value of any policy on them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.data.world.catalogue import _Catalogue
from rtml_cli.data.world.common import WorldSize, _ids, _labels, _rng, _timestamps
from rtml_cli.data.world.users import _Users


def _build_click_model(cfg: WorldSize, cat: _Catalogue, users: _Users, seed: int):
    """Featured items (the arms) and a click model whose tastes follow bundle preferences."""
    rng = _rng(seed, 4)
    dim = 8
    emb = rng.normal(size=(cfg.n_bundles, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    # arms: the most popular items of each bundle before the shift
    featured: list[int] = []
    for cats in cat.bundle_cats:
        members = np.flatnonzero(np.isin(cat.item_cat, cats) & ~cat.item_new)
        top = members[np.argsort(-cat.item_pop_before[members], kind="stable")]
        featured.extend(top[: cfg.arms_per_bundle].tolist())
    arms = np.array(featured, dtype=np.int64)
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
