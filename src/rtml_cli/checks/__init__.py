"""Contract checks for every plug-in kind, shipped with the package (as river's ``checks``).

A plug-in's own tests can import and run them; ``tests/test_registry.py`` runs them over
every registered entry of every registry listed in :func:`suites`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rtml_cli.registry import Registry


@dataclass(frozen=True)
class Suite:
    """A registry and the checks every one of its entries must pass."""

    registry: Registry[Any]
    checks: tuple[Callable[[Any], None], ...]  # each takes a registry Entry; raises on failure


def suites() -> list[Suite]:
    """Every registry with its contract checks, in migration-stage order.

    Imported here, not at module top: the checks load heavy libraries and a tiny world.
    """
    from rtml_cli.checks import contextual, detectors, ope, routing, schedules, strategies

    return [
        strategies.SUITE,  # Stages 1-3: serving strategies (rtml simulate)
        routing.SUITE,  # bandits vs A/B routing policies (rtml evaluate)
        ope.ESTIMATOR_SUITE,  # off-policy estimators (rtml evaluate ope)
        ope.TARGET_POLICY_SUITE,
        ope.REWARD_MODEL_SUITE,
        contextual.SUITE,  # contextual bandit policies (rtml evaluate contextual)
        detectors.SUITE,  # drift detectors (rtml drift, triggered retraining)
        schedules.SUITE,  # retraining schedules (rtml retrain)
    ]
