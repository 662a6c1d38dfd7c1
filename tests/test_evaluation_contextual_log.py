"""`rtml evaluate contextual --log`: contextual bandits replayed on a team's own bandit log.

- On the sample world's uniform log the replay of each frozen policy agrees with the click
  model's exact value within its interval.
- On OBD's random log the replay of a fixed policy matches Open Bandit Pipeline's replay
  exactly, and of the uniform policy in distribution (``OBP_REFERENCE``, computed by
  ``bench/obd_replay_reference.py`` with obp 0.5.7).
- Bad input is one line with a documented exit code.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import ExitCode
from rtml_cli.evaluation import contextual as C
from rtml_cli.evaluation.contextual.logged import PolicyReplay, ReplayLog, verdict
from rtml_cli.evaluation.contextual.policies import ContextualPolicy
from rtml_cli.evaluation.ope.log import read_table

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "sample_data" / "shop"
OBD = REPO / "sample_data" / "obd"

# bench/obd_replay_reference.py (obp 0.5.7, OBD "men" random log, 10,000 rounds, 34 items,
# one slot): for the fixed policy "always item a", (matched events, clicks among them);
# for obp.policy.Random over 100 seeds, the mean and sd of the replay value and of the
# matched count.
OBP_FIXED = {
    0: (272, 4), 1: (302, 0), 2: (304, 1), 3: (298, 2), 4: (285, 0), 5: (313, 0),
    6: (290, 2), 7: (316, 1), 8: (260, 0), 9: (290, 1), 10: (309, 0), 11: (345, 3),
    12: (295, 1), 13: (273, 1), 14: (303, 1), 15: (249, 1), 16: (296, 0), 17: (276, 1),
    18: (293, 2), 19: (284, 1), 20: (298, 3), 21: (311, 1), 22: (304, 1), 23: (296, 2),
    24: (263, 0), 25: (334, 3), 26: (285, 2), 27: (299, 2), 28: (294, 2), 29: (328, 0),
    30: (279, 4), 31: (321, 1), 32: (249, 0), 33: (286, 3),
}  # fmt: skip
OBP_UNIFORM = {
    "seeds": 100,
    "ctr_mean": 0.00429778924017053,
    "ctr_sd": 0.0035110186764558365,
    "matched_mean": 292.05,
    "matched_sd": 18.054001487121067,
}


@pytest.fixture(scope="module")
def obd(tmp_path_factory) -> dict[str, Path]:
    """OBD's random and BTS logs imported with `rtml data import` (and their item tables)."""
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    root = tmp_path_factory.mktemp("obd")
    out = {}
    for policy in ("random", "bts"):
        target = root / f"{policy}.parquet"
        result = CliRunner().invoke(
            app,
            ["data", "import", "--from-format", "obd", str(OBD / policy / "men" / "men.csv.gz")]
            + ["--out", str(target), "--quiet"],
        )
        assert result.exit_code == 0, result.stderr
        out[policy] = target
        out[f"{policy}_items"] = root / f"{policy}.items.parquet"
    return out


class FixedAction(ContextualPolicy):
    """Always the same action: the fixed policy of the obp comparison."""

    name = "fixed"

    def __init__(self, action: int) -> None:
        self.action = action

    def scores(self, X):
        out = np.zeros((X.shape[0], self.n_items))
        out[:, self.action] = 1.0
        return out


# --- the sample world: replay agrees with the exact value -----------------------------


def test_frozen_replay_agrees_with_the_click_model_on_the_sample_world():
    model, root = C.load_click_model(SHOP)
    policies = C.make_policies(list(C.CONTEXTUAL_POLICIES))
    C.run_online(model, policies, requests=4000, k=3, top_n=13, seed=0)  # trains them
    wlog = C.world_log(read_table(root / "bandit_random.parquet", what="log"), model, what="log")
    users = wlog.extra["user_idx"].astype(np.int64)
    order = wlog.ts_order if wlog.ts_order is not None else np.arange(wlog.n)
    log = ReplayLog(
        X=model.user_context[users][order],
        action=wlog.action_idx[order],
        reward=wlog.reward[order],
        weight=np.ones(wlog.n),
        position=wlog.positions[wlog.position_idx][order],
        n_actions=model.n_items,
    )
    tail = np.zeros(model.n_items, dtype=bool)
    for j, policy in enumerate(policies):
        run = C.replay_policy(
            policy, log, rng=np.random.default_rng(j), tail=tail, learn=False, n_boot=400
        )
        exact = C.true_value(model, C.FrozenTarget(policy, model, 1), wlog)
        assert run.matched_events > 200, run
        assert run.ci_low <= exact <= run.ci_high, (policy.name, exact, run)


