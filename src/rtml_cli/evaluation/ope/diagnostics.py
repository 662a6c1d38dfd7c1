"""The per-event terms behind every estimate, the bootstrap, and the weight diagnostics.

``event_terms`` walks the log in chunks and computes ``w, r, q, v`` (see ``estimators``)
plus how much of the target's probability falls on actions the log rarely or never took.
The reward model is fit once and held fixed in the bootstrap (as in OBP); intervals are
percentile intervals over resamples of the events drawn with one seeded generator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rtml_cli.errors import DataError
from rtml_cli.evaluation.ope.estimators import Estimator, EventTerms
from rtml_cli.evaluation.ope.log import BanditLog
from rtml_cli.evaluation.ope.reward_models import RewardModel
from rtml_cli.evaluation.ope.targets import PROB_TOLERANCE, TargetPolicy, iter_chunks

# Weight diagnostics: warn above these.
MAX_WEIGHT_WARN = 100.0
MIN_ESS_SHARE_WARN = 0.01
NO_SUPPORT_SHARE_WARN = 0.01


@dataclass
class Support:
    """How often the log took each action at each position (for the overlap diagnostic)."""

    counts: np.ndarray  # (P, A)

    @classmethod
    def of(cls, log: BanditLog) -> Support:
        counts = np.zeros((log.n_positions, log.n_actions))
        np.add.at(counts, (log.position_idx, log.action_idx), 1.0)
        return cls(counts)


def event_terms(
    log: BanditLog, policy: TargetPolicy, model: RewardModel | None, *, min_support: int = 10
) -> tuple[EventTerms, dict[str, float]]:
    """``w, r, q, v`` for every event, plus the overlap shares of the target's probability.

    Raises ``DataError`` when the policy's probabilities are negative or do not sum to 1
    (within ``targets.PROB_TOLERANCE``) for some event.
    """
    if log.propensity is None:
        raise DataError(f"{log.source} has no propensities")
    propensity = log.propensity
    n = log.n
    w = np.empty(n)
    q = np.zeros(n)
    v = np.zeros(n)
    counts = Support.of(log).counts
    never = counts == 0
    rare = counts < min_support
    mass_never = 0.0
    mass_rare = 0.0
    for rows in iter_chunks(n, log.n_actions):
        pi = policy.probs(log, rows)
        if pi.shape != (len(rows), log.n_actions):
            raise DataError(
                f"policy {policy.name} gives a {pi.shape} matrix for {len(rows)} events"
            )
        sums = pi.sum(axis=1)
        bad = np.abs(sums - 1.0) > PROB_TOLERANCE
        if bad.any() or (pi < 0).any() or not np.isfinite(pi).all():
            first = int(rows[np.flatnonzero(bad)[0]]) if bad.any() else int(rows[0])
            raise DataError(
                f"policy {policy.name}: action probabilities must be >= 0 and sum to 1 "
                f"(tolerance {PROB_TOLERANCE:g}) for every event; event {first} sums to "
                f"{sums[np.flatnonzero(bad)[0]] if bad.any() else float('nan'):.6g}"
            )
        a = log.action_idx[rows]
        pos = log.position_idx[rows]
        w[rows] = pi[np.arange(len(rows)), a] / propensity[rows]
        mass_never += float((pi * never[pos]).sum())
        mass_rare += float((pi * rare[pos]).sum())
        if model is not None:
            qhat = model.predict(log, rows)
            q[rows] = qhat[np.arange(len(rows)), a]
            v[rows] = np.sum(pi * qhat, axis=1)
    overlap = {
        "target_share_never_logged": min(1.0, mass_never / n),
        "target_share_rarely_logged": min(1.0, mass_rare / n),
    }
    return EventTerms(w=w, r=log.reward, q=q, v=v), overlap


def bootstrap_values(
    terms: EventTerms,
    estimators: Sequence[Estimator],
    n_boot: int,
    rng: np.random.Generator,
    *,
    block_cells: int = 1_000_000,
) -> np.ndarray:
    """``(n_boot, len(estimators))`` estimates on resamples of the events (with replacement).

    Every estimator sees the same resamples; resamples are drawn in blocks of
    ``block_cells`` indices so memory stays bounded.
    """
    n = terms.r.shape[0]
    out = np.empty((n_boot, len(estimators)))
    block = max(1, block_cells // max(n, 1))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        w, r, q, v = terms.w[idx], terms.r[idx], terms.q[idx], terms.v[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, est in enumerate(estimators):
                out[start : start + b, j] = est.value(w, r, q, v)
    return out


def weight_diagnostics(w: np.ndarray) -> dict[str, float]:
    """Effective sample size ``(sum w)^2 / sum w^2``, its share of n, max and mean weight."""
    n = w.shape[0]
    sw2 = float(np.sum(w**2))
    ess = float(np.sum(w)) ** 2 / sw2 if sw2 > 0 else 0.0
    return {
        "effective_sample_size": ess,
        "ess_share": ess / n,
        "max_weight": float(w.max()),
        "mean_weight": float(w.mean()),
        "share_zero_weight": float(np.mean(w == 0)),
    }


def diagnostic_warnings(diag: dict[str, float], n: int) -> list[str]:
    """What a reader of the estimates must know: huge weights, few effective events, no overlap."""
    out = []
    if diag["max_weight"] > MAX_WEIGHT_WARN:
        out.append(
            f"largest importance weight is {diag['max_weight']:.4g} (> {MAX_WEIGHT_WARN:g}): a few "
            "events dominate IPS and DR; trust SNIPS / SNDR / Switch-DR more, or evaluate a "
            "policy closer to the logging policy"
        )
    if diag["ess_share"] < MIN_ESS_SHARE_WARN:
        out.append(
            f"effective sample size is {diag['effective_sample_size']:.1f} of {n} events "
            f"({diag['ess_share']:.2%}): importance-weighted estimates rest on very few events"
        )
    if diag["target_share_never_logged"] > NO_SUPPORT_SHARE_WARN:
        out.append(
            f"{diag['target_share_never_logged']:.1%} of the target policy's probability is on "
            "actions the log never took at that position: IPS-type estimates cannot see them "
            "(biased low); only the reward model (DM/DR) speaks for them"
        )
    return out


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite ``samples`` (NaN, NaN when there are none)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)
