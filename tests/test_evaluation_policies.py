"""Every registered routing policy through the shipped contract on generated states
(``rtml_cli.checks.routing``), then behaviour."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.checks.routing import check_step
from rtml_cli.evaluation.routing.abtest import sample_size_two_proportions
from rtml_cli.evaluation.routing.arms import BernoulliArms, RewardMatrix
from rtml_cli.evaluation.routing.policies import ROUTING_POLICIES as POLICIES
from rtml_cli.evaluation.routing.policies import Settings, Step, make_policy
from rtml_cli.evaluation.routing.posterior import prob_best
from rtml_cli.evaluation.routing.runner import run_policy

ALL = sorted(POLICIES)


def _step(pulls, rewards, requests):
    step = Step(requests, pulls, rewards)
    step.p_best = prob_best(step.alpha, step.beta)
    return step


def test_registry_has_the_issue_policies():
    assert set(ALL) >= {
        "ab",
        "ab-sequential",
        "epsilon-greedy",
        "ucb1",
        "thompson",
        "top-two-thompson",
    }


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=25, deadline=None)
@given(
    data=st.integers(1, 4).flatmap(
        lambda k: st.lists(
            st.lists(st.integers(0, 500), min_size=k + 1, max_size=k + 1), min_size=1, max_size=6
        )
    )
)
def test_policy_contract(name, data):
    """The shipped contract (rtml_cli.checks.routing) on generated experiment states."""
    raw = np.array(data, dtype=float)
    pulls = raw[:, :-1] + raw[:, -1:]  # pulls >= rewards
    rewards = np.minimum(raw[:, :-1], pulls)
    if pulls.shape[1] < 2:
        pulls = np.column_stack([pulls, pulls])
        rewards = np.column_stack([rewards, rewards])
    check_step(name, pulls, rewards)


RATES = np.array([0.05, 0.08])  # arm 1 is best


@pytest.fixture(scope="module")
def bernoulli_runs():
    arms = BernoulliArms(["control", "new"], RATES)
    cfg = Settings(n_arms=2, baseline=0.05, mde=0.03, alpha=0.05, power=0.8)
    return {
        name: run_policy(
            make_policy(name, cfg), arms, horizon=40_000, seeds=300, batch_size=100, seed=3
        )
        for name in ALL
    }


@pytest.mark.parametrize("name", ["epsilon-greedy", "ucb1", "thompson", "top-two-thompson"])
def test_bandits_pick_the_best_arm_at_their_stated_confidence(bernoulli_runs, name):
    run = bernoulli_runs[name]
    assert run.decided.mean() >= 0.97
    picked = (run.winner[run.decided] == 1).mean()
    # stated confidence 0.95; 2 SE of a 300-run rate ~0.025
    assert picked >= 0.95 - 0.025


def test_ab_picks_the_best_arm_at_its_power():
    arms = BernoulliArms(["control", "new"], RATES)
    cfg = Settings(n_arms=2, baseline=0.05, mde=0.03, alpha=0.05, power=0.8)
    policy = make_policy("ab", cfg)
    run = run_policy(policy, arms, horizon=policy.horizon, seeds=3_000, batch_size=500, seed=4)
    assert run.decided.all()
    assert policy.horizon == 2 * sample_size_two_proportions(0.05, 0.08)[0]
    # powered for exactly this effect: 0.8 (3 SE of a 3,000-run rate ~0.022)
    assert abs((run.winner == 1).mean() - 0.8) <= 0.03


def test_sequential_ab_picks_the_best_arm(bernoulli_runs):
    run = bernoulli_runs["ab-sequential"]
    assert run.decided.mean() >= 0.9
    assert (run.winner[run.decided] == 1).mean() >= 0.95


def test_regret_thompson_below_epsilon_greedy_below_ab():
    """The routing itself (no stopping): Thompson's expected regret < epsilon-greedy's < A/B's."""
    arms = BernoulliArms(["control", "new"], RATES)
    cfg = Settings(n_arms=2, baseline=0.05, mde=0.03)
    regret = {
        name: run_policy(
            make_policy(name, cfg), arms, horizon=40_000, seeds=200, seed=5, stop=False
        ).regret.mean()
        for name in ("thompson", "epsilon-greedy", "ab")
    }
    # expected: epsilon-greedy ~ 0.05 * 0.03 * 40,000 = 60, A/B = 0.5 * 0.03 * 40,000 = 600
    assert regret["thompson"] < 0.7 * regret["epsilon-greedy"]
    assert regret["epsilon-greedy"] < 0.3 * regret["ab"]


def test_bandits_lose_fewer_clicks_while_experimenting_than_ab(bernoulli_runs):
    lost = {name: run.clicks_lost.mean() for name, run in bernoulli_runs.items()}
    for name in ("epsilon-greedy", "ucb1", "thompson", "top-two-thompson"):
        assert lost[name] < lost["ab"]


