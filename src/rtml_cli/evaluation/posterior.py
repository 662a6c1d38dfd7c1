"""Beta posteriors of per-arm reward rates and the probability that each arm is best.

``prob_best`` is the quantity both Thompson sampling (its allocation
probability: a request goes to arm k with exactly P(k is best)) and the
stopping rule need, for every seed after every batch. Monte Carlo over Beta
draws would dominate the run time, so it is computed by quadrature on a normal
approximation of each posterior *on the logit scale*, where Beta posteriors are
close to normal (logit X ~ log-F, mean digamma(a) - digamma(b), variance
trigamma(a) + trigamma(b)). P(k best) is invariant to that monotone transform,
so the only error is the normal approximation; the test suite bounds it against
exact Monte Carlo.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def _hermite_nodes(n: int) -> tuple[np.ndarray, np.ndarray]:
    nodes, weights = np.polynomial.hermite_e.hermegauss(n)
    return nodes, weights / weights.sum()


def logit_moments(alpha: np.ndarray, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of logit(X) for X ~ Beta(alpha, beta)."""
    from scipy.special import digamma, zeta

    mean = digamma(alpha) - digamma(beta)
    var = zeta(2.0, alpha) + zeta(2.0, beta)  # trigamma
    return mean, np.sqrt(var)


def prob_best(alpha: np.ndarray, beta: np.ndarray, *, nodes: int = 32) -> np.ndarray:
    """P(arm k has the highest rate) under independent Beta(alpha, beta) posteriors.

    ``alpha`` and ``beta`` have shape (seeds, arms); the result has the same shape
    and each row sums to 1. Two arms: closed form; more: Gauss-Hermite quadrature.
    """
    from scipy.special import ndtr

    alpha = np.asarray(alpha, dtype=float)
    beta = np.asarray(beta, dtype=float)
    if alpha.shape[0] == 0:
        return np.zeros_like(alpha)
    mean, sd = logit_moments(alpha, beta)
    if alpha.shape[1] == 2:
        p1 = ndtr((mean[:, 1] - mean[:, 0]) / np.hypot(sd[:, 0], sd[:, 1]))
        return np.stack([1.0 - p1, p1], axis=1)
    z, w = _hermite_nodes(nodes)
    x = mean[:, :, None] + sd[:, :, None] * z  # (S, K, G): draws of arm k's logit
    # P(arm j < x) for every pair (k, j): (S, K, K, G)
    cdf = ndtr((x[:, :, None, :] - mean[:, None, :, None]) / sd[:, None, :, None])
    k = alpha.shape[1]
    cdf[:, np.arange(k), np.arange(k), :] = 1.0
    p = cdf.prod(axis=2) @ w  # (S, K)
    total = p.sum(axis=1, keepdims=True)
    return p / np.where(total > 0, total, 1.0)


def posterior_draws(
    alpha: np.ndarray, beta: np.ndarray, draws: int, rng: np.random.Generator
) -> np.ndarray:
    """Approximate posterior draws of the rates, shape (seeds, draws, arms) (logit-normal)."""
    from scipy.special import expit

    mean, sd = logit_moments(np.asarray(alpha, float), np.asarray(beta, float))
    z = rng.standard_normal((mean.shape[0], draws, mean.shape[1]))
    return expit(mean[:, None, :] + sd[:, None, :] * z)


def value_remaining(
    alpha: np.ndarray, beta: np.ndarray, rng: np.random.Generator, *, draws: int = 400
) -> np.ndarray:
    """95th percentile of the relative "value remaining" (Scott 2015), per seed.

    value remaining = (max_k theta_k - theta_leader) / theta_leader over posterior
    draws, where the leader is the arm most likely to be best. Small means that
    even if the leader is not the best arm, switching would gain little.
    """
    theta = posterior_draws(alpha, beta, draws, rng)
    leader = np.argmax(prob_best(alpha, beta), axis=1)
    lead = np.take_along_axis(theta, leader[:, None, None], axis=2)[:, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        remaining = (theta.max(axis=2) - lead) / lead
    return np.quantile(np.nan_to_num(remaining, nan=np.inf), 0.95, axis=1)
