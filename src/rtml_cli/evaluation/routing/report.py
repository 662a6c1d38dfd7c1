"""Run every chosen policy on one reward source and summarise the runs for people and scripts."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.routing.abtest import SRM_ALARM_P, diff_confidence_interval, srm_pvalue
from rtml_cli.evaluation.routing.policies import ROUTING_POLICIES, Settings, ab_horizon, make_policy
from rtml_cli.evaluation.routing.runner import PolicyRun, run_policy

BANDIT_BIAS_CAVEAT = (
    "A bandit's per-arm estimates are biased by its own routing: it stops serving an arm "
    "after bad luck, so that arm's estimate stays low (and its CI is not valid). Use the A/B "
    "rows for unbiased effect sizes, or re-weight by the routing probabilities (rtml evaluate ope)."
)
PEEKING_CAVEAT = (
    "P(best) >= threshold, checked after every batch, is not a frequentist guarantee: with small "
    "lifts the 'picked best' rate can fall below the threshold; raise --threshold or "
    "--min-requests if it matters."
)


@dataclass
class Evaluation:
    """The inputs of one evaluation besides the reward source."""

    policies: tuple[str, ...]
    horizon: int
    seeds: int
    batch_size: int
    seed: int
    settings: Settings
    reward: str | None = None  # the RESULTS reward column; None for Bernoulli arms (clicks)


def evaluate_policies(source, evaluation: Evaluation, *, on_policy=None) -> tuple[dict, list]:
    """Run each policy on ``source``; return (report dict, list of PolicyRun)."""
    unknown = [p for p in evaluation.policies if p not in ROUTING_POLICIES]
    if unknown:
        raise UsageError(
            f"unknown policy {', '.join(unknown)}; choose from {', '.join(ROUTING_POLICIES)}"
        )
    if not evaluation.policies:
        raise UsageError("--policies is empty; name at least one policy")
    runs = []
    for name in evaluation.policies:
        policy = make_policy(name, evaluation.settings)
        runs.append(
            run_policy(
                policy,
                source,
                horizon=evaluation.horizon,
                seeds=evaluation.seeds,
                batch_size=evaluation.batch_size,
                seed=evaluation.seed,
            )
        )
        if on_policy is not None:
            on_policy(name)
    return summarise(source, evaluation, runs), runs


def _quantiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"median": None, "p5": None, "p95": None}
    p5, med, p95 = np.quantile(values, [0.05, 0.5, 0.95])
    return {"median": float(med), "p5": float(p5), "p95": float(p95)}


def summarise(source, evaluation: Evaluation, runs: list[PolicyRun]) -> dict:
    s = evaluation.settings
    means = np.asarray(source.means, dtype=float)
    best = means >= means.max() - 1e-12
    per_arm, total = ab_horizon(s)
    policies = []
    for run in runs:
        cls = ROUTING_POLICIES.get(run.policy)
        correct = run.decided & best[np.maximum(run.winner, 0)]
        row = {
            "policy": run.policy,
            "kind": cls.kind,
            "summary": cls.summary,
            "decided_share": float(run.decided.mean()),
            "requests_to_decision": _quantiles(run.decision_at[run.decided].astype(float)),
            "picked_best_share": float(correct.mean()),
            "picked_best_given_decided": (
                float(correct.sum() / run.decided.sum()) if run.decided.any() else None
            ),
            # what a wrong pick costs: best mean minus the chosen arm's, over decided runs
            "decision_gap_mean": (
                float((means.max() - means[run.winner[run.decided]]).mean())
                if run.decided.any()
                else None
            ),
            "reward_mean": float(run.reward.mean()),
            "regret_mean": float(run.regret.mean()),
            "regret_p95": float(np.quantile(run.regret, 0.95)),
            "best_arm_traffic_share": float(run.best_traffic.mean() / evaluation.horizon),
            "clicks_lost_mean": float(run.clicks_lost.mean()),
        }
        if cls.kind == "ab":
            row["ab"] = _ab_details(run, s, means)
        row["curve"] = _curve(run)
        policies.append(row)
    report: dict[str, Any] = {
        "arms": [
            {"arm": name, "mean_reward": float(m), "best": bool(b), "control": i == s.control}
            for i, (name, m, b) in enumerate(zip(source.names, means, best, strict=True))
        ],
        "horizon": evaluation.horizon,
        "seeds": evaluation.seeds,
        "batch_size": evaluation.batch_size,
        "seed": evaluation.seed,
        "threshold": s.threshold,
        "value_remaining": s.value_remaining,
        "ab_plan": {
            "control": source.names[s.control],
            "baseline": s.baseline,
            "mde": s.mde,
            "alpha": s.alpha,
            "power": s.power,
            "split": [float(w) for w in s.split],
            "control_sample_size": per_arm,
            "required_requests": total,
            "fits_in_stream": total <= evaluation.horizon,
        },
        "policies": policies,
    }
    report["reward"] = evaluation.reward or "bernoulli"
    report["verdict"] = verdict(report, evaluation.reward)
    report["caveats"] = [BANDIT_BIAS_CAVEAT, PEEKING_CAVEAT]
    near = near_tie(source.names, means, s.alpha, s.power)
    if near:
        report["caveats"].append(near)
    return report


def near_tie(names: list[str], means: np.ndarray, alpha: float, power: float) -> str | None:
    """A note when the two best arms are too close to tell apart (relative gap < 2%)."""
    from rtml_cli.evaluation.routing.abtest import sample_size_two_proportions

    order = np.argsort(means)[::-1]
    best, second = means[order[0]], means[order[1]]
    if best <= 0 or (best - second) / best >= 0.02:
        return None
    if best == second:
        return f"{names[order[0]]} and {names[order[1]]} have the same mean reward: any pick between them is as good."
    n, _ = sample_size_two_proportions(second, best, alpha=alpha, power=power)
    return (
        f"{names[order[0]]} and {names[order[1]]} differ by {best - second:.4f} "
        f"({(best - second) / best:.1%}): telling them apart needs ~{n:,} requests per arm, so "
        "'picked best' between them is close to a coin flip; see the pick gap column."
    )


def _curve(run: PolicyRun, points: int = 50) -> dict:
    """Cumulative regret and best-arm traffic share at up to ``points`` checkpoints."""
    n = run.curve_requests.shape[0]
    pick = np.unique(np.linspace(0, n - 1, min(points, n)).round().astype(int))
    return {
        "requests": run.curve_requests[pick].tolist(),
        "regret_mean": [round(float(v), 4) for v in run.curve_regret[pick]],
        "best_arm_share": [round(float(v), 4) for v in run.curve_best_share[pick]],
    }


def _ab_details(run: PolicyRun, s: Settings, means: np.ndarray) -> dict:
    """Effect of the best non-control arm against the control, its CI, and the SRM check."""
    control = s.control
    others = [i for i in range(len(means)) if i != control]
    treatment = max(others, key=lambda i: means[i])
    level = s.alpha / max(len(means) - 1, 1)
    sa, na = run.exp_rewards[:, control], run.exp_pulls[:, control]
    sb, nb = run.exp_rewards[:, treatment], run.exp_pulls[:, treatment]
    if run.policy == "ab-sequential":
        effect, low, high = _confidence_sequence(sa, na, sb, nb, alpha=level, tau=s.mde)
        ci_kind = "always-valid mSPRT confidence sequence"
    else:
        effect, low, high = diff_confidence_interval(sa, na, sb, nb, alpha=level)
        ci_kind = "Wald"
    true_effect = float(means[treatment] - means[control])
    srm = srm_pvalue(run.exp_pulls, np.asarray(s.split))
    # With more than two arms the sequential test drops losing arms, so its split is not
    # meant to stay at --split and the SRM check does not apply.
    srm_applies = not (run.policy == "ab-sequential" and len(means) > 2)
    return {
        "treatment": int(treatment),
        "true_effect": true_effect,
        "observed_effect_median": float(np.nanmedian(effect)),
        "ci_low_median": float(np.nanmedian(low)),
        "ci_high_median": float(np.nanmedian(high)),
        "ci_level": 1 - level,
        "ci_kind": ci_kind,
        "ci_coverage": float(np.mean((low <= true_effect) & (true_effect <= high))),
        "srm_p_median": float(np.median(srm)) if srm_applies else None,
        "srm_flagged_share": float(np.mean(srm < SRM_ALARM_P)) if srm_applies else None,
    }


def _confidence_sequence(sa, na, sb, nb, *, alpha: float, tau: float):
    """The mSPRT's always-valid CI: every effect theta its test would not reject."""
    with np.errstate(divide="ignore", invalid="ignore"):
        pa, pb = sa / na, sb / nb
        var = pa * (1 - pa) / na + pb * (1 - pb) / nb
        t2 = tau * tau
        half = np.sqrt(var * (var + t2) / t2 * (2 * np.log(1 / alpha) + np.log((var + t2) / var)))
    effect = pb - pa
    return effect, effect - half, effect + half


