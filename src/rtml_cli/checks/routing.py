"""The contract of a routing policy (``evaluation.routing.ROUTING_POLICIES``).

On any experiment state (per-seed traffic and reward sums), ``allocation`` gives each seed
a probability row over the arms and ``decide`` a bool and a valid arm per seed.
``check_step`` is the check for one state (a property test can feed it generated states);
``check_contract`` runs it over a fixed set of states, edge cases included.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rtml_cli.checks import Suite
from rtml_cli.evaluation.routing.policies import ROUTING_POLICIES, Settings, Step, make_policy
from rtml_cli.evaluation.routing.posterior import prob_best
from rtml_cli.registry import Entry


def check_named(entry: Entry[Any]) -> None:
    """Registered under its own ``name``, with a one-line summary and a kind."""
    cls = entry.obj
    assert cls.name == entry.name, (cls.name, entry.name)
    assert cls.summary and entry.description == cls.summary
    assert cls.kind in ("bandit", "ab"), cls.kind


def check_step(name: str, pulls: np.ndarray, rewards: np.ndarray) -> None:
    """allocation: a probability row per seed; decide: a bool and a valid arm per seed."""
    k = pulls.shape[1]
    policy = make_policy(name, Settings(n_arms=k, baseline=0.1, mde=0.05))
    rng = np.random.default_rng(0)
    step = Step(int(pulls[0].sum()), pulls, rewards)
    step.p_best = prob_best(step.alpha, step.beta)
    alloc = policy.allocation(step, rng)
    assert alloc.shape == pulls.shape, (alloc.shape, pulls.shape)
    assert np.all(alloc >= 0)
    np.testing.assert_allclose(alloc.sum(axis=1), 1.0)
    decision = policy.decide(step, rng)
    assert decision.decided.shape == (pulls.shape[0],) and decision.decided.dtype == bool
    assert np.all((decision.winner >= 0) & (decision.winner < k))


def states(n_random: int = 25, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Experiment states (pulls >= rewards >= 0): nothing served yet, one arm starved, ties,
    and random ones with 2-4 arms and 1-6 seeds."""
    rng = np.random.default_rng(seed)
    out = [
        (np.zeros((3, 2)), np.zeros((3, 2))),
        (np.array([[500.0, 0.0, 40.0]]), np.array([[50.0, 0.0, 4.0]])),
        (np.full((2, 4), 200.0), np.full((2, 4), 20.0)),
    ]
    for _ in range(n_random):
        k, seeds = int(rng.integers(2, 5)), int(rng.integers(1, 7))
        pulls = rng.integers(0, 1001, size=(seeds, k)).astype(float)
        rewards = np.minimum(rng.integers(0, 501, size=(seeds, k)), pulls).astype(float)
        out.append((pulls, rewards))
    return out


def check_contract(entry: Entry[Any]) -> None:
    for pulls, rewards in states():
        check_step(entry.name, pulls, rewards)


SUITE = Suite(ROUTING_POLICIES, (check_named, check_contract))
