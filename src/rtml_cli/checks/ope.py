"""The contracts of the OPE plug-ins: estimators, target policies (SPEC forms), reward models.

All run on one small synthetic log (``synthetic_log``) whose logging policy is known and
uniform, with rewards in [0, 1], two positions and two context columns:

- an estimator (``ESTIMATORS``) documents its formula, evaluates every bootstrap resample
  exactly as it evaluates that resample alone, and returns a finite value in the reward
  range [0, 1];
- a target policy form (``TARGET_POLICIES``) claims its example spec and builds a policy
  whose action probabilities are finite, >= 0 and sum to 1 per event;
- a reward model (``REWARD_MODELS``) fit on the log predicts a finite ``(events, actions)``
  matrix within [0, 1].
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.checks import Suite
from rtml_cli.evaluation.ope.diagnostics import bootstrap_values, event_terms
from rtml_cli.evaluation.ope.estimators import ESTIMATORS, make_estimators
from rtml_cli.evaluation.ope.log import BanditLog
from rtml_cli.evaluation.ope.reward_models import REWARD_MODELS, MeanRewardModel
from rtml_cli.evaluation.ope.specs import TARGET_POLICIES, build_policy
from rtml_cli.evaluation.ope.targets import PROB_TOLERANCE, PositionTablePolicy, iter_chunks
from rtml_cli.registry import Entry

N_ACTIONS = 4
N_POSITIONS = 2


def synthetic_log(n: int = 400, seed: int = 0) -> BanditLog:
    """``n`` events logged by the uniform policy; click rates depend on action, position and
    the first context column."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, N_ACTIONS, n)
    position = rng.integers(0, N_POSITIONS, n)
    context = rng.normal(size=(n, 2))
    base = rng.uniform(0.1, 0.5, size=(N_POSITIONS, N_ACTIONS))
    ctr = np.clip(base[position, action] + 0.1 * np.tanh(context[:, 0]) * (action % 2), 0, 1)
    return BanditLog(
        source="synthetic log",
        actions=np.arange(N_ACTIONS),
        action_idx=action,
        positions=np.arange(1, N_POSITIONS + 1),
        position_idx=position,
        reward=(rng.random(n) < ctr).astype(float),
        propensity=np.full(n, 1.0 / N_ACTIONS),
        context=context,
        context_names=["ctx_0", "ctx_1"],
        ts_order=np.arange(n),
    )


def _target_table() -> np.ndarray:
    """A non-uniform target: 70% on one action per position, the rest spread."""
    table = np.full((N_POSITIONS, N_ACTIONS), 0.3 / (N_ACTIONS - 1))
    table[0, 1] = table[1, 2] = 0.7
    return table


# --------------------------------------------------------------------------- estimators


def check_estimator_formula_documented(entry: Entry[Any]) -> None:
    assert entry.obj.__doc__ and "V =" in entry.obj.__doc__, f"{entry.name}: no formula"
    assert entry.obj.name == entry.name


def check_estimator_bootstrap_matches_one_resample(entry: Entry[Any]) -> None:
    """Vectorised over resamples == evaluated per resample, and finite."""
    log = synthetic_log()
    terms, _ = event_terms(log, PositionTablePolicy(_target_table()), MeanRewardModel.fit(log))
    (est,) = make_estimators([entry.name])
    assert est.name == entry.name, (est.name, entry.name)
    boots = bootstrap_values(terms, [est], 7, np.random.default_rng(1), block_cells=1000)
    idx = np.random.default_rng(1).integers(0, log.n, size=(7, log.n))
    for b in range(7):
        i = idx[b]
        one = float(est.value(terms.w[i], terms.r[i], terms.q[i], terms.v[i]))
        assert np.isclose(boots[b, 0], one, rtol=1e-6, atol=1e-12), (b, boots[b, 0], one)
    assert np.isfinite(boots).all()


def check_estimator_value_in_reward_range(entry: Entry[Any]) -> None:
    """On a log with a known uniform logging policy: finite, within [0, 1]."""
    log = synthetic_log()
    (est,) = make_estimators([entry.name])
    for table in (_target_table(), np.full((N_POSITIONS, N_ACTIONS), 1.0 / N_ACTIONS)):
        terms, _ = event_terms(log, PositionTablePolicy(table), MeanRewardModel.fit(log))
        value = float(est.value(terms.w, terms.r, terms.q, terms.v))
        assert np.isfinite(value) and 0.0 <= value <= 1.0, (entry.name, value)