# --- OBD: rtml's replay vs Open Bandit Pipeline's ----------------------------------------


def test_fixed_policy_replay_matches_obp_exactly(obd):
    data = C.load_logged(obd["random"])
    assert data.uniform and data.uniformity.startswith("uniform")
    assert data.actions == list(range(34))
    tail = np.zeros(34, dtype=bool)
    for action, (matched, clicks) in OBP_FIXED.items():
        run = C.replay_policy(
            FixedAction(action), data.replay, rng=np.random.default_rng(0), tail=tail, n_boot=0
        )
        assert run.matched_events == matched, action
        assert run.clicks == clicks, action
        assert run.ctr == pytest.approx(clicks / matched), action


def test_uniform_policy_replay_agrees_with_obp_in_distribution(obd):
    data = C.load_logged(obd["random"])
    tail = np.zeros(34, dtype=bool)
    runs = [
        C.replay_policy(
            C.UniformPolicy(), data.replay, rng=np.random.default_rng(s), tail=tail, n_boot=0
        )
        for s in range(30)
    ]
    ctr = np.array([r.ctr for r in runs])
    matched = np.array([r.matched_events for r in runs])
    se_ctr = OBP_UNIFORM["ctr_sd"] * math.sqrt(1 / 30 + 1 / OBP_UNIFORM["seeds"])
    se_matched = OBP_UNIFORM["matched_sd"] * math.sqrt(1 / 30 + 1 / OBP_UNIFORM["seeds"])
    assert abs(ctr.mean() - OBP_UNIFORM["ctr_mean"]) < 4 * se_ctr
    assert abs(matched.mean() - OBP_UNIFORM["matched_mean"]) < 4 * se_matched
    assert 0.6 < ctr.std(ddof=1) / OBP_UNIFORM["ctr_sd"] < 1.6
    assert 0.6 < matched.std(ddof=1) / OBP_UNIFORM["matched_sd"] < 1.6


# --- the verdict ---------------------------------------------------------------------------


def _run(name: str, ctr: float, lo: float, hi: float, ess: float = 500.0) -> PolicyReplay:
    return PolicyReplay(
        policy=name,
        events=10_000,
        matched_events=int(ess),
        matched_share=ess / 10_000,
        clicks=ctr * ess,
        ctr=ctr,
        ci_low=lo,
        ci_high=hi,
        effective_sample_size=ess,
        tail_choice_share=0.5,
        tail_click_share=0.5,
        coverage=1.0,
        by_position={},
        ctr_curve=[],
    )


def test_verdict_decides_only_when_intervals_separate():
    clear = verdict([_run("a", 0.3, 0.25, 0.35), _run("b", 0.1, 0.05, 0.15)], min_matched=100)
    assert clear["decided"] and clear["best"] == "a" and clear["beats"] == ["b"]
    noisy = verdict([_run("a", 0.3, 0.1, 0.5), _run("b", 0.2, 0.1, 0.3)], min_matched=100)
    assert not noisy["decided"] and noisy["best"] is None and noisy["ties"] == ["b"]
    assert "cannot decide" in noisy["text"] and 5_000 < noisy["events_needed"] < 7_000
    thin = verdict([_run("a", 0.3, 0.25, 0.35, ess=50)], min_matched=100)
    assert not thin["decided"] and thin["too_few_events"] == ["a"]


