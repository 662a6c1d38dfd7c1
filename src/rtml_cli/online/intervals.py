"""Confidence intervals for replay figures: a bootstrap over sessions, paired across strategies.

The requests of one session are correlated (the same visitor, the same intent), so
resampling requests would give intervals that are too narrow. Every interval here resamples
*sessions*: HR/MRR/NDCG are ratios (hits over requests with a truth), and each bootstrap
replicate reweights every session's sums and counts. All strategies share the same
replicates, so the interval of a difference between two strategies is paired: it reflects
only how the two disagree on the same sessions, which is what decides a ranking.

The replicates are Poisson(1) weights per session (drawn by table lookup; the Poisson bootstrap, Hanley &
MacGibbon 2006; Chamandy et al. 2012): for the thousands of sessions of a replay it
matches the multinomial bootstrap, and it can be drawn in chunks, so memory stays bounded
by ``_CHUNK_CELLS`` whatever the number of sessions. Intervals are percentile intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95
DEFAULT_BOOTSTRAP = 1000
_CHUNK_CELLS = 4_000_000  # weights drawn at once: replicates x sessions


def _poisson1_table(bits: int = 16) -> np.ndarray:
    """Poisson(1) by inverse CDF on ``bits``-bit uniforms: entry u is the smallest x with
    CDF(x) > (u + 1/2) / 2^bits. Every probability is within 2^-bits of Poisson(1)'s (values
    above 8, together < 1e-6, are cut), and a table lookup is ~10x cheaper than numpy's
    Poisson sampler: at a few million sessions x 1,000 replicates that was most of a
    replay's summary."""
    probs = [math.exp(-1.0) / math.factorial(x) for x in range(20)]
    cdf = np.cumsum(probs)
    u = (np.arange(1 << bits) + 0.5) / (1 << bits)
    return np.searchsorted(cdf, u, side="right").astype(np.float32)


_POISSON1 = _poisson1_table()


@dataclass(frozen=True)
class SessionBootstrap:
    """``n_boot`` Poisson(1) weight vectors over ``n_sessions`` sessions, drawn from ``seed``.

    Weights are drawn again for every call in the same order, so every figure computed
    from one ``SessionBootstrap`` sees the same replicates (paired across strategies,
    metrics and slices) without holding them all in memory.
    """

    n_sessions: int
    n_boot: int = DEFAULT_BOOTSTRAP
    seed: int = 0

    def weights(self):
        """The replicate weights, (up to _CHUNK_CELLS / n_sessions, n_sessions) float32 per chunk,
        in the same order on every call (shared by every figure: paired)."""
        rng = np.random.default_rng([self.seed, 20_261_202])
        chunk = max(1, min(self.n_boot, _CHUNK_CELLS // max(self.n_sessions, 1)))
        done = 0
        while done < self.n_boot:
            size = min(chunk, self.n_boot - done)
            draws = rng.integers(0, 1 << 16, size=(size, self.n_sessions), dtype=np.uint16)
            yield _POISSON1.take(draws)
            done += size

    def ratios(self, sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Replicates of ``sum(sums) / sum(counts)``: (n_boot, columns of ``sums``).

        ``sums``: (n_sessions, m) per-session totals of m figures (e.g. one per strategy);
        ``counts``: their denominators, (n_sessions,) shared or (n_sessions, m). A replicate
        whose resampled denominator is 0 is NaN."""
        sums = np.asarray(sums, dtype=np.float32).reshape(self.n_sessions, -1)
        counts = np.asarray(counts, dtype=np.float32).reshape(self.n_sessions, -1)
        out = []
        for w in self.weights():
            num = (w @ sums).astype(np.float64)
            den = (w @ counts).astype(np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
        return np.concatenate(out) if out else np.zeros((0, sums.shape[1]))


def interval(replicates: np.ndarray, level: float = CONFIDENCE) -> tuple[float, float] | None:
    """The percentile interval of bootstrap replicates (NaN replicates left out); None when
    there are none."""
    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def session_sums(
    values: np.ndarray, req_sess: np.ndarray, mask: np.ndarray, n_sessions: int
) -> np.ndarray:
    """Per-session totals of ``values`` (per request) over the requests in ``mask``."""
    return np.bincount(
        req_sess[mask], weights=np.asarray(values, dtype=np.float64)[mask], minlength=n_sessions
    )


def sample_keep(
    session_ids: list[str], spec: tuple[str, float], candidates: np.ndarray
) -> np.ndarray:
    """Which sessions a sampled replay keeps (a bool per session), deterministically.

    ``spec`` is ``("share", p)`` (each session kept when its hash falls in the first ``p``
    of the hash range) or ``("sessions", n)`` (the ``n`` sessions with the smallest hash
    among ``candidates``, the sessions that have requests in the window). The hash is CRC-32
    of ``"sample:" + session_id``, stable everywhere and independent of the shard hash."""
    import zlib

    hashes = np.fromiter(
        (zlib.crc32(f"sample:{s}".encode()) for s in session_ids),
        dtype=np.int64,
        count=len(session_ids),
    )
    kind, amount = spec
    if kind == "share":
        return hashes < amount * 2**32
    keep = np.zeros(len(session_ids), dtype=bool)
    pool = np.flatnonzero(candidates)
    order = np.lexsort((pool, hashes[pool]))
    keep[pool[order[: int(amount)]]] = True
    return keep
