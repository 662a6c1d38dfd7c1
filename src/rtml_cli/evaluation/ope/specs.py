"""The ``--policy SPEC`` grammar of ``rtml evaluate ope``: which policy to evaluate.

    SPEC := uniform                 every action of the log equally likely
          | log:PATH                the empirical behaviour of another bandit log: per
                                    position, the share of its events that took each action
                                    (e.g. the Thompson-sampling policy, evaluated on the
                                    uniformly random log)
          | greedy[:EPS]            greedy on a per action x position mean-reward model
          | linear[:EPS]            greedy on per-action ridge regressions on the context
                                    columns (a linear contextual policy)
          | PATH                    a table of action probabilities (.parquet or .csv):
                                    - columns action, prob [, position]: context-free, one
                                      distribution (per position when ``position`` is given)
                                    - columns prob_<action>, one row per logged event in the
                                      log's row order: a per-event distribution

``greedy`` and ``linear`` are *learned from the log itself*: they are fit on the earliest
``fit_fraction`` of the events (by ``ts``) and evaluated on the rest, so a policy is never
scored on the events it was trained on. ``:EPS`` mixes in ``EPS`` of uniform exploration
(``greedy:0.1``), which also keeps importance weights bounded.

Probabilities must be >= 0 and sum to 1 per context within ``targets.PROB_TOLERANCE``.
Each form is a ``SpecKind`` in ``TARGET_POLICIES`` (tried in order; the first that claims a
spec builds it); ``rtml_cli.checks.ope`` checks every kind's probabilities.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.evaluation.ope.log import BanditLog, load_bandit_log, read_table
from rtml_cli.evaluation.ope.reward_models import MeanRewardModel
from rtml_cli.evaluation.ope.targets import (
    PROB_TOLERANCE,
    EventTablePolicy,
    PositionTablePolicy,
    ScorePolicy,
    TargetPolicy,
)
from rtml_cli.registry import Registry


@dataclass
class BuiltPolicy:
    policy: TargetPolicy
    eval_log: BanditLog
    description: str
    n_fit: int = 0
    warnings: list[str] = field(default_factory=list)


def _parse_epsilon(text: str, default: float) -> float:
    if not text:
        return default
    try:
        eps = float(text)
    except ValueError:
        raise UsageError(f"policy epsilon {text!r} is not a number (e.g. greedy:0.1)") from None
    if not 0 <= eps <= 1:
        raise UsageError(f"policy epsilon must be in [0, 1], got {eps:g}")
    return eps


def split_fit_eval(log: BanditLog, fit_fraction: float) -> tuple[BanditLog, BanditLog]:
    """The earliest ``fit_fraction`` of the events (by ts, else row order) and the rest."""
    if not 0 < fit_fraction < 1:
        raise UsageError("--fit-fraction must be strictly between 0 and 1")
    order = log.ts_order if log.ts_order is not None else np.arange(log.n)
    cut = int(round(fit_fraction * log.n))
    if cut < 1 or cut >= log.n:
        raise DataError(f"{log.source} has too few events ({log.n}) to fit and evaluate a policy")
    return log.subset(order[:cut]), log.subset(order[cut:])


def _ridge_per_action(log: BanditLog, l2: float = 1.0):
    """Per-action ridge regression of reward on [standardised context, 1]."""
    x = log.require_context("policy 'linear'")
    mean = x.mean(axis=0)
    scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    xs = np.hstack([(x - mean) / scale, np.ones((log.n, 1))])
    d = xs.shape[1]
    global_mean = float(log.reward.mean())
    theta = np.zeros((log.n_actions, d))
    for a in range(log.n_actions):
        m = log.action_idx == a
        xa = xs[m]
        # Shrink the intercept towards the global mean for rarely logged actions.
        target = log.reward[m] - global_mean
        theta[a] = np.linalg.solve(xa.T @ xa + l2 * np.eye(d), xa.T @ target)
        theta[a, -1] += global_mean

    def score(lg: BanditLog, rows: np.ndarray) -> np.ndarray:
        context = lg.require_context("policy 'linear'")
        z = np.hstack([(context[rows] - mean) / scale, np.ones((len(rows), 1))])
        return z @ theta.T

    return score


@dataclass(frozen=True)
class SpecKind:
    """One form of the SPEC grammar: its syntax (as ``--help`` shows it), which specs it
    claims, and how it builds the policy."""

    syntax: str
    matches: Callable[[str], bool]
    build: Callable[..., BuiltPolicy]  # (spec, log, *, fit_fraction, epsilon, context_cols)


TARGET_POLICIES: Registry[SpecKind] = Registry("target policy")


def build_policy(
    spec: str,
    log: BanditLog,
    *,
    fit_fraction: float = 0.5,
    epsilon: float | None = None,
    context_cols: str | None = None,
) -> BuiltPolicy:
    """Turn a SPEC (module docstring) into a ``TargetPolicy`` and the log to evaluate it on.

    The kinds of ``TARGET_POLICIES`` are tried in registration order; the first whose
    ``matches`` claims the spec builds it.
    """
    spec = spec.strip()
    if not spec:
        raise UsageError("--policy is empty; see `rtml evaluate ope --help` for the SPEC grammar")
    for kind in TARGET_POLICIES.entries():
        if kind.obj.matches(spec):
            return kind.obj.build(
                spec, log, fit_fraction=fit_fraction, epsilon=epsilon, context_cols=context_cols
            )
    *first, last = [k.obj.syntax for k in TARGET_POLICIES.entries()]
    raise UsageError(f"unknown policy spec {spec!r}: use {', '.join(first)} or {last}")


def _build_uniform(spec: str, log: BanditLog, **_: object) -> BuiltPolicy:
    A = log.n_actions
    table = np.full((log.n_positions, A), 1.0 / A)
    return BuiltPolicy(PositionTablePolicy(table, name="uniform"), log, f"uniform over {A} actions")


def _build_learned(
    spec: str,
    log: BanditLog,
    *,
    fit_fraction: float,
    epsilon: float | None,
    **_: object,
) -> BuiltPolicy:
    """``greedy[:EPS]`` and ``linear[:EPS]``: fit on the earliest events, evaluate on the rest."""
    head, _sep, arg = spec.partition(":")
    eps = _parse_epsilon(arg, epsilon if epsilon is not None else 0.0)
    fit, ev = split_fit_eval(log, fit_fraction)
    if head == "greedy":
        model = MeanRewardModel.fit(fit)
        policy = ScorePolicy(lambda lg, rows: model.predict(lg, rows), eps, name=spec)
        what = "greedy on the per action x position mean reward"
    else:
        if log.context is None or log.context.shape[1] == 0:
            raise UsageError(
                "policy 'linear' needs context columns: the log has no ctx_* columns; "
                "name them with --context-cols"
            )
        policy = ScorePolicy(_ridge_per_action(fit), eps, name=spec)
        what = (
            f"greedy on per-action ridge regressions over {log.context.shape[1]} context features"
        )
    desc = f"{what}, epsilon {eps:g}; fit on the first {fit.n} events, evaluated on {ev.n}"
    return BuiltPolicy(policy, ev, desc, n_fit=fit.n)


def _learned(head: str) -> Callable[[str], bool]:
    def matches(spec: str) -> bool:
        name, _sep, arg = spec.partition(":")
        return name == head and (not arg or _looks_numeric(arg))

    return matches


def _is_table(spec: str) -> bool:
    path = Path(spec)
    return path.suffix in (".parquet", ".csv", ".gz") or path.exists()


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _from_other_log(spec: str, log: BanditLog, **_: object) -> BuiltPolicy:
    """``log:PATH``: per position, the share of PATH's events that took each action."""
    path = spec.partition(":")[2]
    other = load_bandit_log(path, require_propensity=False, what="policy log")
    # other's dense action index -> this log's dense action index
    a_map = log.action_index_of(other.actions.tolist(), what=f"policy log {path}")
    p_map = log.position_index_of(other.positions.tolist(), what=f"policy log {path}")
    table = np.zeros((log.n_positions, log.n_actions))
    np.add.at(table, (p_map[other.position_idx], a_map[other.action_idx]), 1.0)
    missing = [int(log.positions[p]) for p in range(log.n_positions) if table[p].sum() == 0]
    warnings = []
    if missing:
        # Positions the other log never shows: use its overall behaviour there.
        overall = table.sum(axis=0)
        for p in range(log.n_positions):
            if table[p].sum() == 0:
                table[p] = overall
        warnings.append(
            f"policy log {path} has no events at position(s) {missing}; its overall action "
            "shares are used there"
        )
    table /= table.sum(axis=1, keepdims=True)
    return BuiltPolicy(
        PositionTablePolicy(table, name=f"log:{Path(path).name}"),
        log,
        f"empirical action shares per position of {path} ({other.n} events)",
        warnings=warnings,
    )