@settings(max_examples=40, deadline=None)
@given(
    rewards=st.lists(st.integers(0, 1), min_size=40, max_size=200),
    weight=st.floats(0.5, 50.0),
    seed=st.integers(0, 1000),
)
def test_uniform_weights_make_the_weighted_replay_the_plain_replay(rewards, weight, seed):
    """Equal weights (a uniform log) give the plain mean of the matched rewards, in [0, 1],
    with the estimate inside its bootstrap interval."""
    n = len(rewards)
    rng = np.random.default_rng(seed)
    log = ReplayLog(
        X=np.ones((n, 1)),
        action=rng.integers(0, 3, n),
        reward=np.array(rewards, dtype=float),
        weight=np.full(n, weight),
        position=np.ones(n, dtype=int),
        n_actions=3,
    )
    run = C.replay_policy(
        FixedAction(1), log, rng=rng, tail=np.zeros(3, dtype=bool), n_boot=50, batch_size=7
    )
    hit = log.action == 1
    if hit.any():
        assert run.ctr == pytest.approx(log.reward[hit].mean())
        assert 0 <= run.ci_low <= run.ctr + 1e-12 and run.ctr - 1e-12 <= run.ci_high <= 1
    assert run.matched_events == int(hit.sum())


# --- the command -----------------------------------------------------------------------------


def test_cli_json_on_obd_random_log(invoke, obd, tmp_path):
    png = tmp_path / "ctr.png"
    args = ["evaluate", "contextual", "--log", obd["random"], "--items", obd["random_items"]]
    result = invoke(*args, "--format", "json", "--bootstrap", "100", "--plot", png)
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "evaluate contextual log" and doc["mode"] == "log"
    assert doc["uniform"] and doc["method"] == "replay" and doc["n_actions"] == 34
    assert "position as context" in doc["positions_handling"]
    assert doc["item_features"][:1] == ["item_feature_0"]
    assert {p["policy"] for p in doc["policies"]} == set(C.CONTEXTUAL_POLICIES)
    for p in doc["policies"]:
        assert 200 < p["matched_events"] < 400
        assert p["ci_low"] <= p["ctr"] <= p["ci_high"]
        assert len(p["ctr_curve"]) == 20 and set(p["by_position"]) == {"1", "2", "3"}
    # 46 clicks in 10,000 events: the log cannot rank these policies, and says so.
    assert not doc["verdict"]["decided"] and "cannot decide" in doc["verdict"]["text"]
    assert png.stat().st_size > 0
    again = json.loads(invoke(*args, "--format", "json", "--bootstrap", "100").stdout)
    doc.pop("command"), again.pop("command")  # the command lines differ (--plot)
    assert again == doc  # deterministic for one --seed


def test_cli_table_on_obd_bts_log_warns_about_the_effective_sample_size(invoke, obd):
    result = invoke("evaluate", "contextual", "--log", obd["bts"], "--policies", "greedy,uniform")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "IPS-weighted replay on" in result.stdout
    assert "not uniform" in result.stdout and "ESS" in result.stdout
    assert "Verdict:" in result.stdout and "cannot decide" in result.stdout
    assert "too small to tell these policies apart" in result.stderr


def _write(frame: pl.DataFrame, path: Path) -> Path:
    frame.write_parquet(path)
    return path


@pytest.mark.parametrize(
    ("change", "extra", "code", "message"),
    [
        (lambda f: f.drop("propensity"), [], ExitCode.DATA_ERR, "no 'propensity' column"),
        (lambda f: f, ["--context-cols", "nope_*"], ExitCode.USAGE, "matches no column"),
        (lambda f: f, ["--context-cols", "user_age"], ExitCode.USAGE, "does not have"),
        (lambda f: f.with_columns(action=pl.lit(3)), [], ExitCode.DATA_ERR, "only one action"),
        (lambda f: f, ["--assume-uniform"], ExitCode.OK, ""),
        (lambda f: f, ["--random-log", "x.parquet"], ExitCode.USAGE, "WORLD only"),
        (lambda f: f, ["--top-n", "34"], ExitCode.USAGE, "--top-n"),
        (lambda f: f, ["--min-matched", "0"], ExitCode.USAGE, "--min-matched"),
    ],
)
def test_cli_bad_input_is_one_line(invoke, obd, tmp_path, change, extra, code, message):
    frame = change(pl.read_parquet(obd["random"]))
    log = _write(frame, tmp_path / "log.parquet")
    result = invoke("evaluate", "contextual", "--log", log, "--bootstrap", "0", *extra)
    assert result.exit_code == code, result.stderr
    if code != ExitCode.OK:
        errors = [line for line in result.stderr.splitlines() if line.startswith("rtml: ")]
        assert len(errors) == 1 and message in errors[0], result.stderr


