"""Target (evaluation) policies: the action distribution ``pi_e(. | x_i)`` for each logged event.

``TargetPolicy.probs(log, rows)`` is the one interface every estimator reads; the
``--policy SPEC`` grammar that builds one lives in ``specs``. Probabilities must be >= 0 and
sum to 1 per event within ``PROB_TOLERANCE`` (absolute), which absorbs rounding in CSV files
written with ~6 decimals over a few hundred actions.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rtml_cli.evaluation.ope.log import BanditLog

PROB_TOLERANCE = 1e-4
# Events per chunk when a policy's (events x actions) probability matrix is materialised.
CHUNK_CELLS = 2_000_000


class TargetPolicy(ABC):
    """An evaluation policy: its action distribution for each event of a log.

    ``probs(log, rows)`` returns a dense ``(len(rows), log.n_actions)`` matrix whose rows sum
    to 1. Implementations compute it per chunk so large logs never need an
    ``events x actions`` matrix at once.
    """

    name: str = "policy"
    description: str = ""

    @abstractmethod
    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        """``(len(rows), log.n_actions)`` action probabilities of the events ``rows``."""


@dataclass
class PositionTablePolicy(TargetPolicy):
    """A context-free policy: one action distribution per position (``table[P, A]``)."""

    table: np.ndarray
    name: str = "table"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.table[log.position_idx[rows]]


@dataclass
class EventTablePolicy(TargetPolicy):
    """One action distribution per logged event (``matrix[n, A]``, aligned with the log)."""

    matrix: np.ndarray
    name: str = "per-event table"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows]


@dataclass
class ScorePolicy(TargetPolicy):
    """Greedy on a score: the argmax action (ties share), mixed with ``epsilon`` uniform."""

    score: Callable[[BanditLog, np.ndarray], np.ndarray]
    epsilon: float = 0.0
    name: str = "greedy"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        s = self.score(log, rows)
        best = s >= s.max(axis=1, keepdims=True) - 1e-12
        p = best / best.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * p + self.epsilon / s.shape[1]


def iter_chunks(n: int, n_actions: int) -> list[np.ndarray]:
    """Row blocks of ``n`` events such that a block's ``(rows, n_actions)`` matrix stays small."""
    size = max(1, CHUNK_CELLS // max(1, n_actions))
    return [np.arange(s, min(n, s + size)) for s in range(0, n, size)]
