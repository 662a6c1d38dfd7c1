"""Contract checks for every plug-in kind, shipped with the package (as river's ``checks``).

A plug-in's own tests can import and run them; ``tests/test_contracts.py`` runs them over
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
    """Every registry with its contract checks (imported lazily: heavy modules)."""
    found: list[Suite] = []
    from rtml_cli.checks import detectors

    found.append(detectors.SUITE)
    from rtml_cli.checks import schedules

    found.append(schedules.SUITE)
    # each stage package adds its suite here, e.g.:
    #   from rtml_cli.checks import strategies
    #   found.append(strategies.SUITE)
    return found
