"""Online mode: each contextual policy serves the same request stream in the known world.

The world clicks each shown item with its true probability (``ClickModel.prob``, position
bias included) and a policy learns from its ``k`` impressions only — feedback on items it
never shows does not exist. Policies update after every batch of ``batch_size`` requests, as
a serving system that refreshes its model every few seconds would. Reported: CTR,
cumulative (pseudo-)regret against the oracle that shows each user their k truly most
clickable items, long-tail coverage, and the cost of suboptimal actions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import UsageError
from rtml_cli.evaluation.contextual.policies import ContextualPolicy, top_k


@dataclass
class OnlineRun:
    """One policy's online run: click rates, regret, long-tail reach, the regret curve."""

    policy: str
    requests: int
    impressions: int
    clicks: int
    ctr: float
    expected_ctr: float
    oracle_ctr: float
    cumulative_regret: float
    regret_per_1k_requests: float
    suboptimal_share: float
    tail_impression_share: float
    tail_click_share: float
    catalogue_coverage: float
    regret_curve: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def one_blas_thread() -> Any:
    """A context in which BLAS uses one thread.

    The per-batch products here are tiny ((32 x d) @ (d x items)); extra BLAS threads only
    spin-wait on them, which on a busy 2-core machine made LinUCB ~20x slower.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def popular_items(model: ClickModel, top_n: int) -> np.ndarray:
    """The ``top_n`` most popular items of the world (by its popularity term)."""
    return np.argsort(-model.popularity_logit, kind="stable")[:top_n]


@dataclass
class _Stream:
    """What every policy is measured against: the users, the oracle, the long tail."""

    users: np.ndarray
    positions: np.ndarray
    oracle_value: np.ndarray  # expected clicks of each request's oracle slate
    oracle_sets: np.ndarray  # (requests, k) each user's k truly most clickable items
    tail: np.ndarray  # bool per item: outside the top_n most popular
    marks: np.ndarray  # request counts at which the regret curve is sampled


def run_online(
    model: ClickModel,
    policies: Sequence[ContextualPolicy],
    *,
    requests: int,
    k: int,
    batch_size: int = 32,
    top_n: int,
    seed: int = 0,
    user_weights: np.ndarray | None = None,
    curve_points: int = 50,
) -> list[OnlineRun]:
    """Let each policy serve the same request stream; measure what its exploration buys."""
    if not 1 <= k <= model.n_items:
        raise UsageError(f"--k must be between 1 and the {model.n_items} items of the world")
    if k > model.n_positions:
        raise UsageError(f"--k {k} exceeds the click model's {model.n_positions} positions")
    if requests < 1 or batch_size < 1:
        raise UsageError("--requests and --batch-size must be positive")
    stream = _stream(model, requests, k, top_n, seed, user_weights, curve_points)
    return [
        _serve(
            model,
            policy,
            stream,
            k=k,
            batch_size=batch_size,
            prng=np.random.default_rng([seed, j + 1]),
        )
        for j, policy in enumerate(policies)
    ]


def _stream(
    model: ClickModel,
    requests: int,
    k: int,
    top_n: int,
    seed: int,
    user_weights: np.ndarray | None,
    curve_points: int,
) -> _Stream:
    rng = np.random.default_rng(seed)
    p = None if user_weights is None else user_weights / user_weights.sum()
    users = rng.choice(model.n_users, size=requests, p=p)
    positions = np.arange(1, k + 1)
    tail = np.ones(model.n_items, dtype=bool)
    tail[popular_items(model, top_n)] = False
    # The oracle: each user's k truly most clickable items, best first.
    oracle_value = np.zeros(requests)
    oracle_sets = np.zeros((requests, k), dtype=np.int64)
    for start in range(0, requests, 4096):
        u = users[start : start + 4096]
        probs = model.all_probs(u, 1)
        best = top_k(probs, k)
        oracle_sets[start : start + 4096] = best
        oracle_value[start : start + 4096] = model.prob(u[:, None], best, positions[None, :]).sum(1)
    marks = np.unique(np.linspace(0, requests, curve_points + 1).astype(int)[1:])
    return _Stream(users, positions, oracle_value, oracle_sets, tail, marks)


def _serve(
    model: ClickModel,
    policy: ContextualPolicy,
    stream: _Stream,
    *,
    k: int,
    batch_size: int,
    prng: np.random.Generator,
) -> OnlineRun:
    """One policy over the whole stream, learning after every batch."""
    users, positions = stream.users, stream.positions
    requests = users.shape[0]
    X_all = model.user_context
    policy.reset(model.n_items, X_all.shape[1], prng)
    shown = np.zeros(model.n_items)
    clicked = np.zeros(model.n_items)
    expected = np.zeros(requests)
    suboptimal = 0
    total_clicks = 0
    for start in range(0, requests, batch_size):
        u = users[start : start + batch_size]
        X = X_all[u]
        slate = policy.select(X, k, prng)
        prob = model.prob(u[:, None], slate, positions[None, :])
        clicks = (prng.random(prob.shape) < prob).astype(float)
        expected[start : start + len(u)] = prob.sum(axis=1)
        best = stream.oracle_sets[start : start + len(u)]
        suboptimal += int((~(slate[:, :, None] == best[:, None, :]).any(axis=2)).sum())
        items = slate.ravel()
        shown += np.bincount(items, minlength=model.n_items)
        clicked += np.bincount(items, weights=clicks.ravel(), minlength=model.n_items)
        total_clicks += int(clicks.sum())
        policy.update(np.repeat(X, k, axis=0), items, clicks.ravel())
    regret = np.cumsum(stream.oracle_value - expected)
    impressions = requests * k
    return OnlineRun(
        policy=policy.name,
        requests=requests,
        impressions=impressions,
        clicks=total_clicks,
        ctr=total_clicks / impressions,
        expected_ctr=float(expected.sum() / impressions),
        oracle_ctr=float(stream.oracle_value.sum() / impressions),
        cumulative_regret=float(regret[-1]),
        regret_per_1k_requests=float(1000 * regret[-1] / requests),
        suboptimal_share=suboptimal / impressions,
        tail_impression_share=float(shown[stream.tail].sum() / impressions),
        tail_click_share=float(clicked[stream.tail].sum() / max(clicked.sum(), 1)),
        catalogue_coverage=float(np.mean(shown > 0)),
        regret_curve=[float(regret[m - 1]) for m in stream.marks],
    )
