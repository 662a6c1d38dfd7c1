"""Intervals for the report computed from RESULTS, when a document does not carry them.

The bootstrap is ``rtml simulate``'s own (``rtml_cli.online.intervals``): Poisson weights
over *sessions* (a session's requests stay together), a rate is the ratio of the resampled
sums (hits over requests that have a truth), a difference between two strategies uses the
same replicates for both (paired). Requests without a truth (``hit``, ``rr``, ``ndcg`` null
in RESULTS) are left out of every figure, as ``rtml simulate`` does. The replicates depend
only on (seed, number of sessions), so every figure of one report is drawn from the same
ones and a rerun gives the same intervals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rtml_cli.online import intervals

LEVEL = intervals.CONFIDENCE


@dataclass(frozen=True)
class Estimate:
    """A figure with its 95% interval and denominator (requests with a truth, sessions)."""

    value: float
    low: float | None
    high: float | None
    requests: int
    sessions: int

    @property
    def cannot_tell(self) -> bool:
        """The interval includes zero (for a difference: no detectable effect)."""
        return self.low is not None and self.high is not None and self.low <= 0 <= self.high


class SessionBootstrap:
    """Session-level bootstrap over one RESULTS frame (``n`` resamples, ``seed``)."""

    def __init__(self, frame: Any, *, n: int = 1000, seed: int = 0) -> None:
        import polars as pl

        self.n = int(n)
        self.seed = int(seed)
        # dense session codes 0..S-1 shared by every strategy of the frame
        self.frame = frame.with_columns(
            (pl.col("session_id").cast(pl.Utf8).rank("dense").cast(pl.Int64) - 1).alias("_session")
        )
        self.n_sessions = int(self.frame["_session"].max() or 0) + 1 if frame.height else 0

    @property
    def replicates(self) -> intervals.SessionBootstrap:
        return intervals.SessionBootstrap(self.n_sessions, self.n, self.seed)

    def _rows(self, strategy: str, metric: str, segment: str | None) -> Any:
        import polars as pl

        rows = self.frame.filter(pl.col("strategy") == strategy)
        if segment is not None and segment != "all":
            rows = rows.filter(pl.col("segment") == segment)
        return rows.filter(pl.col(metric).is_not_null())

    def _interval(self, draws: np.ndarray) -> tuple[float | None, float | None]:
        found = intervals.interval(draws) if self.n > 0 else None
        return (None, None) if found is None else found

    def _ratio(self, values: np.ndarray, sessions: np.ndarray) -> tuple[float, np.ndarray]:
        sums = np.bincount(sessions, weights=values, minlength=self.n_sessions)
        counts = np.bincount(sessions, minlength=self.n_sessions).astype(np.float64)
        value = float(sums.sum() / counts.sum()) if counts.sum() else float("nan")
        if self.n <= 0:
            return value, np.array([])
        return value, self.replicates.ratios(sums, counts)[:, 0]

    # ------------------------------------------------------------------------ estimates
    def rate(self, strategy: str, metric: str = "hit", segment: str | None = None) -> Estimate:
        """The mean of ``metric`` over requests with a truth, with its 95% interval."""
        rows = self._rows(strategy, metric, segment)
        values = rows[metric].cast(float).to_numpy()
        sessions = rows["_session"].to_numpy()
        value, draws = self._ratio(values, sessions)
        low, high = self._interval(draws)
        return Estimate(value, low, high, int(values.size), int(np.unique(sessions).size))

    def difference(
        self, strategy: str, other: str, metric: str = "hit", segment: str | None = None
    ) -> Estimate:
        """``strategy`` minus ``other`` on the requests both scored (paired resamples)."""
        a = self._rows(strategy, metric, segment).select("request_id", "_session", metric)
        b = self._rows(other, metric, segment).select("request_id", metric)
        both = a.join(b, on="request_id", suffix="_other")
        diff = (both[metric].cast(float) - both[f"{metric}_other"].cast(float)).to_numpy()
        sessions = both["_session"].to_numpy()
        value, draws = self._ratio(diff, sessions)
        low, high = self._interval(draws)
        return Estimate(value, low, high, int(diff.size), int(np.unique(sessions).size))

    def quantile(self, strategy: str, q: float, column: str = "latency_us") -> Estimate:
        """The ``q`` quantile of ``column`` over the strategy's requests, resampled by session
        (no truth needed: every request is timed)."""
        import polars as pl

        rows = self.frame.filter(pl.col("strategy") == strategy).filter(
            pl.col(column).is_not_null()
        )
        values = rows[column].cast(float).to_numpy()
        sessions = rows["_session"].to_numpy()
        order = np.argsort(values, kind="stable")
        values, sessions = values[order], sessions[order]
        value = float(np.quantile(values, q)) if values.size else float("nan")
        draws = []
        if self.n > 0:
            # the same Poisson replicates as every other interval of the replay
            step = max(1, 4_000_000 // max(values.size, 1))
            for block in self.replicates.weights():
                for start in range(0, block.shape[0], step):
                    cum = np.cumsum(block[start : start + step][:, sessions], axis=1)
                    target = q * cum[:, -1:]
                    index = np.minimum((cum < target).sum(axis=1), values.size - 1)
                    draws.append(values[index])
        low, high = self._interval(np.concatenate(draws) if draws else np.array([]))
        return Estimate(value, low, high, int(values.size), int(np.unique(sessions).size))
