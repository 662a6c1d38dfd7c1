"""The statistics of an A/B test done properly: power, sample size, tests, SRM.

* ``sample_size_two_proportions``: the closed-form per-arm sample size for a
  two-sided two-proportion z-test (pooled variance under H0, unpooled under H1),
  with an allocation ratio.
* ``two_proportion_ztest``: the fixed-horizon test and a Wald confidence
  interval for the difference, vectorised over seeds.
* ``msprt_statistic``: the mixture sequential probability ratio test of Johari
  et al. (2017, "Peeking at A/B tests"), which gives always-valid p-values: the
  test may be looked at after every batch and still keeps its false-positive
  rate at or under alpha.
* ``srm_pvalue``: the sample-ratio-mismatch chi-square test of the traffic split.
"""

from __future__ import annotations

import math

import numpy as np

from rtml_cli.errors import UsageError


def check_alpha_power(alpha: float, power: float) -> None:
    """Raise ``UsageError`` unless 0 < alpha < 1 and 0 < power < 1 and power > alpha."""
    if not (0.0 < alpha < 1.0):
        raise UsageError(f"--alpha must be strictly between 0 and 1, got {alpha}")
    if not (0.0 < power < 1.0):
        raise UsageError(f"--power must be strictly between 0 and 1, got {power}")
    if power <= alpha:
        raise UsageError(f"--power ({power}) must be larger than --alpha ({alpha})")


def sample_size_two_proportions(
    p_control: float,
    p_treatment: float,
    *,
    alpha: float = 0.05,
    power: float = 0.8,
    ratio: float = 1.0,
) -> tuple[int, int]:
    """Per-arm sample sizes (control, treatment) for a two-sided two-proportion z-test.

    ``ratio`` = n_treatment / n_control. The classic formula (Fleiss, without
    continuity correction):

        n_c = [z_(1-a/2) sqrt(pbar qbar (1 + 1/k)) + z_(1-b) sqrt(p_c q_c + p_t q_t / k)]^2 / d^2

    with ``pbar = (p_c + k p_t) / (1 + k)``, ``d = p_t - p_c``; rounded up.
    """
    from scipy.stats import norm

    check_alpha_power(alpha, power)
    for p in (p_control, p_treatment):
        if not (0.0 <= p <= 1.0):
            raise UsageError(f"rates must lie in [0, 1], got {p}")
    if ratio <= 0:
        raise UsageError(f"allocation ratio must be positive, got {ratio}")
    delta = p_treatment - p_control
    if delta == 0:
        raise UsageError("the minimum detectable effect must be non-zero")
    k = ratio
    pbar = (p_control + k * p_treatment) / (1 + k)
    z_a = norm.ppf(1 - alpha / 2)
    z_b = norm.ppf(power)
    root = z_a * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k)) + z_b * math.sqrt(
        p_control * (1 - p_control) + p_treatment * (1 - p_treatment) / k
    )
    n_control = math.ceil(root**2 / delta**2)
    return n_control, math.ceil(k * n_control)


def two_proportion_ztest(
    success_a: np.ndarray, n_a: np.ndarray, success_b: np.ndarray, n_b: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided pooled z-test of p_b - p_a, element-wise. Returns (z, p-value).

    Works for fractional "successes" (mean rewards in [0, 1]) as an approximation.
    """
    from scipy.special import ndtr

    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = success_a / n_a
        pb = success_b / n_b
        pooled = (success_a + success_b) / (n_a + n_b)
        se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
        z = np.where(se > 0, (pb - pa) / se, 0.0)
    z = np.nan_to_num(z, nan=0.0)
    return z, 2 * ndtr(-np.abs(z))


def diff_confidence_interval(
    success_a: np.ndarray,
    n_a: np.ndarray,
    success_b: np.ndarray,
    n_b: np.ndarray,
    *,
    alpha: float = 0.05,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wald (unpooled) estimate and (1 - alpha) CI of p_b - p_a: (effect, low, high)."""
    from scipy.stats import norm

    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        pa = success_a / n_a
        pb = success_b / n_b
        se = np.sqrt(pa * (1 - pa) / n_a + pb * (1 - pb) / n_b)
    effect = pb - pa
    half = norm.ppf(1 - alpha / 2) * se
    return effect, effect - half, effect + half


def msprt_statistic(
    success_a: np.ndarray,
    n_a: np.ndarray,
    success_b: np.ndarray,
    n_b: np.ndarray,
    *,
    tau: float,
) -> np.ndarray:
    """The mSPRT likelihood ratio for H0: p_a = p_b with a N(0, tau^2) mixture on the effect.

    With V the variance of the estimated effect (pooled under H0) and d the
    observed effect, ``Lambda = sqrt(V / (V + tau^2)) exp(tau^2 d^2 / (2 V (V + tau^2)))``.
    Rejecting H0 the first time ``Lambda >= 1 / alpha`` keeps the type-I error at
    or under alpha however often it is checked (Ville's inequality).
    """
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = success_b / n_b - success_a / n_a
        pooled = (success_a + success_b) / (n_a + n_b)
        var = pooled * (1 - pooled) * (1 / n_a + 1 / n_b)
        t2 = tau * tau
        log_lambda = 0.5 * np.log(var / (var + t2)) + t2 * d * d / (2 * var * (var + t2))
    ok = (n_a > 0) & (n_b > 0) & (var > 0)
    return np.where(ok, np.exp(np.minimum(np.nan_to_num(log_lambda, nan=0.0), 700.0)), 0.0)


def srm_pvalue(counts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Chi-square goodness-of-fit p-value of observed per-arm traffic against the intended split.

    ``counts`` has shape (..., arms); returns shape (...). A p-value under 0.001
    is the usual sample-ratio-mismatch alarm: the router, the logging or the
    bot filter is broken and the test's result cannot be trusted.
    """
    from scipy.stats import chi2

    counts = np.asarray(counts, dtype=float)
    weights = np.asarray(weights, dtype=float)
    total = counts.sum(axis=-1, keepdims=True)
    expected = total * (weights / weights.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(expected > 0, (counts - expected) ** 2 / expected, 0.0).sum(axis=-1)
    return chi2.sf(stat, df=counts.shape[-1] - 1)


SRM_ALARM_P = 0.001