#: What a reward counts, in words. In planning mode the arms are click rates; a replay's
#: rewards are hits of the truth in the top K — a proxy, never "clicks".
_UNITS = {
    None: "clicks",
    "hit": "hits@K of the next item",
    "hit_later": "hits@K of a later item",
    "hit_purchase": "hits@K of the next cart or purchase",
    "rr": "reciprocal-rank points",
    "ndcg": "NDCG points",
}


def _unit(reward: str | None) -> str:
    return _UNITS.get(reward, "reward")


def correct_rate_gap(bandit: dict, ab: dict, seeds: int) -> float:
    """How much less often the bandit picked the better arm than the A/B test, beyond twice
    the Monte-Carlo standard error of the difference over ``seeds`` runs (0 when within)."""
    pb, pa = bandit["picked_best_share"], ab["picked_best_share"]
    n = max(seeds, 1)
    noise = 2 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n)
    return max(0.0, (pa - pb) - noise)


def verdict(report: dict, reward: str | None = "hit") -> str:
    """One plain-language sentence comparing the best bandit with the A/B test.

    "Fewer requests" is claimed only at a matched error rate: a bandit that picks the better
    arm less often than the A/B test (beyond Monte-Carlo error over the runs) decides
    sooner because it settles for more wrong answers, and the sentence says so instead."""
    rows = {r["policy"]: r for r in report["policies"]}
    unit = _unit(reward)
    ab = rows.get("ab") or rows.get("ab-sequential")
    bandits = [r for r in report["policies"] if r["kind"] == "bandit"]
    if not bandits or ab is None:
        best = min(report["policies"], key=lambda r: r["regret_mean"])
        return f"{best['policy']} had the lowest regret ({best['regret_mean']:,.1f} {unit} lost)."
    deciding = [r for r in bandits if r["decided_share"] >= 0.5]
    if not deciding:
        return (
            f"no bandit reached a decision in most of the runs within {report['horizon']:,} "
            f"requests; the A/B test ({ab['policy']}) decided in {ab['decided_share']:.0%} of runs."
        )
    thompson = rows.get("thompson")
    if thompson is not None and thompson in deciding:
        bandit = thompson
    else:
        bandit = min(deciding, key=lambda r: r["clicks_lost_mean"])
    b_med = bandit["requests_to_decision"]["median"]
    a_med = ab["requests_to_decision"]["median"]
    if a_med is None:
        plan = report["ab_plan"]
        return (
            f"{bandit['policy']} reached a decision after a median {b_med:,.0f} requests; the A/B "
            f"test needs {plan['required_requests']:,} and never finished in the "
            f"{report['horizon']:,}-request stream."
        )
    saved = ab["clicks_lost_mean"] - bandit["clicks_lost_mean"]
    more_less = "fewer" if saved >= 0 else "more"
    if correct_rate_gap(bandit, ab, int(report.get("seeds", 1))) > 0:
        return (
            f"{bandit['policy']} decided after a median {b_med:,.0f} requests (A/B test: "
            f"{a_med:,.0f}) but picked the better arm less often ({bandit['picked_best_share']:.0%} "
            f"of runs vs {ab['picked_best_share']:.0%}): it is not faster at the same error "
            f"rate. Raise --threshold (now {report['threshold']}) until it picks the better arm "
            "as often, and compare again."
        )
    speed = (
        f"{a_med / b_med:.1f}x fewer than" if a_med >= b_med else f"{b_med / a_med:.1f}x more than"
    )
    total = ab["regret_mean"] - bandit["regret_mean"]
    within = (
        f", within the Monte-Carlo error of {report['seeds']} runs"
        if bandit["picked_best_share"] < ab["picked_best_share"]
        else ""
    )
    return (
        f"{bandit['policy']} reached a decision after a median {b_med:,.0f} requests, "
        f"{speed} the A/B test ({a_med:,.0f}), picked the best arm in "
        f"{bandit['picked_best_share']:.0%} of runs (A/B: {ab['picked_best_share']:.0%}{within}) "
        "and lost "
        f"{abs(saved):,.1f} {more_less} {unit} while experimenting and "
        f"{abs(total):,.1f} {'fewer' if total >= 0 else 'more'} over the whole stream."
    )
