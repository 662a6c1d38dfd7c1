"""Routing policies: how each request of the next batch is split between the arms.

Every policy honours one interface, vectorised over simulation seeds:

* ``allocation(step, rng)`` -> (seeds, arms) probabilities that a request of the
  next batch goes to each arm (rows sum to 1);
* ``decide(step, rng)`` -> which seeds have reached a decision now, and the
  winning arm of each.

A ``Step`` holds only the per-arm traffic and reward sums of the experiment so
far (all these policies are functions of those sufficient statistics) and,
for bandits, P(arm is best) under Beta(1, 1)-prior posteriors.

Policies are updated once per batch of requests, as production bandits are
(the router serves a batch with a frozen policy while feedback is joined and
the next update is computed). With a frozen policy, the arms of the B requests
of a batch are i.i.d. draws from ``allocation``, so the runner draws the batch's
per-arm counts from one multinomial: the same distribution as B per-request
draws, at the cost of one draw per seed.

Add a new policy to ``ROUTING_POLICIES`` (name -> class, in the order ``rtml evaluate``
runs and reports them by default); ``rtml_cli.checks.routing`` runs the contract over every
entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry


@dataclass
class Step:
    """The experiment's state for the still-undecided seeds, after ``requests`` requests."""

    requests: int
    pulls: np.ndarray  # (seeds, arms) requests routed to each arm so far
    rewards: np.ndarray  # (seeds, arms) reward summed per arm so far
    p_best: np.ndarray | None = None  # (seeds, arms) P(arm is best), for bandits

    @property
    def means(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.pulls > 0, self.rewards / np.maximum(self.pulls, 1), np.inf)

    def require_p_best(self) -> np.ndarray:
        """``p_best``, which the runner sets for every policy with ``uses_posterior``."""
        if self.p_best is None:
            raise ValueError(
                "Step.p_best is not set: a policy that reads it needs uses_posterior = True"
            )
        return self.p_best

    @property
    def alpha(self) -> np.ndarray:
        return 1.0 + self.rewards

    @property
    def beta(self) -> np.ndarray:
        return 1.0 + self.pulls - self.rewards


@dataclass(frozen=True)
class Settings:
    """What every policy may need; built once per evaluation from the CLI options."""

    n_arms: int
    control: int = 0  # index of the control arm (A/B tests keep it when nothing wins)
    weights: tuple[float, ...] | None = None  # A/B traffic split; None = equal
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.01  # absolute minimum detectable effect on the reward rate
    baseline: float = 0.05  # the control's rate, for the power calculation
    threshold: float = 0.95  # bandits: declare a winner when P(best) >= threshold
    value_remaining: float | None = None  # bandits: or when 95% value remaining < this
    min_requests: int = 0  # no decision before this many requests
    min_arm_requests: int = 100  # bandits: a winner must have served this many requests
    epsilon: float = 0.1
    top_two_beta: float = 0.5

    @property
    def split(self) -> np.ndarray:
        w = np.ones(self.n_arms) if self.weights is None else np.asarray(self.weights, float)
        return w / w.sum()


@dataclass
class Decision:
    decided: np.ndarray  # (seeds,) bool
    winner: np.ndarray  # (seeds,) int, meaningful where decided


class RoutingPolicy(ABC):
    """A routing policy. Subclasses set ``name`` and ``summary`` and implement two methods."""

    name: ClassVar[str]
    summary: ClassVar[str]
    kind: ClassVar[str] = "bandit"  # "bandit" | "ab"
    uses_posterior: ClassVar[bool] = True

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        """(seeds, arms) probability that a request of the next batch goes to each arm."""

    @abstractmethod
    def decide(self, step: Step, rng: np.random.Generator) -> Decision:
        """Which seeds stop experimenting now, and with which winner."""


def make_policy(name: str, settings: Settings) -> RoutingPolicy:
    """The routing policy registered as ``name``, for these settings."""
    if name not in ROUTING_POLICIES:
        raise UsageError(f"unknown policy {name!r}; choose from {', '.join(ROUTING_POLICIES)}")
    return ROUTING_POLICIES.get(name)(settings)