def _from_table(path: str, log: BanditLog, **_: object) -> BuiltPolicy:
    """A probability table: ``action, prob[, position]`` or ``prob_<action>`` per event."""
    frame = read_table(path, what="policy table")
    cols = frame.columns
    if "action" in cols and ("prob" in cols or "probability" in cols):
        return _from_action_table(path, frame, log)
    if any(c.startswith("prob_") for c in cols):
        return _from_event_table(path, frame, log)
    raise DataError(
        f"policy table {path} needs columns action + prob [+ position], or prob_<action> "
        f"columns with one row per logged event; it has {', '.join(cols[:8])}"
    )


def _from_action_table(path: str, frame: Any, log: BanditLog) -> BuiltPolicy:
    """Columns ``action, prob [, position]``: one context-free distribution (per position)."""
    import polars as pl

    cols = frame.columns
    pcol = "prob" if "prob" in cols else "probability"
    if frame.get_column(pcol).null_count():
        raise DataError(
            f"policy table {path}: {frame.get_column(pcol).null_count()} null probabilities"
        )
    probs = frame.get_column(pcol).cast(pl.Float64).to_numpy()
    if (probs < 0).any() or not np.isfinite(probs).all():
        raise DataError(f"policy table {path}: probabilities must be finite and >= 0")
    a = log.action_index_of(frame.get_column("action").to_list(), what=f"policy table {path}")
    table = np.zeros((log.n_positions, log.n_actions))
    if "position" in cols:
        p = log.position_index_of(
            frame.get_column("position").to_list(), what=f"policy table {path}"
        )
        np.add.at(table, (p, a), probs)
        absent = [int(log.positions[i]) for i in range(log.n_positions) if i not in set(p.tolist())]
        if absent:
            raise DataError(
                f"policy table {path} has no probabilities for position(s) {absent}, which "
                "the log has; give a distribution for every logged position"
            )
    else:
        np.add.at(table, (np.zeros_like(a), a), probs)
        table[:] = table[0]
    sums = table.sum(axis=1)
    bad = np.abs(sums - 1) > PROB_TOLERANCE
    if bad.any():
        where = ", ".join(
            f"position {int(log.positions[i])}: {sums[i]:.6g}" for i in np.flatnonzero(bad)[:3]
        )
        raise DataError(
            f"policy table {path}: probabilities must sum to 1 per position (tolerance "
            f"{PROB_TOLERANCE:g}); got {where}"
        )
    return BuiltPolicy(
        PositionTablePolicy(table, name=Path(path).name),
        log,
        f"context-free probability table {path}"
        + (" (per position)" if "position" in cols else ""),
    )


