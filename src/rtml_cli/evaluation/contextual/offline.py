"""Offline mode: could each frozen policy's value have been estimated from the world's logs?

After the online run each policy is frozen (LinUCB/TS rank by their posterior mean) and
estimated by the replay method (Li et al. 2011) on the uniformly random log, and by
IPS/SNIPS/DR (``rtml_cli.evaluation.ope``) on the non-uniform log, next to the exact value
from the click model. ``simulate_log`` draws such logs from a click model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import DataError, UsageError
from rtml_cli.evaluation.contextual.policies import ContextualPolicy
from rtml_cli.evaluation.ope.diagnostics import percentile_ci
from rtml_cli.evaluation.ope.estimators import make_estimators
from rtml_cli.evaluation.ope.job import estimate
from rtml_cli.evaluation.ope.log import BanditLog, bandit_log_from_frame
from rtml_cli.evaluation.ope.targets import TargetPolicy, iter_chunks


def simulate_log(
    model: ClickModel,
    n: int,
    *,
    k: int,
    rng: np.random.Generator,
    behaviour: str = "uniform",
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """A logged-feedback table from the click model: one row per impression.

    Position is uniform in 1..k; ``behaviour`` ``uniform`` picks the item uniformly,
    ``popularity`` by softmax(popularity_logit / temperature) — a non-uniform logging
    policy whose propensities are exact.
    """
    users = rng.integers(0, model.n_users, n)
    pos = rng.integers(1, k + 1, n)
    if behaviour == "uniform":
        probs = np.full(model.n_items, 1.0 / model.n_items)
    elif behaviour == "popularity":
        z = model.popularity_logit / temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
    else:
        raise UsageError(f"unknown behaviour {behaviour!r}")
    items = rng.choice(model.n_items, size=n, p=probs)
    reward = model.sample_clicks(rng, users, items, pos).astype(float)
    out = {
        "ts": np.datetime64("2024-01-01T00:00:00", "us") + np.arange(n) * 1_000_000,
        "user_idx": users,
        "action": items,
        "position": pos,
        "reward": reward,
        "propensity": probs[items],
    }
    for c in range(model.user_context.shape[1]):
        out[f"ctx_{c}"] = model.user_context[users, c]
    return out


def world_log(frame: Any, model: ClickModel, *, what: str) -> BanditLog:
    """A ``BanditLog`` over *all* items of the world (action = item index), with user_idx."""
    log = bandit_log_from_frame(frame, source=what, context_cols="", what="bandit log")
    if "user_idx" not in frame.columns:
        raise DataError(f"{what} has no user_idx column: offline mode needs the world's users")
    actions = log.actions.astype(np.int64)
    if actions.min() < 0 or actions.max() >= model.n_items:
        raise DataError(f"{what}: actions must be item indices 0..{model.n_items - 1}")
    users = log.extra["user_idx"].astype(np.int64)
    if users.min() < 0 or users.max() >= model.n_users:
        raise DataError(f"{what}: user_idx must be in 0..{model.n_users - 1}")
    if log.positions.max() > model.n_positions:
        raise DataError(f"{what}: positions beyond the click model's {model.n_positions}")
    log.action_idx = actions[log.action_idx]
    log.actions = np.arange(model.n_items)
    return log


class FrozenTarget(TargetPolicy):
    """A frozen contextual policy as an OPE ``TargetPolicy`` over a world log."""

    def __init__(self, policy: ContextualPolicy, model: ClickModel, k: int) -> None:
        self.policy, self.model, self.k = policy, model, k
        self.name = policy.name
        self.description = f"frozen {policy.name}"

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        users = log.extra["user_idx"][rows].astype(np.int64)
        return self.policy.slate_probs(self.model.user_context[users], self.k)


def true_value(model: ClickModel, target: FrozenTarget, log: BanditLog) -> float:
    """Exact per-impression click rate of ``target`` on the log's users and positions."""
    total = 0.0
    users = log.extra["user_idx"].astype(np.int64)
    pos = log.positions[log.position_idx]
    for rows in iter_chunks(log.n, model.n_items):
        pi = target.probs(log, rows)
        for p in np.unique(pos[rows]):
            m = pos[rows] == p
            total += float(np.sum(pi[m] * model.all_probs(users[rows][m], int(p))))
    return total / log.n


def replay(
    target: FrozenTarget, log: BanditLog, rng: np.random.Generator, n_boot: int
) -> dict[str, float]:
    """Replay (Li et al. 2011) on a uniformly random log, for slates: an event counts when
    the logged item is in the slate the frozen policy would show — for a policy whose slot
    shows item ``a`` with probability ``pi(a|x)``, that is probability ``k pi(a|x)`` — and the
    estimate is the mean reward of the counted events."""
    users = log.extra["user_idx"].astype(np.int64)
    accepted = np.zeros(log.n, dtype=bool)
    for rows in np.array_split(np.arange(log.n), max(1, log.n // 2048)):
        pi = target.policy.slate_probs(target.model.user_context[users[rows]], target.k)
        in_slate = np.minimum(1.0, target.k * pi[np.arange(len(rows)), log.action_idx[rows]])
        accepted[rows] = rng.random(len(rows)) < in_slate
    r = log.reward
    n_acc = int(accepted.sum())
    value = float(r[accepted].mean()) if n_acc else math.nan
    lo = hi = math.nan
    if n_boot > 0 and n_acc:
        idx = rng.integers(0, log.n, size=(n_boot, log.n))
        acc = accepted[idx]
        with np.errstate(invalid="ignore"):
            boots = (r[idx] * acc).sum(axis=1) / acc.sum(axis=1)
        lo, hi = percentile_ci(boots)
    return {"value": value, "ci_low": lo, "ci_high": hi, "accepted_events": n_acc}


def run_offline(
    model: ClickModel,
    policies: Sequence[ContextualPolicy],
    *,
    k: int,
    logged: BanditLog | None = None,
    random_log: BanditLog | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Offline estimates of each frozen policy next to its exact value (see module doc)."""
    rows = []
    for j, policy in enumerate(policies):
        target = FrozenTarget(policy, model, k)
        row: dict[str, Any] = {"policy": policy.name}
        if random_log is not None:
            row["true_value_random_log"] = true_value(model, target, random_log)
            row["replay"] = replay(
                target, random_log, np.random.default_rng([seed, 100 + j]), n_boot
            )
            row["replay"]["error"] = row["replay"]["value"] - row["true_value_random_log"]
        if logged is not None:
            row["true_value_logged"] = true_value(model, target, logged)
            est, diag, warns = estimate(
                logged,
                target,
                estimators=make_estimators(["ips", "snips", "dr"]),
                n_boot=n_boot,
                seed=seed + j,
            )
            for e in est:
                row[e["estimator"]] = {kk: e[kk] for kk in ("value", "ci_low", "ci_high")}
                row[e["estimator"]]["error"] = e["value"] - row["true_value_logged"]
            row["max_weight"] = diag["max_weight"]
            row["effective_sample_size"] = diag["effective_sample_size"]
            row["target_share_never_logged"] = diag["target_share_never_logged"]
        rows.append(row)
    return rows
