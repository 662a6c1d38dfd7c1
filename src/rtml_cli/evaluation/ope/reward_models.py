"""Reward models ``q_hat(x, a)`` for the direct method and the doubly robust estimators.

Every model registers in ``REWARD_MODELS`` (``--reward-model NAME``); its contract (shape,
finite, within [0, 1] for rewards in [0, 1]) is in ``rtml_cli.checks.ope``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.ope.log import BanditLog
from rtml_cli.registry import Registry


class RewardModel(ABC):
    """``q_hat(x, a)``: expected reward of each action for each event (the DM/DR model).

    ``fit(log)`` learns it from a log; ``predict(log, rows)`` returns a
    ``(len(rows), log.n_actions)`` matrix of expected rewards.
    """

    name: str = "reward model"

    @classmethod
    @abstractmethod
    def fit(cls, log: BanditLog) -> RewardModel:
        """The model fit on ``log``."""

    @abstractmethod
    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        """Expected reward of every action for the events ``rows``."""


@dataclass
class MeanRewardModel(RewardModel):
    """Per action x position mean reward, shrunk towards the position mean by ``prior`` events.

    ``q(p, a) = (sum of rewards of a at p + prior * mean_p) / (count(a at p) + prior)``;
    actions never logged at a position get the position mean.
    """

    table: np.ndarray  # (P, A)
    name: str = "mean"

    @classmethod
    def fit(cls, log: BanditLog, prior: float = 1.0) -> MeanRewardModel:
        shape = (log.n_positions, log.n_actions)
        sums = np.zeros(shape)
        counts = np.zeros(shape)
        np.add.at(sums, (log.position_idx, log.action_idx), log.reward)
        np.add.at(counts, (log.position_idx, log.action_idx), 1.0)
        pos_mean = sums.sum(axis=1, keepdims=True) / np.maximum(
            counts.sum(axis=1, keepdims=True), 1
        )
        return cls(table=(sums + prior * pos_mean) / (counts + prior))

    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.table[log.position_idx[rows]]


@dataclass
class LogisticRewardModel(RewardModel):
    """L2-regularised logistic regression on standardised context + action + position.

    ``q(x, p, a) = sigmoid(b + x·w_x + w_a[a] + w_p[p])`` — additive, so it cannot express
    that different contexts prefer different actions; fit by L-BFGS (scipy).
    """

    mean: np.ndarray
    scale: np.ndarray
    w_x: np.ndarray
    w_a: np.ndarray
    w_p: np.ndarray
    bias: float
    name: str = "logistic"

    @classmethod
    def fit(cls, log: BanditLog, l2: float = 1.0) -> LogisticRewardModel:
        from scipy.optimize import minimize

        if log.reward.min() < 0 or log.reward.max() > 1:
            raise UsageError(
                "--reward-model logistic needs rewards in [0, 1]; use --reward-model mean"
            )
        x = log.context if log.context is not None else np.zeros((log.n, 0))
        mean = x.mean(axis=0) if x.shape[1] else np.zeros(0)
        scale = x.std(axis=0) if x.shape[1] else np.zeros(0)
        scale = np.where(scale > 0, scale, 1.0)
        xs = (x - mean) / scale
        d, n_a, n_p = xs.shape[1], log.n_actions, log.n_positions
        y = log.reward
        a_idx, p_idx = log.action_idx, log.position_idx

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w_x, w_a, w_p, b = theta[:d], theta[d : d + n_a], theta[d + n_a : -1], theta[-1]
            z = b + xs @ w_x + w_a[a_idx] + w_p[p_idx]
            # log(1 + e^z) - y z, computed stably
            nll = np.sum(np.logaddexp(0.0, z) - y * z)
            g = 1.0 / (1.0 + np.exp(-z)) - y
            grad = np.empty_like(theta)
            grad[:d] = xs.T @ g
            grad[d : d + n_a] = np.bincount(a_idx, weights=g, minlength=n_a)
            grad[d + n_a : -1] = np.bincount(p_idx, weights=g, minlength=n_p)
            grad[-1] = g.sum()
            reg = 0.5 * l2 * np.sum(theta[:-1] ** 2)
            grad[:-1] += l2 * theta[:-1]
            return float(nll + reg), grad

        theta0 = np.zeros(d + n_a + n_p + 1)
        ybar = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        theta0[-1] = math.log(ybar / (1 - ybar))
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        th = res.x
        return cls(
            mean=mean,
            scale=scale,
            w_x=th[:d],
            w_a=th[d : d + n_a],
            w_p=th[d + n_a : -1],
            bias=float(th[-1]),
        )

    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        z = self.bias + self.w_p[log.position_idx[rows]]
        if self.w_x.size:
            context = log.require_context("--reward-model logistic (fit with context)")
            z = z + ((context[rows] - self.mean) / self.scale) @ self.w_x
        z = z[:, None] + self.w_a[None, :]
        return 1.0 / (1.0 + np.exp(-z))


REWARD_MODELS: Registry[type[RewardModel]] = Registry("reward model")
REWARD_MODELS.add(
    "mean", MeanRewardModel, description="mean reward per action x position (context-free)"
)
REWARD_MODELS.add(
    "logistic",
    LogisticRewardModel,
    description="logistic regression on context + action + position (needs rewards in [0, 1])",
)


def fit_reward_model(log: BanditLog, kind: str) -> RewardModel:
    """Fit the ``--reward-model`` named ``kind`` on ``log``."""
    if kind not in REWARD_MODELS:
        raise UsageError(
            f"unknown --reward-model {kind!r}; choose one of {', '.join(REWARD_MODELS)}"
        )
    return REWARD_MODELS.get(kind).fit(log)
