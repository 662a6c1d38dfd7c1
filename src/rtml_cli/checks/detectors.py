"""The contract every drift detector (``continual.drift.DETECTORS``) honours.

A detector scores one feature's reference vs current distribution: exactly "no drift"
for identical samples, drift for a large shift and not for a tiny one, on numeric and
categorical features alike, symmetric in which side is the reference (categorical),
deterministic, and it refuses thresholds that make no sense.
"""

from __future__ import annotations

import math
from typing import Any

from rtml_cli.checks import Suite
from rtml_cli.continual.detectors import DETECTORS
from rtml_cli.registry import Entry


def _pair(shift: float, seed: int = 0, n: int = 4000) -> Any:
    import numpy as np

    from rtml_cli.continual.drift import numeric_distribution

    rng = np.random.default_rng(seed)
    return numeric_distribution("x", rng.normal(0.0, 1.0, n), rng.normal(shift, 1.0, n), bins=10)


def scores_identical_large_and_tiny_shifts(entry: Entry[Any]) -> None:
    """No drift (and for distances a zero value) on identical samples; drift on a large
    shift, none on a tiny one; the same result twice."""
    import numpy as np

    from rtml_cli.continual.drift import numeric_distribution

    cls = entry.obj
    detector = cls()
    assert cls.name == entry.name, f"{cls.__name__}.name is {cls.name!r}, registered {entry.name!r}"
    assert detector.threshold == cls.default_threshold
    same = np.random.default_rng(1).normal(size=3000)
    res = detector.score(numeric_distribution("x", same, same.copy()))
    assert res.drift is False and res.detector == entry.name
    assert math.isfinite(res.value)
    if entry.name != "ks":  # a test statistic, not a distance: not zero on identical samples
        assert abs(res.value) <= 1e-12, res.value
    assert detector.score(_pair(1.5)).drift is True, "a large shift must be drift"
    assert detector.score(_pair(0.0, seed=2)).drift is False, "no shift must not be drift"
    assert detector.score(_pair(0.3)) == detector.score(_pair(0.3)), "not deterministic"


def scores_categories_symmetrically(entry: Entry[Any]) -> None:
    """Identical category counts are no drift, moved mass is drift, and the value does not
    depend on which side is called the reference."""
    from rtml_cli.continual.drift import categorical_distribution

    detector = entry.obj()
    same = categorical_distribution("c", {"a": 50, "b": 50}, {"a": 50, "b": 50})
    moved = categorical_distribution("c", {"a": 500, "b": 500}, {"a": 50, "b": 950})
    swapped = categorical_distribution("c", {"a": 50, "b": 950}, {"a": 500, "b": 500})
    assert detector.score(same).drift is False
    assert detector.score(moved).drift is True
    assert math.isclose(detector.score(swapped).value, detector.score(moved).value, rel_tol=1e-6)


def refuses_bad_thresholds(entry: Entry[Any]) -> None:
    """Negative, zero, NaN and infinite thresholds (and 1 for bounded ones) are usage errors."""
    from rtml_cli.errors import UsageError

    for bad in (-1.0, 0.0, math.nan, math.inf, 1.0 if entry.name != "psi" else -0.5):
        try:
            entry.obj(bad)
        except UsageError:
            continue
        raise AssertionError(f"{entry.name} accepted the threshold {bad}")


CHECKS = (
    scores_identical_large_and_tiny_shifts,
    scores_categories_symmetrically,
    refuses_bad_thresholds,
)

SUITE = Suite(DETECTORS, CHECKS)
