"""The sample world's known click model: the ground truth for bandit evaluation.

A user ``u`` shown item ``i`` at position ``p`` clicks with probability

    sigmoid(intercept + affinity_weight * taste[u] · item_vec[i]
            + popularity_weight * popularity_logit[i] + position_logit[p])

Because the probability is known, the true value of any recommendation policy
(its expected click rate) can be computed exactly, which is what off-policy
estimators and contextual bandits are checked against. ``user_context`` is what
a policy may observe about a user (a noisy view of the taste vector plus a
bias term); the taste itself stays hidden.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@dataclass(frozen=True)
class ClickModel:
    taste: np.ndarray  # (n_users, d) hidden long-term taste
    user_context: np.ndarray  # (n_users, p) what a policy may observe
    item_vec: np.ndarray  # (n_items, d)
    popularity_logit: np.ndarray  # (n_items,) centred log-popularity
    position_logit: np.ndarray  # (n_positions,) position bias; position 1 first
    intercept: float
    affinity_weight: float
    popularity_weight: float

    @property
    def n_users(self) -> int:
        return int(self.taste.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_vec.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.position_logit.shape[0])

    def logits(self, users: np.ndarray, items: np.ndarray, positions: np.ndarray | None = None):
        """Click logits for aligned arrays of user and item indices (positions 1-based)."""
        users = np.asarray(users)
        items = np.asarray(items)
        affinity = np.einsum("...d,...d->...", self.taste[users], self.item_vec[items])
        out = (
            self.intercept
            + self.affinity_weight * affinity
            + self.popularity_weight * self.popularity_logit[items]
        )
        if positions is not None:
            out = out + self.position_logit[np.asarray(positions) - 1]
        return out

    def prob(self, users, items, positions=None) -> np.ndarray:
        """True click probability for aligned index arrays (broadcasting allowed)."""
        return sigmoid(self.logits(users, items, positions))

    def all_probs(self, users: np.ndarray, position: int = 1) -> np.ndarray:
        """(len(users), n_items) matrix of click probabilities at one position."""
        users = np.asarray(users)
        logits = (
            self.intercept
            + self.affinity_weight * (self.taste[users] @ self.item_vec.T)
            + self.popularity_weight * self.popularity_logit[None, :]
            + self.position_logit[position - 1]
        )
        return sigmoid(logits)

    def sample_clicks(self, rng: np.random.Generator, users, items, positions=None) -> np.ndarray:
        p = self.prob(users, items, positions)
        return (rng.random(p.shape) < p).astype(np.int8)

    def save(self, path: str | Path) -> None:
        """Save as ``.npz`` (write to a temporary path and rename for atomicity)."""
        with open(path, "wb") as handle:
            np.savez_compressed(
                handle,
                taste=self.taste,
                user_context=self.user_context,
                item_vec=self.item_vec,
                popularity_logit=self.popularity_logit,
                position_logit=self.position_logit,
                scalars=np.array(
                    [self.intercept, self.affinity_weight, self.popularity_weight], dtype=float
                ),
            )

    @classmethod
    def load(cls, path: str | Path) -> ClickModel:
        with np.load(path) as data:
            intercept, affinity_weight, popularity_weight = (float(x) for x in data["scalars"])
            return cls(
                taste=data["taste"],
                user_context=data["user_context"],
                item_vec=data["item_vec"],
                popularity_logit=data["popularity_logit"],
                position_logit=data["position_logit"],
                intercept=intercept,
                affinity_weight=affinity_weight,
                popularity_weight=popularity_weight,
            )

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        *,
        n_users: int = 200,
        n_items: int = 50,
        dim: int = 8,
        n_positions: int = 3,
        context_noise: float = 0.3,
    ) -> ClickModel:
        """A small random click model for tests (Zipf-like popularity, taste clusters)."""
        taste = rng.normal(size=(n_users, dim)) / np.sqrt(dim)
        item_vec = rng.normal(size=(n_items, dim)) / np.sqrt(dim)
        pop = -np.log(np.arange(1, n_items + 1))
        pop = rng.permutation(pop - pop.mean())
        context = np.hstack(
            [
                taste + context_noise * rng.normal(size=taste.shape) / np.sqrt(dim),
                np.ones((n_users, 1)),
            ]
        )
        return cls(
            taste=taste,
            user_context=context,
            item_vec=item_vec,
            popularity_logit=pop,
            position_logit=-0.3 * np.arange(n_positions, dtype=float),
            intercept=-3.0,
            affinity_weight=3.0,
            popularity_weight=0.5,
        )
