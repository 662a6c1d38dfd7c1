"""Drift detectors: each scores one feature's reference vs current distribution.

A :class:`FeatureDistribution` holds the same bins counted on both sides (and, for a
numeric feature, the raw values for the KS test); ``continual.drift`` builds them. The
registry ``DETECTORS`` names the detectors (``rtml_cli.checks.detectors`` is their
contract):

- ``psi`` — population stability index, ``sum((c - r) * ln(c / r))`` over bin
  shares with a small floor (``PSI_FLOOR``) for empty bins. Rule of thumb:
  < 0.1 no drift, 0.1–0.2 moderate, > 0.2 significant (default threshold 0.2).
- ``ks`` — a two-sample test: Kolmogorov–Smirnov (``scipy.stats.ks_2samp``) on the
  raw values of a numeric feature, Pearson's chi-squared test of homogeneity on the
  bin counts of a categorical one (KS needs an ordering categories do not have).
  Drift when the p-value is below alpha (default 0.01).
- ``js`` — Jensen–Shannon distance (``scipy.spatial.distance.jensenshannon``,
  base 2, so in [0, 1]) between the bin shares. Default threshold 0.1.

numpy and scipy are imported where they are used, so the CLI can take its defaults and
help text from ``DETECTORS`` without loading them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry

if TYPE_CHECKING:
    import numpy as np

PSI_FLOOR = 1e-4  # share given to a bin that is empty on one side (PSI would be infinite)
PSI_MODERATE = 0.1
PSI_SIGNIFICANT = 0.2


@dataclass(frozen=True)
class FeatureDistribution:
    """One feature counted on the same bins in the reference and the current sample."""

    name: str
    kind: str  # "numeric" | "categorical"
    bins: tuple[str, ...]
    reference_counts: np.ndarray
    current_counts: np.ndarray
    reference_values: np.ndarray | None = None  # numeric only: non-null raw values (for KS)
    current_values: np.ndarray | None = None
    unseen_share: float = (
        0.0  # categorical: share of current rows in categories the reference lacks
    )

    @property
    def reference_rows(self) -> int:
        return int(self.reference_counts.sum())

    @property
    def current_rows(self) -> int:
        return int(self.current_counts.sum())

    def shares(self, floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
        """Bin shares on each side; with ``floor``, empty bins get ``floor`` and shares renormalise."""
        import numpy as np

        out = []
        for counts in (self.reference_counts, self.current_counts):
            total = counts.sum()
            share = counts / total if total else np.full(len(counts), 1.0 / max(len(counts), 1))
            if floor:
                share = np.maximum(share, floor)
                share = share / share.sum()
            out.append(share.astype(np.float64))
        return out[0], out[1]


@dataclass(frozen=True)
class DetectorResult:
    detector: str
    test: str  # psi | ks | chi2 | js
    value: float  # the statistic compared (psi, KS D / chi2, JS distance)
    threshold: float
    drift: bool
    p_value: float | None = None
    severity: str = ""  # none | moderate | significant (psi), else drift / none

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "value": self.value,
            "p_value": self.p_value,
            "threshold": self.threshold,
            "drift": self.drift,
            "severity": self.severity,
        }


class Detector:
    """Scores one feature's reference vs current distribution; ``drift`` says if it moved.

    Subclasses set ``name``, ``default_threshold``, ``threshold_help`` and implement
    ``check_threshold`` and ``score``. Scores must be symmetric in reference/current
    and exactly "no drift" for identical inputs (the contract test checks both).
    """

    name: ClassVar[str]
    default_threshold: ClassVar[float]
    threshold_help: ClassVar[str]

    def __init__(self, threshold: float | None = None) -> None:
        value = self.default_threshold if threshold is None else float(threshold)
        if not math.isfinite(value):
            raise UsageError(f"{self.name} threshold must be a finite number, got {value}")
        self.check_threshold(value)
        self.threshold = value

    def check_threshold(self, value: float) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, dist: FeatureDistribution) -> DetectorResult:  # pragma: no cover
        raise NotImplementedError


class PSIDetector(Detector):
    name = "psi"
    default_threshold = PSI_SIGNIFICANT
    threshold_help = "PSI above which a feature drifted, > 0 (0.1 moderate, 0.2 significant)"

    def check_threshold(self, value: float) -> None:
        if value <= 0:
            raise UsageError(
                f"--psi-threshold must be > 0 (0.1 moderate, 0.2 significant), got {value}"
            )

    def score(self, dist: FeatureDistribution) -> DetectorResult:
        import numpy as np

        ref, cur = dist.shares(floor=PSI_FLOOR)
        value = float(np.sum((cur - ref) * np.log(cur / ref)))
        value = max(value, 0.0)
        if value < PSI_MODERATE:
            severity = "none"
        elif value <= PSI_SIGNIFICANT:
            severity = "moderate"
        else:
            severity = "significant"
        return DetectorResult(
            self.name, "psi", value, self.threshold, value > self.threshold, severity=severity
        )


class KSDetector(Detector):
    name = "ks"
    default_threshold = 0.01
    threshold_help = "significance level alpha of the KS / chi-squared test, in (0, 1)"

    def check_threshold(self, value: float) -> None:
        if not 0 < value < 1:
            raise UsageError(f"--ks-alpha must be in (0, 1), got {value}")

    def score(self, dist: FeatureDistribution) -> DetectorResult:
        if dist.kind == "numeric" and dist.reference_values is not None:
            ref, cur = dist.reference_values, dist.current_values
            if len(ref) == 0 or cur is None or len(cur) == 0:
                return DetectorResult(self.name, "ks", 0.0, self.threshold, False, 1.0, "none")
            from scipy.stats import ks_2samp

            res = ks_2samp(ref, cur)
            stat, p_value, test = float(res.statistic), float(res.pvalue), "ks"
        else:
            import numpy as np

            table = np.vstack([dist.reference_counts, dist.current_counts]).astype(np.float64)
            table = table[:, table.sum(axis=0) > 0]
            if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
                stat, p_value = 0.0, 1.0
            else:
                from scipy.stats import chi2_contingency

                res = chi2_contingency(table, correction=False)
                stat, p_value = float(res.statistic), float(res.pvalue)
            test = "chi2"
        drift = p_value < self.threshold
        return DetectorResult(
            self.name, test, stat, self.threshold, drift, p_value, "drift" if drift else "none"
        )


class JSDetector(Detector):
    name = "js"
    default_threshold = 0.1
    threshold_help = "Jensen-Shannon distance (base 2) above which a feature drifted, in (0, 1)"

    def check_threshold(self, value: float) -> None:
        if not 0 < value < 1:
            raise UsageError(f"--js-threshold must be in (0, 1), got {value}")

    def score(self, dist: FeatureDistribution) -> DetectorResult:
        from scipy.spatial.distance import jensenshannon

        ref, cur = dist.shares()
        value = float(jensenshannon(ref, cur, base=2))
        if not math.isfinite(value):  # both sides empty
            value = 0.0
        value = min(max(value, 0.0), 1.0)
        drift = value > self.threshold
        return DetectorResult(
            self.name, "js", value, self.threshold, drift, severity="drift" if drift else "none"
        )


DETECTORS: Registry[type[Detector]] = Registry("drift detector")
DETECTORS.add("psi", PSIDetector, description="population stability index of the bin shares")
DETECTORS.add("ks", KSDetector, description="KS test (numeric) / chi-squared test (categorical)")
DETECTORS.add("js", JSDetector, description="Jensen-Shannon distance (base 2) of the bin shares")


def make_detectors(
    names: Iterable[str] | None = None, thresholds: dict[str, float | None] | None = None
) -> list[Detector]:
    """Instantiate detectors by name (default: every registered one); unknown names and
    bad thresholds raise ``UsageError``."""
    thresholds = thresholds or {}
    out = [
        DETECTORS.get(name)(thresholds.get(name))
        for name in (DETECTORS.names() if names is None else names)
    ]
    if not out:
        raise UsageError("no drift detector selected: choose from " + ", ".join(DETECTORS))
    return out


def parse_detectors(text: str, thresholds: dict[str, float | None]) -> list[Detector]:
    """``--detectors psi,js`` with each detector's threshold option, as detectors."""
    return make_detectors([n.strip() for n in text.split(",") if n.strip()], thresholds)