def test_cli_log_without_propensities_runs_when_declared_uniform(invoke, obd, tmp_path):
    log = _write(pl.read_parquet(obd["random"]).drop("propensity"), tmp_path / "np.parquet")
    result = invoke("evaluate", "contextual", "--log", log, "--assume-uniform", "-f", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["uniformity"].startswith("assumed uniform")


def test_cli_missing_files_and_mixed_modes(invoke, obd, tmp_path):
    missing = invoke("evaluate", "contextual", "--log", tmp_path / "none.parquet")
    assert missing.exit_code == ExitCode.NO_INPUT
    neither = invoke("evaluate", "contextual")
    assert neither.exit_code == ExitCode.USAGE and "--log" in neither.stderr
    world = invoke("evaluate", "contextual", SHOP, "--context-cols", "ctx_*")
    assert world.exit_code == ExitCode.USAGE and "without WORLD" in world.stderr
    items = _write(pl.DataFrame({"item_id": [0, 1]}), tmp_path / "items.parquet")
    short = invoke("evaluate", "contextual", "--log", obd["random"], "--items", items)
    assert short.exit_code == ExitCode.DATA_ERR and "lacks 32 logged action" in short.stderr


def test_item_features_hybrid_is_the_joint_ridge_regression():
    """The linear policies with item features (Li et al. 2010's hybrid model) score and
    widen exactly as one ridge regression over φ = (x in item a's block, z_a)."""
    from rtml_cli.evaluation.contextual.policies import HybridLinUCB, LinTS, with_item_features

    rng = np.random.default_rng(0)
    n, d, k = 5, 4, 3
    Z = rng.normal(size=(n, k))
    policy = HybridLinUCB(Z, alpha=1.0)
    policy.reset(n, d, np.random.default_rng(1))
    X = rng.normal(size=(40, d))
    items = rng.integers(0, n, 40)
    clicks = rng.integers(0, 2, 40).astype(float)
    for start in range(0, 40, 7):
        policy.update(X[start : start + 7], items[start : start + 7], clicks[start : start + 7])

    def phi(x: np.ndarray, a: int) -> np.ndarray:
        out = np.zeros(n * d + k)
        out[a * d : (a + 1) * d] = x
        out[n * d :] = Z[a]
        return out

    design = np.array([phi(x, a) for x, a in zip(X, items, strict=True)])
    A = np.eye(n * d + k) + design.T @ design
    w = np.linalg.solve(A, design.T @ clicks)
    query = rng.normal(size=(3, d))
    want = np.array([[phi(x, a) @ w for a in range(n)] for x in query])
    width = np.array(
        [[np.sqrt(phi(x, a) @ np.linalg.solve(A, phi(x, a))) for a in range(n)] for x in query]
    )
    assert np.allclose(policy.scores(query), want)
    assert np.allclose(policy.width(query), width)
    assert type(with_item_features(LinTS(0.25), Z)).__name__ == "HybridLinTS"
    assert with_item_features(C.UniformPolicy(), Z).name == "uniform"


def test_cli_items_feed_the_linear_policies(invoke, obd):
    result = invoke(
        "evaluate", "contextual", "--log", obd["random"], "--items", obd["random_items"],
        "--policies", "greedy,linucb", "--bootstrap", "0", "-f", "json",
    )  # fmt: skip
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["item_features_used_by"] == ["linucb"]
    assert doc["item_features"] == [f"item_feature_{i}" for i in range(4)]
