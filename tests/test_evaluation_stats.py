"""A/B statistics and posteriors: closed forms, simulation checks, property tests."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import digamma, polygamma

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.routing.abtest import (
    msprt_statistic,
    sample_size_two_proportions,
    srm_pvalue,
    two_proportion_ztest,
)
from rtml_cli.evaluation.routing.arms import BernoulliArms
from rtml_cli.evaluation.routing.policies import Settings, make_policy
from rtml_cli.evaluation.routing.posterior import digamma_trigamma, prob_best
from rtml_cli.evaluation.routing.runner import run_policy

Z_975 = 1.959963984540054
Z_80 = 0.8416212335729143


def test_sample_size_matches_the_two_proportion_formula():
    p1, p2 = 0.040, 0.045
    pbar = (p1 + p2) / 2
    by_hand = (
        Z_975 * math.sqrt(2 * pbar * (1 - pbar)) + Z_80 * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    ) ** 2 / (p2 - p1) ** 2
    n_a, n_b = sample_size_two_proportions(p1, p2, alpha=0.05, power=0.8)
    assert n_a == n_b == math.ceil(by_hand) == 25_551


def test_sample_size_with_an_allocation_ratio():
    p1, p2, k = 0.10, 0.12, 3.0
    pbar = (p1 + k * p2) / (1 + k)
    by_hand = (
        Z_975 * math.sqrt(pbar * (1 - pbar) * (1 + 1 / k))
        + Z_80 * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2) / k)
    ) ** 2 / (p2 - p1) ** 2
    n_a, n_b = sample_size_two_proportions(p1, p2, alpha=0.05, power=0.8, ratio=k)
    assert n_a == math.ceil(by_hand)
    assert n_b == math.ceil(k * n_a)


def test_sample_size_gives_the_stated_power_by_simulation():
    p1, p2 = 0.10, 0.13
    n, _ = sample_size_two_proportions(p1, p2, alpha=0.05, power=0.8)
    rng = np.random.default_rng(7)
    sims = 20_000
    a = rng.binomial(n, p1, sims)
    b = rng.binomial(n, p2, sims)
    _, p = two_proportion_ztest(a, np.full(sims, n), b, np.full(sims, n))
    power = float(np.mean(p < 0.05))
    assert 0.78 <= power <= 0.83  # SE of the estimate ~0.003


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"alpha": 0.0}, "--alpha"),
        ({"alpha": 1.5}, "--alpha"),
        ({"power": 1.0}, "--power"),
        ({"power": 0.01, "alpha": 0.05}, "larger than --alpha"),
    ],
)
def test_sample_size_rejects_bad_alpha_and_power(kwargs, message):
    with pytest.raises(UsageError, match=message):
        sample_size_two_proportions(0.1, 0.2, **kwargs)


def test_sample_size_rejects_a_zero_effect():
    with pytest.raises(UsageError, match="non-zero"):
        sample_size_two_proportions(0.1, 0.1)


def test_ztest_false_positive_rate_is_alpha_under_equal_arms():
    rng = np.random.default_rng(3)
    n, sims = 5_000, 20_000
    a = rng.binomial(n, 0.05, sims)
    b = rng.binomial(n, 0.05, sims)
    _, p = two_proportion_ztest(a, np.full(sims, n), b, np.full(sims, n))
    assert 0.04 <= float(np.mean(p < 0.05)) <= 0.06


def test_srm_flags_a_broken_split_and_passes_a_fair_one():
    assert srm_pvalue(np.array([5000, 5000]), np.array([1, 1])) == pytest.approx(1.0)
    assert srm_pvalue(np.array([5200, 4800]), np.array([1, 1])) < 0.001
    assert srm_pvalue(np.array([9000, 1000]), np.array([0.9, 0.1])) == pytest.approx(1.0)


def test_msprt_is_one_without_data_and_grows_with_evidence():
    assert msprt_statistic(0.0, 0.0, 0.0, 0.0, tau=0.01) == 0.0
    weak = msprt_statistic(np.array(50.0), 1000, np.array(55.0), 1000, tau=0.01)
    strong = msprt_statistic(np.array(500.0), 10_000, np.array(700.0), 10_000, tau=0.01)
    assert weak < 1.0 < 20.0 < strong


def test_sequential_ab_false_positive_rate_at_most_alpha_under_equal_arms():
    """Peeking after every batch must not inflate the false-positive rate of the mSPRT."""
    arms = BernoulliArms(["a", "b"], np.array([0.05, 0.05]))
    settings_ = Settings(n_arms=2, baseline=0.05, mde=0.01, alpha=0.05)
    run = run_policy(
        make_policy("ab-sequential", settings_),
        arms,
        horizon=60_000,
        seeds=1_000,
        batch_size=500,
        seed=11,
    )
    # Every decision here is a false positive. alpha = 0.05; 3 SE of a 1,000-run rate ~0.02.
    assert run.decided.mean() <= 0.05 + 0.02


def test_naive_peeking_does_inflate_false_positives():
    """The reason the sequential test exists: a z-test checked after every batch fails."""
    rng = np.random.default_rng(5)
    seeds, batches, size = 1_000, 60, 1_000
    a = rng.binomial(size, 0.05, (seeds, batches)).cumsum(axis=1)
    b = rng.binomial(size, 0.05, (seeds, batches)).cumsum(axis=1)
    n = size * np.arange(1, batches + 1)
    _, p = two_proportion_ztest(a, n, b, n)
    assert (p < 0.05).any(axis=1).mean() > 0.15


def test_digamma_trigamma_match_scipy():
    x = np.concatenate([np.linspace(1, 10, 500), np.geomspace(10, 1e9, 500)])
    psi, tri = digamma_trigamma(x)
    np.testing.assert_allclose(psi, digamma(x), rtol=0, atol=1e-8)
    np.testing.assert_allclose(tri, polygamma(1, x), rtol=1e-8)


@pytest.mark.parametrize(
    "arms",
    [
        [(3, 50), (4, 49)],
        [(21, 480), (25, 470)],
        [(400, 10_000), (470, 10_000)],
        [(30, 600), (40, 600), (35, 600)],
    ],
)
def test_prob_best_matches_monte_carlo(arms):
    a = np.array([[x[0] for x in arms]], float)
    b = np.array([[x[1] for x in arms]], float)
    rng = np.random.default_rng(0)
    draws = rng.beta(a[0], b[0], size=(200_000, len(arms)))
    exact = np.bincount(draws.argmax(axis=1), minlength=len(arms)) / draws.shape[0]
    np.testing.assert_allclose(prob_best(a, b)[0], exact, atol=0.015)


@pytest.mark.parametrize(
    "arms", [[(1, 51), (6, 46)], [(5, 100), (5, 100), (5, 100), (9, 100)], [(2, 2000), (6, 2000)]]
)
def test_prob_best_with_few_successes_errs_on_the_cautious_side(arms):
    """With a handful of successes the logit-normal approximation under-states the leader."""
    a = np.array([[x[0] for x in arms]], float)
    b = np.array([[x[1] for x in arms]], float)
    rng = np.random.default_rng(1)
    draws = rng.beta(a[0], b[0], size=(200_000, len(arms)))
    exact = np.bincount(draws.argmax(axis=1), minlength=len(arms)) / draws.shape[0]
    leader = int(np.argmax(exact))
    approx = prob_best(a, b)[0, leader]
    assert exact[leader] - 0.04 <= approx <= exact[leader] + 0.005


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5_000), st.integers(0, 5_000)), min_size=2, max_size=5).map(
        np.array
    )
)
def test_prob_best_is_a_distribution_and_symmetric(pairs):
    alpha = 1.0 + pairs[None, :, 0]
    beta = 1.0 + pairs[None, :, 1]
    p = prob_best(alpha, beta)
    assert np.all(p >= -1e-12) and np.all(p <= 1 + 1e-12)
    assert p.sum() == pytest.approx(1.0)
    reversed_ = prob_best(alpha[:, ::-1], beta[:, ::-1])
    np.testing.assert_allclose(reversed_[0, ::-1], p[0], atol=1e-9)