def _one_hot(index: np.ndarray, n_arms: int) -> np.ndarray:
    out = np.zeros((index.shape[0], n_arms))
    out[np.arange(index.shape[0]), index] = 1.0
    return out


def argmax_random_ties(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Row-wise argmax, breaking ties uniformly at random (deterministic given ``rng``)."""
    top = values >= values.max(axis=1, keepdims=True)
    return np.argmax(top * (1.0 + rng.random(values.shape)), axis=1)


class Bandit(RoutingPolicy):
    """Bandits stop when P(best) reaches the threshold (or value remaining is small)."""

    def decide(self, step: Step, rng: np.random.Generator) -> Decision:
        from rtml_cli.evaluation.routing.posterior import value_remaining

        s = self.settings
        p_best = step.require_p_best()
        decided = p_best.max(axis=1) >= s.threshold
        if s.value_remaining is not None and step.pulls.shape[0]:
            vr = value_remaining(step.alpha, step.beta, rng)
            decided |= vr < s.value_remaining
        winner = np.argmax(p_best, axis=1)
        # A Beta(1, 1) prior makes an arm nobody has tried look 50% good: never declare
        # a winner that has not been measured. (An arm that was starved keeps a wide
        # posterior, so it holds the leader's P(best) down by itself.)
        decided &= step.pulls[np.arange(winner.shape[0]), winner] >= s.min_arm_requests
        if step.requests < s.min_requests:
            decided[:] = False
        return Decision(decided, winner)


class EpsilonGreedyBandit(Bandit):
    name = "epsilon-greedy"
    summary = "serve the best-looking arm; explore a random arm with probability epsilon"

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        k = self.settings.n_arms
        eps = self.settings.epsilon
        leader = argmax_random_ties(step.means, rng)
        return eps / k + (1.0 - eps) * _one_hot(leader, k)


class UCB1(Bandit):
    name = "ucb1"
    summary = "serve the arm with the highest upper confidence bound (Auer et al. 2002)"

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        n = step.pulls
        with np.errstate(divide="ignore", invalid="ignore"):
            bonus = np.sqrt(2.0 * np.log(max(step.requests, 1)) / n)
        ucb = np.where(n > 0, step.means + bonus, np.inf)
        return _one_hot(argmax_random_ties(ucb, rng), self.settings.n_arms)


class Thompson(Bandit):
    name = "thompson"
    summary = "Beta-Bernoulli Thompson sampling: serve each arm with P(it is best)"

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        return step.require_p_best()


class TopTwoThompson(Bandit):
    name = "top-two-thompson"
    summary = "Thompson sampling that plays the runner-up half the time (Russo 2016)"

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        # Russo's top-two allocation: psi_i = pi_i (b + (1 - b) sum_{j != i} pi_j / (1 - pi_j)),
        # i.e. the leader with probability b, else the best of a re-draw that is not the leader.
        b = self.settings.top_two_beta
        pi = np.clip(step.require_p_best(), 1e-12, 1 - 1e-9)
        ratio = pi / (1.0 - pi)
        psi = pi * (b + (1.0 - b) * (ratio.sum(axis=1, keepdims=True) - ratio))
        return psi / psi.sum(axis=1, keepdims=True)


class FixedHorizonAB(RoutingPolicy):
    name = "ab"
    summary = "A/B test: fixed split, fixed horizon from a power calculation, one z-test"
    kind = "ab"
    uses_posterior = False

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.per_arm, self.horizon = ab_horizon(settings)

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        return np.broadcast_to(self.settings.split, step.pulls.shape).copy()

    def decide(self, step: Step, rng: np.random.Generator) -> Decision:
        from rtml_cli.evaluation.routing.abtest import two_proportion_ztest

        n_seeds = step.pulls.shape[0]
        if step.requests < self.horizon:
            return Decision(np.zeros(n_seeds, bool), np.zeros(n_seeds, int))
        s = self.settings
        level = s.alpha / max(s.n_arms - 1, 1)  # Bonferroni over the treatment-control pairs
        c = s.control
        means = step.rewards / np.maximum(step.pulls, 1)
        wins = np.zeros(step.pulls.shape, dtype=bool)  # treatment significantly beats control
        for arm in range(s.n_arms):
            if arm != c:
                z, p = two_proportion_ztest(
                    step.rewards[:, c], step.pulls[:, c], step.rewards[:, arm], step.pulls[:, arm]
                )
                wins[:, arm] = (z > 0) & (p < level)
        has = wins.any(axis=1)
        best = np.argmax(np.where(wins, means, -np.inf), axis=1)
        # At the horizon the test always ends: ship the best significant treatment (the
        # comparisons the power calculation was made for), or keep the control.
        return Decision(np.ones(n_seeds, bool), np.where(has, best, c))


class SequentialAB(RoutingPolicy):
    """A sequential A/B(/n) test with always-valid mSPRT p-values and arm elimination.

    After every batch each pair of arms is tested (mSPRT at alpha / (arms - 1));
    an arm significantly worse than another stops getting traffic, and the test
    ends when one arm is left. The true best arm can only be dropped by a false
    rejection in one of its arms - 1 comparisons, so it survives with probability
    at least 1 - alpha however often the test is checked. With two arms this is
    the plain sequential A/B test at the fixed split.
    """

    name = "ab-sequential"
    summary = "A/B test with always-valid mSPRT p-values: safe to check after every batch"
    kind = "ab"
    uses_posterior = False

    def allocation(self, step: Step, rng: np.random.Generator) -> np.ndarray:
        alive = self._alive(step)
        weights = alive * self.settings.split
        return weights / weights.sum(axis=1, keepdims=True)

    def decide(self, step: Step, rng: np.random.Generator) -> Decision:
        alive = self._alive(step)
        done = alive.sum(axis=1) == 1
        if step.requests < self.settings.min_requests:
            done[:] = False
        return Decision(done, np.argmax(alive, axis=1))

    def _alive(self, step: Step) -> np.ndarray:
        """(seeds, arms): arms not significantly worse than any other arm."""
        from rtml_cli.evaluation.routing.abtest import msprt_statistic

        s = self.settings
        threshold = max(s.n_arms - 1, 1) / s.alpha
        means = step.rewards / np.maximum(step.pulls, 1)
        alive = np.ones(step.pulls.shape, dtype=bool)
        for i in range(s.n_arms):
            for j in range(i + 1, s.n_arms):
                lam = msprt_statistic(
                    step.rewards[:, i],
                    step.pulls[:, i],
                    step.rewards[:, j],
                    step.pulls[:, j],
                    tau=s.mde,
                )
                rejected = lam >= threshold
                alive[:, i] &= ~(rejected & (means[:, j] > means[:, i]))
                alive[:, j] &= ~(rejected & (means[:, i] > means[:, j]))
        return alive


def ab_horizon(settings: Settings) -> tuple[int, int]:
    """(control's sample size, total requests) the fixed-horizon A/B test needs.

    Every treatment is compared with the control at alpha / (arms - 1)
    (Bonferroni); the horizon is the largest total any comparison needs.
    """
    from rtml_cli.evaluation.routing.abtest import sample_size_two_proportions

    s = settings
    split = s.split
    level = s.alpha / max(s.n_arms - 1, 1)
    treatment = min(max(s.baseline + s.mde, 0.0), 1.0)
    if treatment == s.baseline:
        treatment = max(s.baseline - s.mde, 0.0)
    best_control, best_total = 0, 0
    for arm in range(s.n_arms):
        if arm == s.control:
            continue
        ratio = split[arm] / split[s.control]
        n_c, _ = sample_size_two_proportions(
            s.baseline, treatment, alpha=level, power=s.power, ratio=ratio
        )
        total = int(np.ceil(n_c / split[s.control]))
        if total > best_total:
            best_control, best_total = n_c, total
    return best_control, best_total


ROUTING_POLICIES: Registry[type[RoutingPolicy]] = Registry("routing policy")
for _cls in (FixedHorizonAB, SequentialAB, EpsilonGreedyBandit, UCB1, Thompson, TopTwoThompson):
    ROUTING_POLICIES.add(_cls.name, _cls, description=_cls.summary, kind=_cls.kind)
del _cls
DEFAULT_POLICIES = tuple(ROUTING_POLICIES.names())
