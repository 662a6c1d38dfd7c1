"""The OPE job: one target policy's value on one log, with intervals and diagnostics.

Given a log collected by a *logging* (behaviour) policy ``pi_b`` — one row per impression
with the chosen ``action``, its ``reward`` and the ``propensity`` ``pi_b(a_i | x_i)`` — and
an *evaluation* policy ``pi_e`` (a ``--policy SPEC``, see ``specs``), estimate
``V(pi_e) = E[r]`` had ``pi_e`` chosen the actions. Here a "context" ``x_i`` is the logged
event: its position and its context columns. ``estimate`` is the library call (also used by
``rtml evaluate contextual``); ``evaluate_ope`` is the whole ``rtml evaluate ope`` job.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.evaluation.ope.diagnostics import (
    bootstrap_values,
    diagnostic_warnings,
    event_terms,
    percentile_ci,
    weight_diagnostics,
)
from rtml_cli.evaluation.ope.estimators import (
    DEFAULT_ESTIMATORS,
    Estimator,
    SwitchDR,
    make_estimators,
)
from rtml_cli.evaluation.ope.log import BanditLog, load_bandit_log
from rtml_cli.evaluation.ope.reward_models import REWARD_MODELS, RewardModel, fit_reward_model
from rtml_cli.evaluation.ope.specs import build_policy
from rtml_cli.evaluation.ope.targets import TargetPolicy

DEFAULT_REWARD_MODEL = REWARD_MODELS.names()[0]


@dataclass
class OpeResult:
    """Everything ``rtml evaluate ope`` reports (``to_dict`` is the JSON document)."""

    log: str
    n_events: int
    n_actions: int
    n_positions: int
    policy: dict[str, Any]
    reward_model: str
    logged_value: float
    estimates: list[dict[str, Any]]
    diagnostics: dict[str, float]
    warnings: list[str]
    bootstrap: int
    seed: int
    ground_truth: dict[str, Any] | None = None
    switch_tau: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "n_events": self.n_events,
            "n_actions": self.n_actions,
            "n_positions": self.n_positions,
            "policy": self.policy,
            "reward_model": self.reward_model,
            "logged_value": self.logged_value,
            "estimates": self.estimates,
            "diagnostics": self.diagnostics,
            "ground_truth": self.ground_truth,
            "warnings": self.warnings,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "switch_tau": self.switch_tau,
        }


def estimate(
    log: BanditLog,
    policy: TargetPolicy,
    *,
    estimators: Sequence[Estimator],
    reward_model: str = DEFAULT_REWARD_MODEL,
    n_boot: int = 1000,
    seed: int = 0,
    min_support: int = 10,
    model: RewardModel | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float], list[str]]:
    """Point estimates with bootstrap CIs, diagnostics and warnings for one policy on one log."""
    if log.propensity is None:
        raise DataError(f"{log.source} has no propensities")
    if model is None and any(e.needs_model for e in estimators):
        model = fit_reward_model(log, reward_model)
    terms, overlap = event_terms(log, policy, model, min_support=min_support)
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = [float(e.value(terms.w, terms.r, terms.q, terms.v)) for e in estimators]
    boots = bootstrap_values(terms, estimators, n_boot, rng) if n_boot > 0 else None
    rows = []
    for j, est in enumerate(estimators):
        lo, hi = percentile_ci(boots[:, j]) if boots is not None else (math.nan, math.nan)
        se = float(np.nanstd(boots[:, j], ddof=1)) if boots is not None and n_boot > 1 else math.nan
        rows.append(
            {"estimator": est.name, "value": point[j], "ci_low": lo, "ci_high": hi, "std_error": se}
        )
    diag = {**weight_diagnostics(terms.w), **overlap, "min_support": float(min_support)}
    return rows, diag, diagnostic_warnings(diag, log.n)


def evaluate_ope(
    log_path: str | Path,
    policy_spec: str,
    *,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    n_boot: int = 1000,
    ground_truth: str | Path | None = None,
    reward_model: str = DEFAULT_REWARD_MODEL,
    context_cols: str | None = None,
    switch_tau: float = 100.0,
    min_support: int = 10,
    fit_fraction: float = 0.5,
    epsilon: float | None = None,
    seed: int = 0,
) -> OpeResult:
    """The job behind ``rtml evaluate ope``: estimate ``policy_spec``'s value on a log.

    See ``specs.build_policy`` for the SPEC grammar. With ``ground_truth`` (a log
    collected by the evaluated policy itself), its mean reward is the on-policy value and
    each estimate gets its relative error ``|estimate - truth| / truth``.
    """
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if switch_tau <= 0:
        raise UsageError("--switch-tau must be positive")
    if min_support < 1:
        raise UsageError("--min-support must be at least 1")
    ests = make_estimators(estimators, switch_tau=switch_tau)
    full = load_bandit_log(log_path, context_cols=context_cols)
    built = build_policy(
        policy_spec, full, fit_fraction=fit_fraction, epsilon=epsilon, context_cols=context_cols
    )
    log = built.eval_log
    rows, diag, warnings = estimate(
        log,
        built.policy,
        estimators=ests,
        reward_model=reward_model,
        n_boot=n_boot,
        seed=seed,
        min_support=min_support,
    )
    truth: dict[str, Any] | None = None
    gt_warnings: list[str] = []
    if ground_truth is not None:
        truth, gt_warnings = _ground_truth(ground_truth, rows, n_boot=n_boot, seed=seed)
    return OpeResult(
        log=str(log_path),
        n_events=log.n,
        n_actions=log.n_actions,
        n_positions=log.n_positions,
        policy={"spec": policy_spec, "description": built.description, "n_fit_events": built.n_fit},
        reward_model=reward_model,
        logged_value=float(log.reward.mean()),
        estimates=rows,
        diagnostics=diag,
        warnings=full.warnings + gt_warnings + warnings + built.warnings,
        bootstrap=n_boot,
        seed=seed,
        ground_truth=truth,
        switch_tau=switch_tau if any(isinstance(e, SwitchDR) for e in ests) else None,
    )


def _ground_truth(
    path: str | Path, rows: list[dict[str, Any]], *, n_boot: int, seed: int
) -> tuple[dict[str, Any], list[str]]:
    """The on-policy value of a log collected by the evaluated policy (its mean reward, with a
    bootstrap CI); adds each estimate's relative error and whether its CI covers the truth."""
    gt = load_bandit_log(path, require_propensity=False, what="ground-truth log")
    value = float(gt.reward.mean())
    rng = np.random.default_rng(seed + 1)
    if n_boot > 0:
        means = np.array([gt.reward[rng.integers(0, gt.n, gt.n)].mean() for _ in range(n_boot)])
        lo, hi = percentile_ci(means)
    else:
        lo = hi = math.nan
    truth = {
        "log": str(path),
        "n_events": gt.n,
        "value": value,
        "ci_low": lo,
        "ci_high": hi,
    }
    for row in rows:
        row["relative_error"] = abs(row["value"] - value) / abs(value) if value != 0 else math.nan
        row["truth_in_ci"] = bool(row["ci_low"] <= value <= row["ci_high"])
    return truth, gt.warnings
