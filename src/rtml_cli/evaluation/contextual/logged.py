"""Contextual bandits on a team's own bandit log: would a learning policy beat greedy there?

The replay method (Li, Chu, Langford, Wang 2011): events are read in time order; for each
event a policy chooses one action from the event's context; when the choice matches the
logged action the event counts — the policy sees its reward and learns from it — and
otherwise it is skipped, as if that request had never come. On a uniformly random log the
counted events are an unbiased sample of what the policy would have met online, so their
mean reward estimates its CTR.

On a log whose propensities are not uniform, each counted event is weighted by ``1 /
propensity`` (IPS-weighted replay, self-normalised), which undoes the logging policy's
preference for some actions; the effective sample size of the weights says how many
uniform events that is worth. A uniform log has equal weights, so the two coincide.

Positions: each event is one impression at one slot. The slot's one-hot position is part
of the context (one policy over all events) rather than a separate replay per position:
on a log with P positions a separate replay would leave each policy ~1/P of its counted
events, and on a uniformly random log the action was drawn independently of the slot, so
every event is a valid replay event whatever its position. The CTR is over the log's mix
of positions; ``by_position`` splits it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.evaluation.contextual.policies import (
    CONTEXTUAL_POLICIES,
    ContextualPolicy,
    with_item_features,
)
from rtml_cli.evaluation.ope.diagnostics import percentile_ci
from rtml_cli.evaluation.ope.log import (
    BanditLog,
    bandit_log_from_frame,
    context_matrix,
    read_table,
    resolve_context_columns,
)

# The context columns looked for when --context-cols is not given: the bandit contract's
# ctx_* and the Open Bandit Dataset's user features and user-item affinities.
DEFAULT_CONTEXT = "ctx_*,user_feature_*,user-item_affinity_*"
CURVE_POINTS = 20
Z_95, Z_80_POWER = 1.96, 0.84


@dataclass
class ReplayLog:
    """What a replay reads, one row per logged impression, in time order.

    ``X``: the context each policy sees; ``action``: the logged action as a dense index
    into ``0..n_actions-1``; ``weight``: ``1 / propensity`` (all ones on a uniform log);
    ``position``: the logged slot (for the per-position split).
    """

    X: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    weight: np.ndarray
    position: np.ndarray
    n_actions: int


@dataclass
class PolicyReplay:
    """One policy's replay over a log (``to_dict`` is its row in the JSON document)."""

    policy: str
    events: int
    matched_events: int
    matched_share: float
    clicks: float
    ctr: float
    ci_low: float
    ci_high: float
    effective_sample_size: float
    tail_choice_share: float
    tail_click_share: float | None
    coverage: float
    by_position: dict[str, dict[str, float]]
    ctr_curve: list[dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay_policy(
    policy: ContextualPolicy,
    log: ReplayLog,
    *,
    rng: np.random.Generator,
    tail: np.ndarray,
    batch_size: int = 32,
    learn: bool = True,
    n_boot: int = 200,
) -> PolicyReplay:
    """Replay ``policy`` over ``log`` (module docstring).

    With ``learn`` the policy starts fresh and, after every ``batch_size`` events, learns
    from the events of the batch whose logged action it chose. Without it the policy is
    frozen (already trained) and chooses by its ``slate_probs`` — its posterior mean for
    LinUCB and linear TS — so the estimate is of the frozen policy's value. ``tail`` is a
    boolean mask of the long-tail actions.
    """
    n, dim = log.X.shape
    if learn:
        policy.reset(log.n_actions, dim, rng)
    chosen = np.empty(n, dtype=np.int64)
    for start in range(0, n, batch_size):
        rows = slice(start, start + batch_size)
        X = log.X[rows]
        frozen_pick = None if learn else _sample(policy.slate_probs(X, 1), rng)
        pick = policy.select(X, 1, rng)[:, 0] if frozen_pick is None else frozen_pick
        chosen[rows] = pick
        hit = pick == log.action[rows]
        if learn and hit.any():
            policy.update(X[hit], pick[hit], log.reward[rows][hit])
    return _summarise(policy.name, log, chosen, rng=rng, tail=tail, n_boot=n_boot)


def _sample(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One action per row drawn from the rows of ``probs``."""
    cdf = np.cumsum(probs, axis=1)
    u = rng.random((probs.shape[0], 1)) * cdf[:, -1:]
    return np.minimum((cdf < u).sum(axis=1), probs.shape[1] - 1)


def weighted_ctr(reward: np.ndarray, weight: np.ndarray) -> float:
    """The self-normalised weighted mean reward (NaN when there is nothing to average)."""
    total = float(weight.sum())
    return float((weight * reward).sum() / total) if total > 0 else math.nan


def _summarise(
    name: str,
    log: ReplayLog,
    chosen: np.ndarray,
    *,
    rng: np.random.Generator,
    tail: np.ndarray,
    n_boot: int,
) -> PolicyReplay:
    matched = chosen == log.action
    r, w = log.reward[matched], log.weight[matched]
    m = int(matched.sum())
    value = weighted_ctr(r, w)
    ess = float(w.sum() ** 2 / (w**2).sum()) if m else 0.0
    lo, hi = _bootstrap(r, w, rng, n_boot)
    if m and not r.any():
        # No click at all: the bootstrap's 0–0 would claim certainty; the rule of three
        # (95% upper bound 3/n for zero successes in n trials) does not.
        hi = max(hi, 3.0 / ess) if math.isfinite(hi) else 3.0 / ess
    clicks_w = r * w
    tail_clicks = float(clicks_w[tail[chosen[matched]]].sum())
    return PolicyReplay(
        policy=name,
        events=int(chosen.size),
        matched_events=m,
        matched_share=m / max(chosen.size, 1),
        clicks=float(r.sum()),
        ctr=value,
        ci_low=lo,
        ci_high=hi,
        effective_sample_size=ess,
        tail_choice_share=float(tail[chosen].mean()) if chosen.size else math.nan,
        tail_click_share=tail_clicks / float(clicks_w.sum()) if clicks_w.sum() > 0 else None,
        coverage=float(np.unique(chosen).size / log.n_actions),
        by_position=_by_position(log, matched),
        ctr_curve=_curve(log, matched),
    )


def _bootstrap(
    r: np.ndarray, w: np.ndarray, rng: np.random.Generator, n_boot: int
) -> tuple[float, float]:
    """Percentile 95% interval of the weighted CTR, resampling the counted events."""
    if n_boot <= 0 or r.size == 0:
        return math.nan, math.nan
    idx = rng.integers(0, r.size, size=(n_boot, r.size))
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = (r[idx] * w[idx]).sum(axis=1) / w[idx].sum(axis=1)
    return percentile_ci(boots)


def _by_position(log: ReplayLog, matched: np.ndarray) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for p in np.unique(log.position):
        rows = matched & (log.position == p)
        out[str(int(p))] = {
            "matched_events": int(rows.sum()),
            "ctr": weighted_ctr(log.reward[rows], log.weight[rows]),
        }
    return out


def _curve(log: ReplayLog, matched: np.ndarray) -> list[dict[str, float]]:
    """The cumulative replayed CTR after each of ``CURVE_POINTS`` shares of the log."""
    n = matched.size
    marks = np.unique(np.linspace(0, n, CURVE_POINTS + 1).astype(int)[1:])
    wr = np.cumsum(np.where(matched, log.weight * log.reward, 0.0))
    ww = np.cumsum(np.where(matched, log.weight, 0.0))
    mm = np.cumsum(matched)
    return [
        {
            "events": int(e),
            "matched_events": int(mm[e - 1]),
            "ctr": float(wr[e - 1] / ww[e - 1]) if ww[e - 1] > 0 else math.nan,
        }
        for e in marks
    ]


# --- the verdict ---------------------------------------------------------------------


def verdict(runs: Sequence[PolicyReplay], *, min_matched: int) -> dict[str, Any]:
    """Whether the log can rank the policies, or only noise would.

    A policy with an effective sample size below ``min_matched`` is too thin to rank. Of the
    others, the one with the highest CTR is called best only when its 95% interval lies
    above every other's; otherwise the verdict names the policies it cannot be told from
    and about how many log events would separate it from the closest one (a two-sided 5%
    test with 80% power, at the counted share of events each policy gets now).
    """
    thin = [r.policy for r in runs if r.effective_sample_size < min_matched]
    ranked = sorted(
        (r for r in runs if r.effective_sample_size >= min_matched and math.isfinite(r.ctr)),
        key=lambda r: -r.ctr,
    )
    out: dict[str, Any] = {"decided": False, "best": None, "beats": [], "ties": []}
    out["too_few_events"] = thin
    out["events_needed"] = None
    if not ranked:
        out["text"] = (
            f"the log cannot decide: no policy has {min_matched} (effective) matched events"
        )
        return out
    best, others = ranked[0], ranked[1:]
    beats = [r.policy for r in others if _above(best, r)]
    ties = [r for r in others if not _above(best, r)]
    out["beats"], out["ties"] = beats, [r.policy for r in ties]
    if others and not ties:
        out.update(decided=True, best=best.policy)
        text = f"{best.policy} is best: its 95% interval lies above every other policy's"
    elif not others:
        text = f"only {best.policy} has enough matched events; nothing to compare it with"
    else:
        needed = _events_needed(best, ties[0])
        out["events_needed"] = needed
        text = (
            f"the log cannot decide between {best.policy} and "
            f"{', '.join(r.policy for r in ties)}: their 95% intervals overlap"
        )
        if beats:
            text += f" ({best.policy} does beat {', '.join(beats)})"
        if needed is not None:
            text += f"; telling {best.policy} from {ties[0].policy} needs ~{needed:,} log events"
    if thin:
        text += f"; too few matched events to rank {', '.join(thin)} (< {min_matched})"
    out["text"] = text
    return out


def _above(a: PolicyReplay, b: PolicyReplay) -> bool:
    return math.isfinite(a.ci_low) and math.isfinite(b.ci_high) and a.ci_low > b.ci_high


def _events_needed(a: PolicyReplay, b: PolicyReplay) -> int | None:
    """Log events for a 5% two-sided test with 80% power to see ``a.ctr - b.ctr``."""
    gap = a.ctr - b.ctr
    if not gap > 0:
        return None
    var = a.ctr * (1 - a.ctr) + b.ctr * (1 - b.ctr)
    per_policy = (Z_95 + Z_80_POWER) ** 2 * var / gap**2
    share = min(a.effective_sample_size / a.events, b.effective_sample_size / b.events)
    return math.ceil(per_policy / share) if share > 0 else None


# --- reading a log ---------------------------------------------------------------------


@dataclass
class LoggedData:
    """A log prepared for replay, with what the report says about it."""

    replay: ReplayLog
    source: str
    actions: list[Any]
    positions: list[int]
    uniform: bool
    uniformity: str
    propensity_min: float | None
    propensity_max: float | None
    context_columns: list[str]
    features: list[str]
    item_features: list[str]
    item_matrix: np.ndarray | None  # (n_actions, features), row = dense action index
    popularity: np.ndarray
    warnings: list[str] = field(default_factory=list)


def load_logged(
    path: str | Path,
    *,
    context_cols: str | None = None,
    items: str | Path | None = None,
    assume_uniform: bool = False,
) -> LoggedData:
    """Read and check a bandit log for replay: context design matrix, weights, uniformity.

    Raises ``DataError`` (65) for a log with one action, a log without propensities that is
    not declared uniform, or actions the item table lacks; ``UsageError`` (2) for context
    columns the log does not have; ``InputMissing`` (66) for a missing file.
    """
    frame = read_table(path, what="bandit log")
    has_prop = "propensity" in frame.columns and frame.get_column("propensity").null_count() == 0
    if "propensity" in frame.columns and not has_prop and not assume_uniform:
        n_null = frame.get_column("propensity").null_count()
        raise DataError(
            f"bandit log {path}: {n_null} row(s) have no propensity; replay on a non-uniform "
            "log weights each event by 1/propensity (--assume-uniform if it was uniform)"
        )
    log = bandit_log_from_frame(
        frame, source=str(path), context_cols="", require_propensity=has_prop
    )
    if log.n_actions < 2:
        raise DataError(
            f"bandit log {path} has only one action ({log.actions[0]}): there is nothing for "
            "a policy to choose between"
        )
    uniform, note, weight = _uniformity(log, str(path), has_prop, assume_uniform)
    columns = _context_columns(frame.columns, context_cols)
    X, names = context_matrix(frame, columns) if columns else (np.zeros((log.n, 0)), [])
    X, names = _with_position_and_bias(X, names, log)
    item_features: list[str] = []
    item_matrix = None
    if items is not None:
        item_features, item_matrix = _item_features(items, log)
    order = log.ts_order if log.ts_order is not None else np.arange(log.n)
    positions = log.positions[log.position_idx]
    replay = ReplayLog(
        X=np.ascontiguousarray(X[order]),
        action=log.action_idx[order],
        reward=log.reward[order],
        weight=weight[order],
        position=positions[order],
        n_actions=log.n_actions,
    )
    popularity = np.bincount(
        log.action_idx, weights=log.reward * weight, minlength=log.n_actions
    ) / max(log.n, 1)
    prop = log.propensity
    return LoggedData(
        replay=replay,
        source=str(path),
        actions=log.actions.tolist(),
        positions=[int(p) for p in log.positions],
        uniform=uniform,
        uniformity=note,
        propensity_min=float(prop.min()) if has_prop and prop is not None else None,
        propensity_max=float(prop.max()) if has_prop and prop is not None else None,
        context_columns=columns,
        features=names,
        item_features=item_features,
        item_matrix=item_matrix,
        popularity=popularity,
        warnings=list(log.warnings),
    )


def _uniformity(
    log: BanditLog, source: str, has_prop: bool, assume_uniform: bool
) -> tuple[bool, str, np.ndarray]:
    """Whether the log is uniformly random (from its propensities), a note saying how that
    was decided, and each event's weight (1 / propensity; ones when uniform)."""
    ones = np.ones(log.n)
    if not has_prop or log.propensity is None:
        if not assume_uniform:
            raise DataError(
                f"bandit log {source} has no 'propensity' column: without it rtml cannot tell "
                "a uniform log from a biased one (pass --assume-uniform if the logging policy "
                "chose uniformly at random)"
            )
        return True, "assumed uniform (--assume-uniform; the log has no propensities)", ones
    p = log.propensity
    if p.max() - p.min() <= 1e-9 * p.max():
        note = f"uniform: every propensity is {p[0]:.6g}"
        if abs(p[0] * log.n_actions - 1) > 1e-6:
            note += f" (1/{1 / p[0]:.4g}, while the log has {log.n_actions} actions)"
        else:
            note += f" = 1/{log.n_actions} actions"
        return True, note, ones
    if assume_uniform:
        raise UsageError(
            f"--assume-uniform, but {source}'s propensities range from {p.min():.4g} to "
            f"{p.max():.4g}: the log is not uniform, so leave the flag out"
        )
    return False, f"not uniform: propensities range from {p.min():.4g} to {p.max():.4g}", 1 / p


def _context_columns(columns: Sequence[str], spec: str | None) -> list[str]:
    """The context columns: ``spec`` as in ``evaluate ope --context-cols``; every name or
    prefix in it must match a column. Without a spec, ``DEFAULT_CONTEXT`` (those present)."""
    if spec is None:
        return resolve_context_columns(columns, DEFAULT_CONTEXT)
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        if item.endswith("*") and not any(c.startswith(item[:-1]) for c in columns):
            raise UsageError(f"--context-cols {item!r} matches no column of the log")
    chosen = resolve_context_columns(columns, spec)
    reserved = {"action", "reward", "propensity", "ts", "position"} & set(chosen)
    if reserved:
        raise UsageError(f"--context-cols may not name {', '.join(sorted(reserved))}")
    return chosen


def _with_position_and_bias(
    X: np.ndarray, names: list[str], log: BanditLog
) -> tuple[np.ndarray, list[str]]:
    """Context + a constant 1 (the linear policies fit no intercept of their own) + the
    slot's one-hot position when the log has more than one (module docstring)."""
    blocks = [X, np.ones((log.n, 1))]
    names = [*names, "bias"]
    if log.n_positions > 1:
        blocks.append(np.eye(log.n_positions)[log.position_idx])
        names += [f"position={int(p)}" for p in log.positions]
    return np.hstack(blocks), names


def _item_features(items: str | Path, log: BanditLog) -> tuple[list[str], np.ndarray]:
    """The item table's feature columns and their design matrix, one row per action of the
    log (numeric as they are, strings one-hot); every logged action must be in the table."""
    table = read_table(items, what="item table")
    if "item_id" not in table.columns:
        raise DataError(f"item table {items} has no item_id column")
    row_of = {str(v): i for i, v in enumerate(table.get_column("item_id").to_list())}
    missing = [a for a in log.actions.tolist() if str(a) not in row_of]
    if missing:
        shown = ", ".join(map(str, missing[:5]))
        raise DataError(
            f"item table {items} lacks {len(missing)} logged action(s) ({shown}); "
            "it must describe every action of the log"
        )
    names = [c for c in table.columns if c != "item_id"]
    if not names:
        raise DataError(f"item table {items} has no feature column besides item_id")
    matrix, _ = context_matrix(table, names)
    return names, matrix[[row_of[str(a)] for a in log.actions.tolist()]]


# --- the job -----------------------------------------------------------------------------


@dataclass
class LogReplayResult:
    """Everything ``rtml evaluate contextual --log`` reports (``to_dict`` is the document)."""

    log: str
    n_events: int
    n_actions: int
    positions: list[int]
    uniform: bool
    uniformity: str
    method: str
    positions_handling: str
    propensity_min: float | None
    propensity_max: float | None
    context_columns: list[str]
    n_features: int
    item_features: list[str]
    item_features_used_by: list[str]
    top_n: int
    tail_actions: int
    batch_size: int
    min_matched: int
    bootstrap: int
    seed: int
    params: dict[str, float]
    policies: list[PolicyReplay]
    verdict: dict[str, Any]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "policies"}
        out["mode"] = "log"
        out["policies"] = [p.to_dict() for p in self.policies]
        return out


def evaluate_contextual_log(
    log: str | Path,
    *,
    policies: Sequence[str] = tuple(CONTEXTUAL_POLICIES),
    context_cols: str | None = None,
    items: str | Path | None = None,
    assume_uniform: bool = False,
    batch_size: int = 32,
    top_n: int | None = None,
    epsilon: float = 0.1,
    alpha: float = 1.0,
    ts_scale: float = 0.25,
    n_boot: int = 200,
    min_matched: int = 100,
    seed: int = 0,
) -> LogReplayResult:
    """The job behind ``rtml evaluate contextual --log`` (module docstring)."""
    from rtml_cli.evaluation.contextual.online import one_blas_thread
    from rtml_cli.evaluation.contextual.policies import make_policies

    _check_options(batch_size, n_boot, min_matched, epsilon, alpha, ts_scale)
    pols = make_policies(policies, epsilon=epsilon, alpha=alpha, ts_scale=ts_scale)
    data = load_logged(log, context_cols=context_cols, items=items, assume_uniform=assume_uniform)
    if data.item_matrix is not None:
        pols = [with_item_features(p, data.item_matrix) for p in pols]
    n_actions = data.replay.n_actions
    top_n = top_n if top_n is not None else max(1, math.ceil(0.2 * n_actions))
    if not 1 <= top_n < n_actions:
        raise UsageError(f"--top-n must be between 1 and {n_actions - 1} for this log")
    tail = np.ones(n_actions, dtype=bool)
    tail[np.argsort(-data.popularity, kind="stable")[:top_n]] = False
    with one_blas_thread():
        runs = [
            replay_policy(
                policy,
                data.replay,
                rng=np.random.default_rng([seed, j]),
                tail=tail,
                batch_size=batch_size,
                n_boot=n_boot,
            )
            for j, policy in enumerate(pols)
        ]
    warnings = data.warnings + _ess_warnings(runs, data.uniform, min_matched)
    return LogReplayResult(
        log=data.source,
        n_events=int(data.replay.reward.size),
        n_actions=n_actions,
        positions=data.positions,
        uniform=data.uniform,
        uniformity=data.uniformity,
        method="replay" if data.uniform else "ips-weighted replay",
        positions_handling=_positions_note(data.positions),
        propensity_min=data.propensity_min,
        propensity_max=data.propensity_max,
        context_columns=data.context_columns,
        n_features=len(data.features),
        item_features=data.item_features,
        item_features_used_by=[p.name for p in pols if type(p).__name__.startswith("Hybrid")],
        top_n=top_n,
        tail_actions=int(tail.sum()),
        batch_size=batch_size,
        min_matched=min_matched,
        bootstrap=n_boot,
        seed=seed,
        params={"epsilon": epsilon, "alpha": alpha, "ts_scale": ts_scale},
        policies=runs,
        verdict=verdict(runs, min_matched=min_matched),
        warnings=warnings,
    )


def _positions_note(positions: list[int]) -> str:
    if len(positions) <= 1:
        return "one position"
    return (
        f"{len(positions)} positions, position as context: one replay over all events with "
        "the slot's one-hot position in the context (a replay per position would leave each "
        f"policy ~1/{len(positions)} of its matched events); CTR is over the log's "
        "position mix"
    )


def _ess_warnings(runs: Sequence[PolicyReplay], uniform: bool, min_matched: int) -> list[str]:
    thin = [r for r in runs if r.effective_sample_size < min_matched]
    if not thin:
        return []
    what = "matched events" if uniform else "effective sample size"
    shown = ", ".join(f"{r.policy} {r.effective_sample_size:,.0f}" for r in thin)
    return [
        f"{what} below {min_matched} ({shown}): too small to tell these policies apart; "
        + ("a longer log is needed" if uniform else "the log's propensities are too skewed")
    ]


def _check_options(
    batch_size: int, n_boot: int, min_matched: int, epsilon: float, alpha: float, ts: float
) -> None:
    if batch_size < 1:
        raise UsageError("--batch-size must be 1 or more")
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if min_matched < 1:
        raise UsageError("--min-matched must be 1 or more")
    if not 0 <= epsilon <= 1:
        raise UsageError("--epsilon must be in [0, 1]")
    if alpha < 0 or ts < 0:
        raise UsageError("--alpha and --ts-scale must be >= 0")
