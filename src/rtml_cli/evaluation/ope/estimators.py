"""Off-policy estimators (IPS, SNIPS, DM, DR, SNDR, Switch-DR) and their registry.

The estimators follow the definitions of the Open Bandit Pipeline (Saito et al., 2021);
each class docstring gives its formula with

    w_i    = pi_e(a_i | x_i) / pi_b(a_i | x_i)          (importance weight)
    q_i    = q_hat(x_i, a_i)                             (reward model at the logged action)
    v_i    = sum_a pi_e(a | x_i) q_hat(x_i, a)           (reward model under pi_e)

Every estimator is a pure function of these per-event terms (``EventTerms``), vectorised
so the bootstrap evaluates all resamples at once. Register a new one in ``ESTIMATORS``;
``rtml_cli.checks.ope`` runs its contract.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.registry import Registry


@dataclass
class EventTerms:
    """Per-event quantities every estimator is a function of (see the module docstring)."""

    w: np.ndarray
    r: np.ndarray
    q: np.ndarray
    v: np.ndarray


class Estimator(ABC):
    """An off-policy estimator: ``value(w, r, q, v)`` on arrays of shape ``(..., n)``.

    Vectorised over leading axes so the bootstrap evaluates all resamples at once.
    ``needs_model``: it reads ``q`` and ``v``, so a reward model must be fit first.
    """

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False

    @abstractmethod
    def value(self, w: np.ndarray, r: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The estimate over the last axis (one per leading index)."""


class IPS(Estimator):
    """Inverse propensity scoring: ``V = 1/n sum_i w_i r_i``. Unbiased when ``pi_b > 0``
    wherever ``pi_e > 0``; its variance grows with the weights."""

    name = "ips"

    def value(self, w, r, q, v):
        return np.mean(w * r, axis=-1)


class SNIPS(Estimator):
    """Self-normalised IPS: ``V = sum_i w_i r_i / sum_i w_i``. Slightly biased, consistent,
    usually much lower variance than IPS; invariant to a constant shift of the reward."""

    name = "snips"

    def value(self, w, r, q, v):
        return np.sum(w * r, axis=-1) / np.sum(w, axis=-1)


class DM(Estimator):
    """Direct method: ``V = 1/n sum_i sum_a pi_e(a|x_i) q_hat(x_i, a) = 1/n sum_i v_i``.
    Low variance, but biased exactly as much as the reward model is wrong."""

    name = "dm"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v, axis=-1)


class DR(Estimator):
    """Doubly robust: ``V = 1/n sum_i [v_i + w_i (r_i - q_i)]``. Unbiased if either the
    propensities or the reward model are right; the model reduces IPS's variance."""

    name = "dr"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v + w * (r - q), axis=-1)


class SNDR(Estimator):
    """Self-normalised DR: ``V = 1/n sum_i v_i + sum_i w_i (r_i - q_i) / sum_i w_i``."""

    name = "sndr"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v, axis=-1) + np.sum(w * (r - q), axis=-1) / np.sum(w, axis=-1)


class SwitchDR(Estimator):
    """Switch-DR (Wang et al. 2017, as in OBP): ``V = 1/n sum_i [v_i + 1{w_i <= tau} w_i
    (r_i - q_i)]``: DR where the weight is small, the reward model alone where it exceeds
    ``tau`` (``tau = inf`` is DR)."""

    name = "switch-dr"
    needs_model = True

    def __init__(self, tau: float = 100.0) -> None:
        self.tau = float(tau)

    def value(self, w, r, q, v):
        return np.mean(v + (w <= self.tau) * w * (r - q), axis=-1)


ESTIMATORS: Registry[type[Estimator]] = Registry("estimator")
ESTIMATORS.add("ips", IPS, description="inverse propensity scoring")
ESTIMATORS.add("snips", SNIPS, description="self-normalised IPS")
ESTIMATORS.add("dm", DM, description="direct method (the reward model alone)")
ESTIMATORS.add("dr", DR, description="doubly robust")
ESTIMATORS.add("sndr", SNDR, description="self-normalised doubly robust")
ESTIMATORS.add("switch-dr", SwitchDR, description="DR below weight tau, the model above")
DEFAULT_ESTIMATORS = tuple(ESTIMATORS)


def make_estimators(names: Sequence[str], *, switch_tau: float = 100.0) -> list[Estimator]:
    """Estimators by name (case and ``_``/``-`` insensitive; ``switchdr`` is Switch-DR)."""
    out: list[Estimator] = []
    for raw in names:
        name = raw.strip().lower().replace("_", "-")
        if name == "switchdr":
            name = "switch-dr"
        if name not in ESTIMATORS:
            raise UsageError(f"unknown estimator {raw!r}; choose from {', '.join(ESTIMATORS)}")
        cls = ESTIMATORS.get(name)
        out.append(SwitchDR(switch_tau) if cls is SwitchDR else cls())
    if not out:
        raise UsageError("--estimators names no estimator")
    return out
