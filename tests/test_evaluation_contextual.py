"""Contextual bandits in a world with a known click model: exploration beats "most
clickable" greedy, offline estimates track the truth (every policy's contract:
``rtml_cli.checks.contextual``, run by tests/test_registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import ExitCode
from rtml_cli.evaluation import contextual as C


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A random click model plus a popularity-skewed log and a uniformly random log."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    model = ClickModel.random(rng, n_users=300, n_items=40, n_positions=3)
    model.save(root / "click_model.npz")
    pl.DataFrame(C.simulate_log(model, 12000, k=3, rng=rng, behaviour="popularity")).write_parquet(
        root / "bandit.parquet"
    )
    pl.DataFrame(C.simulate_log(model, 12000, k=3, rng=rng)).write_parquet(
        root / "bandit_random.parquet"
    )
    return root, model


def test_exploration_beats_greedy_on_regret_and_long_tail(world):
    _, model = world
    policies = C.make_policies(["greedy", "linucb", "lints", "uniform"])
    runs = {r.policy: r for r in C.run_online(model, policies, requests=6000, k=3, top_n=8, seed=3)}
    greedy = runs["greedy"]
    for name in ("linucb", "lints"):
        r = runs[name]
        assert r.cumulative_regret < 0.8 * greedy.cumulative_regret, (name, r, greedy)
        assert r.tail_impression_share > greedy.tail_impression_share + 0.1
        assert r.tail_click_share > greedy.tail_click_share
        assert r.ctr > greedy.ctr
    assert runs["uniform"].cumulative_regret > greedy.cumulative_regret
    for r in runs.values():
        assert 0 <= r.expected_ctr <= r.oracle_ctr
        assert np.all(np.diff(r.regret_curve) > -5)  # cumulative regret grows (pseudo-regret)


def test_offline_estimates_track_the_exact_value(world):
    root, model = world
    res = C.evaluate_contextual(root, requests=3000, k=3, n_boot=100, seed=1)
    assert res.offline is not None and len(res.offline) == 5
    for row in res.offline:
        truth = row["true_value_logged"]
        for name in ("ips", "snips", "dr"):
            assert abs(row[name]["value"] - truth) < 0.04, (row["policy"], name, row[name], truth)
        assert abs(row["replay"]["value"] - row["true_value_random_log"]) < 0.08
        assert row["replay"]["accepted_events"] > 100
    by = {r["policy"]: r for r in res.offline}
    assert by["linucb"]["true_value_logged"] > by["greedy"]["true_value_logged"]


def test_cli_json_is_deterministic_and_plot(invoke, world, tmp_path):
    root, _ = world
    png = tmp_path / "regret.png"
    args = ["evaluate", "contextual", root, "-n", "1500", "-b", "20", "-f", "json"]
    first = invoke(*args, "--plot", png)
    assert first.exit_code == ExitCode.OK, first.stderr
    again = invoke(*args)
    doc = json.loads(first.stdout)
    # the same document; only the recorded command line (with --plot) differs
    assert {**doc, "command": None} == {**json.loads(again.stdout), "command": None}
    assert [r["policy"] for r in doc["online"]] == list(C.CONTEXTUAL_POLICIES)
    assert doc["top_n"] == 8
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_cli_table_online_only(invoke, world):
    root, _ = world
    res = invoke(
        "evaluate",
        "contextual",
        root,
        "-n",
        "800",
        "--mode",
        "online",
        "--policies",
        "greedy,linucb",
    )
    assert res.exit_code == ExitCode.OK, res.stderr
    assert "regret" in res.stdout and "tail impr." in res.stdout and "linucb" in res.stdout
    assert "Offline" not in res.stdout


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--policies", "greedy,foo"], ExitCode.USAGE, "unknown policy 'foo'"),
        (["--k", "9"], ExitCode.USAGE, "exceeds the click model's 3 positions"),
        (["--mode", "sideways"], ExitCode.USAGE, "--mode must be"),
        (["--epsilon", "1.5"], ExitCode.USAGE, "--epsilon"),
        (["--bootstrap", "-1"], ExitCode.USAGE, "--bootstrap"),
        (["--top-n", "40"], ExitCode.USAGE, "--top-n must be between 1 and 39"),
        (["--requests", "0"], ExitCode.USAGE, "must be positive"),
        (["--log", "missing.parquet", "--mode", "offline"], ExitCode.NO_INPUT, "does not exist"),
    ],
)
def test_cli_bad_options(invoke, world, args, code, message):
    root, _ = world
    res = invoke("evaluate", "contextual", root, "-n", "50", *args)
    assert res.exit_code == code, res.stderr
    assert message in res.stderr


def test_cli_missing_world_and_offline_without_logs(invoke, tmp_path, world):
    _, model = world
    res = invoke("evaluate", "contextual", tmp_path / "nowhere")
    assert res.exit_code == ExitCode.NO_INPUT and "click_model.npz" in res.stderr
    model.save(tmp_path / "click_model.npz")
    res = invoke("evaluate", "contextual", tmp_path, "--mode", "offline", "-n", "50")
    assert res.exit_code == ExitCode.NO_INPUT and "offline mode needs" in res.stderr
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "click_model.npz").write_bytes(b"not an npz")
    res = invoke("evaluate", "contextual", bad)
    assert res.exit_code == ExitCode.DATA_ERR


def test_offline_log_must_be_a_world_log(invoke, world, tmp_path):
    root, model = world
    model.save(tmp_path / "click_model.npz")
    pl.DataFrame({"action": [0, 1], "reward": [0.0, 1.0], "propensity": [0.5, 0.5]}).write_parquet(
        tmp_path / "bandit.parquet"
    )
    res = invoke("evaluate", "contextual", tmp_path, "-n", "50", "--mode", "offline")
    assert res.exit_code == ExitCode.DATA_ERR and "user_idx" in res.stderr


@pytest.mark.parametrize("command", ["ope", "contextual"])
def test_commands_have_help_and_a_readme_section(invoke, command):
    res = invoke("evaluate", command, "--help")
    assert res.exit_code == ExitCode.OK
    assert "--format" in res.stdout
    assert (
        f"## `rtml evaluate {command}`"
        in (Path(__file__).resolve().parent.parent / "docs" / "evaluate.md").read_text()
    )


SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"


def test_sample_world_linucb_and_lints_beat_greedy():
    """The issue's claim on the committed sample world: contextual exploration beats the
    "most clickable" trap on cumulative regret and on long-tail coverage."""
    model, _ = C.load_click_model(SHOP)
    runs = {
        r.policy: r
        for r in C.run_online(
            model,
            C.make_policies(["greedy", "linucb", "lints"]),
            requests=8000,
            k=3,
            top_n=13,
            seed=0,
        )  # fmt: skip
    }
    greedy = runs["greedy"]
    for name in ("linucb", "lints"):
        assert runs[name].cumulative_regret < 0.8 * greedy.cumulative_regret
        assert runs[name].tail_impression_share > greedy.tail_impression_share + 0.2
        assert runs[name].tail_click_share > greedy.tail_click_share + 0.1


def test_online_results_do_not_depend_on_the_mode(invoke):
    """Online figures are the same whether or not the offline part runs (same users)."""
    runs = [
        json.loads(
            invoke(
                "evaluate", "contextual", SHOP, "-n", "600", "--mode", mode, "-f", "json",
                "-b", "10", "--policies", "greedy,lints",
            ).stdout
        )["online"]
        for mode in ("online", "both")
    ]  # fmt: skip
    assert runs[0] == runs[1]