def _from_event_table(path: str, frame: Any, log: BanditLog) -> BuiltPolicy:
    """Columns ``prob_<action>``: one distribution per logged event, in the log's order."""
    import polars as pl

    prob_cols = [c for c in frame.columns if c.startswith("prob_")]
    if frame.height != log.n:
        raise DataError(
            f"policy table {path} has {frame.height} rows but the log has {log.n} events; a "
            "per-event table needs one row per logged event, in the log's order"
        )
    actions = [c[len("prob_") :] for c in prob_cols]
    # Action ids in column names are strings: match them against the log's ids as text.
    lookup = {str(x): i for i, x in enumerate(log.actions.tolist())}
    unknown = [x for x in actions if x not in lookup]
    if unknown:
        raise DataError(
            f"policy table {path} names {len(unknown)} action(s) that {log.source} never "
            f"logged ({', '.join(unknown[:5])}); OPE can only evaluate the log's actions"
        )
    matrix = np.zeros((log.n, log.n_actions))
    values = frame.select(prob_cols).cast(pl.Float64).to_numpy()
    if not np.isfinite(values).all() or (values < 0).any():
        raise DataError(f"policy table {path}: probabilities must be finite and >= 0")
    matrix[:, [lookup[x] for x in actions]] = values
    sums = matrix.sum(axis=1)
    bad = np.abs(sums - 1) > PROB_TOLERANCE
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"policy table {path}: probabilities must sum to 1 per event (tolerance "
            f"{PROB_TOLERANCE:g}); {int(bad.sum())} event(s) do not, first row {first} sums "
            f"to {sums[first]:.6g}"
        )
    return BuiltPolicy(
        EventTablePolicy(matrix, name=Path(path).name),
        log,
        f"per-event probability table {path}",
    )


TARGET_POLICIES.add(
    "uniform",
    SpecKind("uniform", lambda spec: spec == "uniform", _build_uniform),
    description="every action equally likely",
)
TARGET_POLICIES.add(
    "log",
    SpecKind(
        "log:PATH",
        lambda spec: spec.partition(":")[0] == "log" and bool(spec.partition(":")[2]),
        _from_other_log,
    ),
    description="another log's action shares per position",
)
TARGET_POLICIES.add(
    "greedy",
    SpecKind("greedy[:EPS]", _learned("greedy"), _build_learned),
    description="greedy on the mean reward per action x position, fit on the log",
)
TARGET_POLICIES.add(
    "linear",
    SpecKind("linear[:EPS]", _learned("linear"), _build_learned),
    description="greedy on per-action ridge regressions on the context, fit on the log",
)
TARGET_POLICIES.add(
    "table",
    SpecKind("a probability table (.parquet/.csv)", _is_table, _from_table),
    description="action,prob[,position] or prob_<action> per event",
)
