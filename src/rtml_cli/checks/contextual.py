"""The contract of a contextual policy (``evaluation.contextual.CONTEXTUAL_POLICIES``).

A fresh policy from its factory carries the registered name; ``select`` returns ``k``
distinct valid items per request; it learns from impressions without failing; its frozen
``slate_probs`` is a distribution over items per request; the same seed gives the same
choices.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtml_cli.checks import Suite
from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.evaluation.contextual.policies import CONTEXTUAL_POLICIES
from rtml_cli.registry import Entry


def check_contract(entry: Entry[Any]) -> None:
    model = ClickModel.random(np.random.default_rng(1), n_users=50, n_items=12)
    X = model.user_context[:20]
    picks = []
    for _ in range(2):
        policy = entry.obj()
        assert policy.name == entry.name, (policy.name, entry.name)
        rng = np.random.default_rng(5)
        policy.reset(model.n_items, X.shape[1], rng)
        slate = policy.select(X, 3, rng)
        assert slate.shape == (20, 3)
        assert all(len(set(row)) == 3 for row in slate.tolist())  # distinct items
        assert slate.min() >= 0 and slate.max() < model.n_items
        clicks = (rng.random(60) < 0.3).astype(float)
        policy.update(np.repeat(X, 3, axis=0), slate.ravel(), clicks)
        probs = policy.slate_probs(X, 3)
        assert probs.shape == (20, model.n_items)
        assert np.allclose(probs.sum(axis=1), 1.0) and (probs >= 0).all()
        picks.append(policy.select(X, 3, rng))
    assert np.array_equal(picks[0], picks[1])  # same seed, same choices


def check_described(entry: Entry[Any]) -> None:
    assert entry.description, f"contextual policy {entry.name} has no description"


SUITE = Suite(CONTEXTUAL_POLICIES, (check_described, check_contract))
