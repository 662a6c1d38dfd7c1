"""Run routing policies on a reward source, vectorised over simulation seeds.

One numpy step per batch of requests: the state of every seed is a (seeds,
arms) array of traffic and reward sums, so 100 seeds cost little more than one.
After a seed's policy reaches a decision the experiment ends for that seed and
the winner serves every later request (what a team does when a test ends), so
regret over the horizon = clicks lost while experimenting + the cost of a wrong
decision afterwards. Regret is the expected (pseudo-)regret: the traffic each
arm got times its gap to the best arm's mean reward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.routing.policies import RoutingPolicy, Step
from rtml_cli.evaluation.routing.posterior import prob_best

DEFAULT_BATCH_SIZE = 100
DEFAULT_SEEDS = 100


@dataclass
class PolicyRun:
    """Per-seed outcome of one policy (arrays have one entry per seed)."""

    policy: str
    decided: np.ndarray  # bool
    decision_at: np.ndarray  # requests until the decision (horizon where undecided)
    winner: np.ndarray  # int, -1 where undecided
    reward: np.ndarray  # total reward over the horizon
    regret: np.ndarray  # expected regret over the horizon
    clicks_lost: np.ndarray  # expected regret until the decision (or the horizon)
    best_traffic: np.ndarray  # requests served by a best arm
    exp_pulls: np.ndarray  # (seeds, arms) traffic while experimenting
    exp_rewards: np.ndarray  # (seeds, arms) reward while experimenting
    curve_requests: np.ndarray  # (checkpoints,) requests served
    curve_regret: np.ndarray  # (checkpoints,) mean cumulative regret over seeds
    curve_best_share: np.ndarray  # (checkpoints,) mean share of traffic to a best arm so far
    extras: dict = field(default_factory=dict)


def run_policy(
    policy: RoutingPolicy,
    source,
    *,
    horizon: int,
    seeds: int = DEFAULT_SEEDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    stop: bool = True,
) -> PolicyRun:
    """Simulate ``policy`` on ``source`` for ``horizon`` requests in ``seeds`` repetitions.

    In replay mode the request order of every repetition depends only on
    ``seed``, so every policy sees the same streams (common random numbers) and
    differences between policies are not noise in the streams. ``stop=False``
    never ends the experiment (to measure a policy's routing alone).
    """
    if horizon < 1:
        raise UsageError(f"the stream must have at least one request, got {horizon}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    stream_seq, policy_seq = np.random.SeedSequence(seed).spawn(2)
    source.start(seeds, horizon, np.random.default_rng(stream_seq))
    rng = np.random.default_rng(policy_seq)

    means = np.asarray(source.means, dtype=float)
    k = means.shape[0]
    gap = means.max() - means
    best = gap <= 1e-12

    pulls = np.zeros((seeds, k))
    rewards = np.zeros((seeds, k))
    decided = np.zeros(seeds, dtype=bool)
    decision_at = np.full(seeds, horizon, dtype=np.int64)
    winner = np.full(seeds, -1, dtype=np.int64)
    reward_total = np.zeros(seeds)
    regret = np.zeros(seeds)
    clicks_lost = np.zeros(seeds)
    best_traffic = np.zeros(seeds)
    n_batches = -(-horizon // batch_size)
    curve_requests = np.zeros(n_batches, dtype=np.int64)
    curve_regret = np.zeros(n_batches)
    curve_best = np.zeros(n_batches)

    step = _posterior(policy, Step(0, pulls, rewards))
    alloc = policy.allocation(step, rng)
    active_idx = np.arange(seeds)  # seeds still experimenting
    for index, start in enumerate(range(0, horizon, batch_size)):
        size = min(batch_size, horizon - start)
        if active_idx.size == seeds:
            probs = alloc
        else:  # decided seeds serve their winner
            probs = np.zeros((seeds, k))
            probs[np.arange(seeds), np.maximum(winner, 0)] = 1.0
            probs[active_idx] = alloc
        counts, earned = source.route(size, probs, start)
        reward_total += earned.sum(axis=1)
        regret += counts @ gap
        best_traffic += counts[:, best].sum(axis=1)
        served = start + size
        curve_requests[index] = served
        curve_regret[index] = regret.mean()
        curve_best[index] = best_traffic.mean() / served
        if active_idx.size == seeds:
            pulls += counts
            rewards += earned
            clicks_lost[:] = regret
            step = Step(served, pulls, rewards)
        else:
            pulls[active_idx] += counts[active_idx]
            rewards[active_idx] += earned[active_idx]
            clicks_lost[active_idx] = regret[active_idx]
            step = Step(served, pulls[active_idx], rewards[active_idx])
        step = _posterior(policy, step)
        if stop:
            verdict = policy.decide(step, rng)
            if verdict.decided.any():
                newly = active_idx[verdict.decided]
                decided[newly] = True
                decision_at[newly] = served
                winner[newly] = verdict.winner[verdict.decided]
                keep = ~verdict.decided
                active_idx = active_idx[keep]
                step = Step(served, step.pulls[keep], step.rewards[keep], _rows(step.p_best, keep))
        if active_idx.size == 0:
            _fast_forward(
                source,
                served,
                horizon,
                winner,
                gap,
                best,
                reward_total,
                regret,
                best_traffic,
                curve_requests[index + 1 :],
                curve_regret[index + 1 :],
                curve_best[index + 1 :],
                batch_size,
            )
            break
        alloc = policy.allocation(step, rng)

    return PolicyRun(
        policy=policy.name,
        decided=decided,
        decision_at=decision_at,
        winner=winner,
        reward=reward_total,
        regret=regret,
        clicks_lost=clicks_lost,
        best_traffic=best_traffic,
        exp_pulls=pulls,
        exp_rewards=rewards,
        curve_requests=curve_requests,
        curve_regret=curve_regret,
        curve_best_share=curve_best,
    )


def _fast_forward(
    source,
    served,
    horizon,
    winner,
    gap,
    best,
    reward_total,
    regret,
    best_traffic,
    curve_requests,
    curve_regret,
    curve_best,
    batch_size,
) -> None:
    """Every seed has decided: its winner serves the rest of the stream, in one step."""
    remaining = horizon - served
    if remaining <= 0:
        return
    seeds, k = winner.shape[0], gap.shape[0]
    counts = np.zeros((seeds, k), dtype=np.int64)
    counts[np.arange(seeds), winner] = remaining
    regret_before, best_before = regret.copy(), best_traffic.copy()
    reward_total += source.pull(counts, served).sum(axis=1)
    regret += remaining * gap[winner]
    best_traffic += remaining * best[winner]
    ends = np.minimum(served + batch_size * np.arange(1, curve_requests.shape[0] + 1), horizon)
    extra = ends - served
    curve_requests[:] = ends
    curve_regret[:] = regret_before.mean() + extra * gap[winner].mean()
    curve_best[:] = (best_before.mean() + extra * best[winner].mean()) / ends


def _rows(array: np.ndarray | None, keep: np.ndarray) -> np.ndarray | None:
    return None if array is None else array[keep]


def _posterior(policy: RoutingPolicy, step: Step) -> Step:
    if policy.uses_posterior:
        step.p_best = prob_best(step.alpha, step.beta)
    return step
