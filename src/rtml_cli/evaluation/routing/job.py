"""``rtml evaluate [bandits]``: the whole job as one library function.

Builds the reward source (a RESULTS reward matrix or Bernoulli planning arms),
checks every option, runs each routing policy over ``seeds`` request streams
and returns the report (a JSON-ready dict) and the raw runs (for ``--plot``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.routing.abtest import check_alpha_power
from rtml_cli.evaluation.routing.arms import BernoulliArms, RewardMatrix, parse_arm_specs
from rtml_cli.evaluation.routing.policies import DEFAULT_POLICIES, Settings, ab_horizon
from rtml_cli.evaluation.routing.report import Evaluation, evaluate_policies
from rtml_cli.evaluation.routing.runner import DEFAULT_BATCH_SIZE, DEFAULT_SEEDS, PolicyRun

MIN_PLANNING_REQUESTS = 10_000


def evaluate_routing(
    *,
    results: str | None = None,
    arm_specs: list[str] | None = None,
    arms: list[str] | None = None,
    reward: str = "hit",
    requests: int | None = None,
    resample: str = "permute",
    policies: tuple[str, ...] = DEFAULT_POLICIES,
    control: str | None = None,
    split: list[float] | None = None,
    mde: float | None = None,
    alpha: float = 0.05,
    power: float = 0.8,
    threshold: float = 0.95,
    value_remaining: float | None = None,
    min_requests: int = 0,
    min_arm_requests: int = 100,
    epsilon: float = 0.1,
    seeds: int = DEFAULT_SEEDS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    log: Callable[[str], None] = lambda _msg: None,
) -> tuple[dict, list[PolicyRun]]:
    """Evaluate routing policies on RESULTS (``results``) or planning arms (``arm_specs``).

    Returns the report (a JSON-ready dict) and the raw runs (for ``plot.plot_report``).
    """
    _check_mode(results, arm_specs, arms)
    check_alpha_power(alpha, power)
    _check_options(threshold, value_remaining, epsilon, seeds, batch_size, requests, min_requests)
    if not policies:
        raise UsageError("--policies is empty; name at least one of " + ", ".join(DEFAULT_POLICIES))

    loaded = None
    if results is not None:
        from rtml_cli.evaluation.routing.results import load_results

        loaded = load_results(results, reward, arms)
        if loaded.dropped:
            log(
                f"dropped {loaded.dropped:,} requests that lack a {reward} reward for some arm "
                f"(no truth, or no later cart/purchase; kept {loaded.rewards.shape[0]:,})"
            )
        source: RewardMatrix | BernoulliArms = RewardMatrix(loaded.arms, loaded.rewards, resample)
        mode, unit = "results", reward
    else:
        source = parse_arm_specs(arm_specs or [])
        mode, unit = "planning", None

    names = list(source.names)
    settings = _settings(
        names,
        np.asarray(source.means, dtype=float),
        control=control,
        split=split,
        mde=mde,
        alpha=alpha,
        power=power,
        threshold=threshold,
        value_remaining=value_remaining,
        min_requests=min_requests,
        min_arm_requests=min_arm_requests,
        epsilon=epsilon,
    )
    if requests is None:
        if isinstance(source, BernoulliArms):
            _, total = ab_horizon(settings)
            requests = max(MIN_PLANNING_REQUESTS, 2 * total)
            requests = int(math.ceil(requests / batch_size) * batch_size)
        else:
            requests = source.n_requests
    log(
        f"{mode} mode: {len(names)} arms, {len(policies)} policies x {seeds} runs x "
        f"{requests:,} requests (batch {batch_size})"
    )
    evaluation = Evaluation(
        policies=tuple(policies),
        horizon=requests,
        seeds=seeds,
        batch_size=batch_size,
        seed=seed,
        settings=settings,
        reward=unit,
    )
    report, runs = evaluate_policies(source, evaluation)
    report = {"mode": mode, "results": results, **report}
    if loaded is not None:
        report["dropped_requests"] = loaded.dropped
        report["requests_in_results"] = int(loaded.rewards.shape[0])
        report["protocol"] = loaded.protocol
        report["resample"] = resample
    return report, runs


def _settings(
    names: list[str],
    means: np.ndarray,
    *,
    control: str | None,
    split: list[float] | None,
    mde: float | None,
    **rest: Any,
) -> Settings:
    """The policies' settings. The A/B test's MDE defaults to the true gap between the best
    arm and the runner-up: the decision the test must get right (with two arms, the gap to
    the control). Sized for the largest gap to the control instead, a test of three arms
    was powered for the easy comparison and then picked between the two best on noise
    (issue #17). On a tie at the top, the largest gap to the control."""
    control_index = _control_index(names, control)
    weights = _weights(split, len(names))
    if mde is None:
        ranked = np.sort(np.asarray(means, dtype=float))[::-1]
        gaps = np.abs(np.delete(means, control_index) - means[control_index])
        top = float(ranked[0] - ranked[1]) if len(ranked) > 1 else 0.0
        mde = top if top > 0 else float(gaps.max())
        if mde <= 0:
            raise UsageError(
                "every arm has the same mean reward as the control; give the effect to "
                "power the A/B test for with --mde"
            )
    elif not (0 < mde < 1):
        raise UsageError(f"--mde must be an absolute effect in (0, 1), got {mde}")
    return Settings(
        n_arms=len(names),
        control=control_index,
        weights=tuple(weights) if weights is not None else None,
        mde=mde,
        baseline=float(np.clip(means[control_index], 1e-6, 1 - 1e-6)),
        **rest,
    )


def _check_mode(results: str | None, arm_specs: list[str] | None, arms: list[str] | None) -> None:
    """RESULTS mode or planning mode, not both and not neither."""
    if results is not None and arm_specs:
        raise UsageError("give either RESULTS or --arm NAME=RATE arms, not both")
    if results is None and not arm_specs:
        raise UsageError(
            "give a RESULTS file from `rtml simulate`, or planning arms: "
            "--arm control=0.040 --arm new=0.045"
        )
    if arm_specs and arms is not None:
        raise UsageError("--arms selects strategies of a RESULTS file; in planning mode use --arm")


def _check_options(threshold, value_remaining, epsilon, seeds, batch_size, requests, min_requests):
    if not (0.5 < threshold < 1.0):
        raise UsageError(f"--threshold must be in (0.5, 1), got {threshold}")
    if value_remaining is not None and not (0 < value_remaining < 1):
        raise UsageError(f"--value-remaining must be a fraction in (0, 1), got {value_remaining}")
    if not (0.0 <= epsilon <= 1.0):
        raise UsageError(f"--epsilon must be in [0, 1], got {epsilon}")
    if seeds < 1:
        raise UsageError(f"--seeds must be at least 1, got {seeds}")
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    if requests is not None and requests < 1:
        raise UsageError(f"--requests must be at least 1 (a zero-length stream), got {requests}")
    if min_requests < 0:
        raise UsageError(f"--min-requests must be >= 0, got {min_requests}")


def _control_index(names: list[str], control: str | None) -> int:
    if control is None:
        return 0
    if control not in names:
        raise UsageError(f"--control {control!r} is not one of the arms: {', '.join(names)}")
    return names.index(control)


def _weights(split: list[float] | None, n_arms: int) -> list[float] | None:
    if split is None:
        return None
    if len(split) != n_arms:
        raise UsageError(f"--split needs one weight per arm ({n_arms}), got {len(split)}")
    if any(not math.isfinite(w) or w <= 0 for w in split):
        raise UsageError(f"--split weights must be positive numbers, got {split}")
    return split