# --------------------------------------------------------------------------- target policies


def _other_log(log: BanditLog, tmp: Path) -> str:
    import polars as pl

    path = tmp / "other.parquet"
    rng = np.random.default_rng(3)
    pl.DataFrame(
        {
            "action": rng.integers(0, N_ACTIONS, 200),
            "position": rng.integers(1, N_POSITIONS + 1, 200),
            "reward": (rng.random(200) < 0.3).astype(float),
        }
    ).write_parquet(path)
    return f"log:{path}"


def _table(log: BanditLog, tmp: Path) -> str:
    import polars as pl

    path = tmp / "policy.parquet"
    table = _target_table()
    pl.DataFrame(
        {
            "action": np.tile(np.arange(N_ACTIONS), N_POSITIONS),
            "position": np.repeat(np.arange(1, N_POSITIONS + 1), N_ACTIONS),
            "prob": table.ravel(),
        }
    ).write_parquet(path)
    return str(path)


# A spec of each form, on ``synthetic_log`` (files are written in a scratch directory).
# A new form in TARGET_POLICIES adds its example here.
TARGET_EXAMPLES: dict[str, Callable[[BanditLog, Path], str]] = {
    "uniform": lambda log, tmp: "uniform",
    "log": _other_log,
    "greedy": lambda log, tmp: "greedy:0.1",
    "linear": lambda log, tmp: "linear:0.1",
    "table": _table,
}


def check_target_policy_probabilities(entry: Entry[Any]) -> None:
    """The example spec is this form's, and its probabilities are a distribution per event."""
    assert entry.name in TARGET_EXAMPLES, (
        f"target policy {entry.name!r} has no example spec in rtml_cli.checks.ope.TARGET_EXAMPLES"
    )
    log = synthetic_log()
    with tempfile.TemporaryDirectory() as tmp:
        spec = TARGET_EXAMPLES[entry.name](log, Path(tmp))
        claimed = next(k.name for k in TARGET_POLICIES.entries() if k.obj.matches(spec))
        assert claimed == entry.name, f"{spec!r} is claimed by {claimed!r}, not {entry.name!r}"
        built = build_policy(spec, log)
    ev = built.eval_log
    assert 0 < ev.n <= log.n
    for rows in iter_chunks(ev.n, ev.n_actions):
        pi = built.policy.probs(ev, rows)
        assert pi.shape == (len(rows), ev.n_actions), pi.shape
        assert np.isfinite(pi).all() and (pi >= 0).all()
        assert np.all(np.abs(pi.sum(axis=1) - 1.0) <= PROB_TOLERANCE)


def check_target_policy_described(entry: Entry[Any]) -> None:
    assert entry.description and entry.obj.syntax, f"target policy {entry.name}: no help text"


# --------------------------------------------------------------------------- reward models


def check_reward_model_predictions(entry: Entry[Any]) -> None:
    """Shape ``(events, actions)``, finite, within [0, 1] for rewards in [0, 1]."""
    log = synthetic_log()
    model = entry.obj.fit(log)
    rows = np.arange(log.n)
    q = model.predict(log, rows)
    assert q.shape == (log.n, log.n_actions), q.shape
    assert np.isfinite(q).all()
    assert q.min() >= 0.0 and q.max() <= 1.0, (q.min(), q.max())


def check_reward_model_described(entry: Entry[Any]) -> None:
    assert entry.description, f"reward model {entry.name} has no description"


ESTIMATOR_SUITE = Suite(
    ESTIMATORS,
    (
        check_estimator_formula_documented,
        check_estimator_bootstrap_matches_one_resample,
        check_estimator_value_in_reward_range,
    ),
)
TARGET_POLICY_SUITE = Suite(
    TARGET_POLICIES, (check_target_policy_described, check_target_policy_probabilities)
)
REWARD_MODEL_SUITE = Suite(
    REWARD_MODELS, (check_reward_model_described, check_reward_model_predictions)
)
