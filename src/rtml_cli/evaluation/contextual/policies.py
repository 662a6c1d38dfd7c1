"""Contextual policies: ``k`` distinct items per request from the user's context.

One interface, ``ContextualPolicy``; every policy registers in ``CONTEXTUAL_POLICIES`` as a
factory taking the command's options (``epsilon``, ``alpha``, ``ts_scale``) and ignoring
the others. ``rtml_cli.checks.contextual`` runs the contract over every entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry


class ContextualPolicy(ABC):
    """Recommends ``k`` items per request from the user's context and learns from clicks.

    ``select(X, k, rng)`` returns a ``(len(X), k)`` array of distinct item indices, best
    first; ``update(X, items, clicks)`` receives one row per impression;
    ``slate_probs(X, k)`` is the frozen policy's per-impression distribution over items
    (the probability that a random slot of its slate shows each item), used offline.
    """

    name: ClassVar[str] = ""
    contextual: ClassVar[bool] = False

    def reset(self, n_items: int, dim: int, rng: np.random.Generator) -> None:
        self.n_items = n_items
        self.dim = dim
        # A fixed random tie-break so equal scores do not always favour low item indices.
        self.tiebreak = rng.random(n_items) * 1e-9

    @abstractmethod
    def scores(self, X: np.ndarray) -> np.ndarray:
        """Exploitation scores (b, n_items): what the frozen policy ranks by."""

    def select(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return top_k(self.scores(X) + self.tiebreak, k)

    def update(self, X: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        """Learn from impressions (one row of ``X`` per shown item); by default nothing."""
        return None

    def slate_probs(self, X: np.ndarray, k: int) -> np.ndarray:
        slate = top_k(self.scores(X) + self.tiebreak, k)
        out = np.zeros((X.shape[0], self.n_items))
        np.put_along_axis(out, slate, 1.0 / k, axis=1)
        return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class UniformPolicy(ContextualPolicy):
    """k distinct items uniformly at random: maximal exploration, no exploitation."""

    name = "uniform"

    def scores(self, X):
        return np.zeros((X.shape[0], self.n_items))

    def select(self, X, k, rng):
        return top_k(rng.random((X.shape[0], self.n_items)), k)

    def slate_probs(self, X, k):
        return np.full((X.shape[0], self.n_items), 1.0 / self.n_items)


class GreedyCTR(ContextualPolicy):
    """Greedy on each item's estimated click rate ``(clicks + m) / (impressions + 1)``, ``m``
    the click rate seen so far: the same "most clickable" list for every user."""

    name = "greedy"

    def reset(self, n_items, dim, rng):
        super().reset(n_items, dim, rng)
        self.clicks = np.zeros(n_items)
        self.shown = np.zeros(n_items)

    def estimates(self) -> np.ndarray:
        prior = self.clicks.sum() / self.shown.sum() if self.shown.sum() else 0.0
        return (self.clicks + prior) / (self.shown + 1.0)

    def scores(self, X):
        return np.broadcast_to(self.estimates(), (X.shape[0], self.n_items))

    def update(self, X, items, clicks):
        self.shown += np.bincount(items, minlength=self.n_items)
        self.clicks += np.bincount(items, weights=clicks, minlength=self.n_items)


class EpsilonGreedyCTR(GreedyCTR):
    """Greedy, but each slot shows a uniformly random (not yet shown) item with prob. ε."""

    name = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = epsilon

    def select(self, X, k, rng):
        slate = super().select(X, k, rng)
        explore = rng.random(slate.shape) < self.epsilon
        if explore.any():
            # Random items ranked by a fresh random score; take the first not already shown.
            for row, col in zip(*np.nonzero(explore), strict=True):
                candidates = rng.permutation(self.n_items)
                taken = set(slate[row].tolist())
                slate[row, col] = next(c for c in candidates if c not in taken)
        return slate

    def slate_probs(self, X, k):
        return (1 - self.epsilon) * super().slate_probs(X, k) + self.epsilon / self.n_items


class LinUCB(ContextualPolicy):
    """Disjoint LinUCB: per item ridge regression of click on context, optimism ``α``."""

    name = "linucb"
    contextual = True

    def __init__(self, alpha: float = 1.0, l2: float = 1.0) -> None:
        self.alpha = alpha
        self.l2 = l2

    def reset(self, n_items, dim, rng):
        super().reset(n_items, dim, rng)
        self.A = np.tile(self.l2 * np.eye(dim), (n_items, 1, 1))
        self.A_inv = np.tile(np.eye(dim) / self.l2, (n_items, 1, 1))
        self.b = np.zeros((n_items, dim))
        self.theta = np.zeros((n_items, dim))

    def scores(self, X):
        return X @ self.theta.T

    def width(self, X: np.ndarray) -> np.ndarray:
        """``sqrt(x' A_a^-1 x)`` for every request and item (b, n_items)."""
        var = np.einsum("bd,nde,be->bn", X, self.A_inv, X, optimize=True)
        return np.sqrt(np.maximum(var, 0.0))

    def select(self, X, k, rng):
        return top_k(self.scores(X) + self.alpha * self.width(X) + self.tiebreak, k)

    def update(self, X, items, clicks):
        touched = np.unique(items)
        outer = np.einsum("md,me->mde", X, X)
        np.add.at(self.A, items, outer)
        np.add.at(self.b, items, clicks[:, None] * X)
        self.A_inv[touched] = np.linalg.inv(self.A[touched])
        self.theta[touched] = np.einsum("nde,ne->nd", self.A_inv[touched], self.b[touched])


class LinTS(LinUCB):
    """Linear Thompson sampling: rank by a posterior draw with scale ``v``."""

    name = "lints"

    def __init__(self, v: float = 0.25, l2: float = 1.0) -> None:
        super().__init__(alpha=0.0, l2=l2)
        self.v = v

    def select(self, X, k, rng):
        z = rng.standard_normal((X.shape[0], self.n_items))
        return top_k(self.scores(X) + self.v * self.width(X) * z + self.tiebreak, k)


class _SharedItemBlock:
    """A shared block over item features for the linear policies: Li et al. 2010's hybrid
    LinUCB (their Algorithm 2), with each item's own features ``z_a`` as the shared
    features. The score is ``x·θ_a + z_a·β``, ``θ`` and ``β`` one joint ridge regression
    solved by block elimination, so an item with little feedback borrows from items that
    look like it; the width is the joint model's ``sqrt(φ' A^-1 φ)``."""

    item_features: np.ndarray
    n_items: int
    dim: int
    l2: float

    def reset(self, n_items, dim, rng):
        ContextualPolicy.reset(self, n_items, dim, rng)
        k = self.item_features.shape[1]
        self.A0 = self.l2 * np.eye(k)
        self.b0 = np.zeros(k)
        self.A = np.tile(self.l2 * np.eye(dim), (n_items, 1, 1))
        self.A_inv = np.tile(np.eye(dim) / self.l2, (n_items, 1, 1))
        self.B = np.zeros((n_items, dim, k))
        self.b = np.zeros((n_items, dim))
        self._refresh()

    def _refresh(self) -> None:
        self.A0_inv = np.linalg.inv(self.A0)
        self.beta = self.A0_inv @ self.b0
        self.C = self.A_inv @ self.B  # (n, d, k): A_a^-1 B_a
        self.theta = np.einsum("nde,ne->nd", self.A_inv, self.b) - self.C @ self.beta

    def scores(self, X):
        return X @ self.theta.T + (self.item_features @ self.beta)[None, :]

    def width(self, X):
        Z, A0_inv = self.item_features, self.A0_inv
        u = np.einsum("bd,ndk->bnk", X, self.C, optimize=True)  # x' A_a^-1 B_a
        var = np.einsum("bd,nde,be->bn", X, self.A_inv, X, optimize=True)
        var += np.einsum("nk,kl,nl->n", Z, A0_inv, Z)[None, :]
        var -= 2 * np.einsum("nk,kl,bnl->bn", Z, A0_inv, u, optimize=True)
        var += np.einsum("bnk,kl,bnl->bn", u, A0_inv, u, optimize=True)
        return np.sqrt(np.maximum(var, 0.0))

    def update(self, X, items, clicks):
        Z = self.item_features
        for x, a, r in zip(X, items, clicks, strict=True):
            z = Z[a]
            BtAinv = self.B[a].T @ self.A_inv[a]
            self.A0 += BtAinv @ self.B[a]
            self.b0 += BtAinv @ self.b[a]
            self.A[a] += np.outer(x, x)
            self.B[a] += np.outer(x, z)
            self.b[a] += r * x
            self.A_inv[a] = np.linalg.inv(self.A[a])
            BtAinv = self.B[a].T @ self.A_inv[a]
            self.A0 += np.outer(z, z) - BtAinv @ self.B[a]
            self.b0 += r * z - BtAinv @ self.b[a]
        self._refresh()


class HybridLinUCB(_SharedItemBlock, LinUCB):
    """``linucb`` with item features (``_SharedItemBlock``); built by ``with_item_features``."""

    def __init__(self, item_features: np.ndarray, alpha: float = 1.0, l2: float = 1.0) -> None:
        super().__init__(alpha=alpha, l2=l2)
        self.item_features = item_features


class HybridLinTS(_SharedItemBlock, LinTS):
    """``lints`` with item features (``_SharedItemBlock``); built by ``with_item_features``."""

    def __init__(self, item_features: np.ndarray, v: float = 0.25, l2: float = 1.0) -> None:
        super().__init__(v=v, l2=l2)
        self.item_features = item_features


def with_item_features(policy: ContextualPolicy, item_features: np.ndarray) -> ContextualPolicy:
    """The same policy using item features when it can (the linear ones), else itself."""
    if type(policy) is LinUCB:
        return HybridLinUCB(item_features, alpha=policy.alpha, l2=policy.l2)
    if type(policy) is LinTS:
        return HybridLinTS(item_features, v=policy.v, l2=policy.l2)
    return policy


CONTEXTUAL_POLICIES: Registry[Callable[..., ContextualPolicy]] = Registry("contextual policy")
CONTEXTUAL_POLICIES.add(
    "greedy",
    lambda **kw: GreedyCTR(),
    description="per item click rate, top-k for everyone (the most-clickable trap)",
)
CONTEXTUAL_POLICIES.add(
    "epsilon-greedy",
    lambda epsilon=0.1, **kw: EpsilonGreedyCTR(epsilon),
    description="greedy, but each slot shows a random item with probability --epsilon",
)
CONTEXTUAL_POLICIES.add(
    "linucb",
    lambda alpha=1.0, **kw: LinUCB(alpha),
    description="disjoint LinUCB on the user context, optimism --alpha",
)
CONTEXTUAL_POLICIES.add(
    "lints",
    lambda ts_scale=0.25, **kw: LinTS(ts_scale),
    description="linear Thompson sampling, posterior scale --ts-scale",
)
CONTEXTUAL_POLICIES.add("uniform", lambda **kw: UniformPolicy(), description="k random items")


def make_policies(names: Sequence[str], **params: float) -> list[ContextualPolicy]:
    """Fresh policies by name; ``params`` (epsilon, alpha, ts_scale) go to those that use them."""
    out = []
    for raw in names:
        name = raw.strip().lower()
        if name not in CONTEXTUAL_POLICIES:
            raise UsageError(
                f"unknown policy {raw!r}; choose from {', '.join(CONTEXTUAL_POLICIES)}"
            )
        out.append(CONTEXTUAL_POLICIES.get(name)(**params))
    if not out:
        raise UsageError("--policies names no policy")
    return out