def test_runs_are_deterministic_given_the_seed():
    arms = BernoulliArms(["a", "b"], RATES)
    cfg = Settings(n_arms=2, baseline=0.05, mde=0.03)
    one = run_policy(make_policy("thompson", cfg), arms, horizon=5_000, seeds=20, seed=9)
    two = run_policy(make_policy("thompson", cfg), arms, horizon=5_000, seeds=20, seed=9)
    other = run_policy(make_policy("thompson", cfg), arms, horizon=5_000, seeds=20, seed=10)
    np.testing.assert_array_equal(one.reward, two.reward)
    np.testing.assert_array_equal(one.decision_at, two.decision_at)
    assert not np.array_equal(one.reward, other.reward)


def test_reward_matrix_scores_every_request_exactly_once_when_permuted():
    rng = np.random.default_rng(0)
    matrix = (rng.random((1_000, 3)) < [0.1, 0.2, 0.3]).astype(float)
    source = RewardMatrix(["a", "b", "c"], matrix)
    cfg = Settings(n_arms=3, baseline=0.1, mde=0.1)
    # epsilon = 1: uniform routing; no stopping -> every request routed once per seed
    cfg = Settings(n_arms=3, baseline=0.1, mde=0.1, epsilon=1.0, threshold=0.999999)
    run = run_policy(make_policy("epsilon-greedy", cfg), source, horizon=1_000, seeds=5, stop=False)
    assert run.exp_pulls.sum(axis=1).tolist() == [1_000] * 5
    # routing everything to one arm would earn exactly that arm's column sum
    source.start(1, 1_000, np.random.default_rng(1))
    counts = np.array([[0, 1_000, 0]])
    assert source.pull(counts, 0)[0, 1] == matrix[:, 1].sum()


def test_fast_forward_after_decisions_matches_the_serving_winner():
    arms = BernoulliArms(["a", "b"], RATES)
    cfg = Settings(n_arms=2, baseline=0.05, mde=0.03)
    run = run_policy(make_policy("thompson", cfg), arms, horizon=50_000, seeds=50, seed=2)
    assert run.decided.all()
    gap = RATES.max() - RATES
    after = (50_000 - run.decision_at) * gap[run.winner]
    np.testing.assert_allclose(run.regret, run.clicks_lost + after)
    assert run.curve_requests[-1] == 50_000
    assert run.curve_regret[-1] == pytest.approx(run.regret.mean())


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.lists(st.integers(0, 30), min_size=3, max_size=3), min_size=1, max_size=4),
    chunk=st.sampled_from([1, 7, 4_000_000]),
)
def test_reward_matrix_pull_matches_a_per_request_loop(counts, chunk):
    """Arm k gets the next counts[k] requests of the seed's stream; chunking changes nothing."""
    import rtml_cli.evaluation.routing.arms as arms_module

    counts = np.array(counts)
    size = counts.sum(axis=1).max()
    counts[:, 0] += size - counts.sum(axis=1)  # every seed routes the same batch size
    rng = np.random.default_rng(1)
    matrix = rng.random((200, 3))
    source = RewardMatrix(["a", "b", "c"], matrix, resample="bootstrap")
    source.start(counts.shape[0], max(int(size), 1) + 5, np.random.default_rng(2))
    old = arms_module._CHUNK_CELLS
    arms_module._CHUNK_CELLS = chunk
    try:
        got = source.pull(counts, 5)
    finally:
        arms_module._CHUNK_CELLS = old
    want = np.zeros(counts.shape)
    for s, row in enumerate(counts):
        position = 5
        for arm, n in enumerate(row):
            for _ in range(n):
                want[s, arm] += matrix[source._order[s, position], arm]
                position += 1
    np.testing.assert_allclose(got, want)


def test_sequential_ab_drops_losing_arms_and_keeps_the_best():
    """With three arms the mSPRT test stops serving arms that are significantly worse."""
    arms = BernoulliArms(["a", "b", "c"], np.array([0.05, 0.08, 0.10]))
    cfg = Settings(n_arms=3, baseline=0.05, mde=0.03, alpha=0.05)
    run = run_policy(
        make_policy("ab-sequential", cfg), arms, horizon=60_000, seeds=300, batch_size=200, seed=8
    )
    assert run.decided.mean() >= 0.9
    # the best arm is dropped only through a false rejection: probability <= alpha
    assert (run.winner[run.decided] == 2).mean() >= 0.95 - 0.025
    # arm a is dropped early, so it got far less than a third of the traffic
    share = run.exp_pulls / run.exp_pulls.sum(axis=1, keepdims=True)
    assert np.median(share[:, 0]) < 0.25
