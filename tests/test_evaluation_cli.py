"""`rtml evaluate [bandits]` end to end: RESULTS and planning modes, JSON, plot, bad input."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest

from rtml_cli.errors import ExitCode

HIT_RATES = {"batch": 0.05, "session": 0.20, "popular": 0.10}


def write_results(path, n=3_000, rates=HIT_RATES, seed=0, drop=0):
    """A RESULTS file (contracts.RESULTS) with known per-strategy hit rates."""
    rng = np.random.default_rng(seed)
    t0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
    frames = []
    for strategy, rate in rates.items():
        hit = rng.random(n) < rate
        rank = np.where(hit, rng.integers(1, 11, n), 0)
        frames.append(
            pl.DataFrame(
                {
                    "request_id": np.arange(n, dtype=np.int64),
                    "ts": [t0 + timedelta(seconds=int(i)) for i in range(n)],
                    "session_id": [f"s{i // 5}" for i in range(n)],
                    "segment": ["anonymous"] * n,
                    "position": (np.arange(n) % 5 + 1).astype(np.int64),
                    "strategy": [strategy] * n,
                    "rank": pl.Series(rank.tolist(), dtype=pl.Int64).replace(0, None),
                    "hit": hit,
                    "rr": np.where(hit, 1.0 / np.maximum(rank, 1), 0.0),
                    "ndcg": np.where(hit, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0),
                    "hit_later": hit | (rng.random(n) < 0.1),
                    "hit_purchase": pl.Series([None] * n, dtype=pl.Boolean),
                    "latency_us": rng.uniform(50, 500, n),
                }
            )
        )
    df = pl.concat(frames)
    if drop:
        df = df.filter(~((pl.col("strategy") == "batch") & (pl.col("request_id") < drop)))
    df.write_parquet(path)
    return path


@pytest.fixture(scope="module")
def results_file(tmp_path_factory):
    return write_results(tmp_path_factory.mktemp("results") / "results.parquet")


def _json(result):
    assert result.exit_code == ExitCode.OK, result.stderr
    return json.loads(result.stdout)


def test_results_mode_converges_to_the_arm_with_the_highest_mean(invoke, results_file):
    doc = _json(invoke("evaluate", results_file, "--seeds", "100", "--format", "json"))
    means = {a["arm"]: a["mean_reward"] for a in doc["arms"]}
    assert max(means, key=means.get) == "session"
    assert abs(means["session"] - 0.20) < 0.03  # the fixture's rate
    assert doc["mode"] == "results" and doc["horizon"] == 3_000 and doc["seeds"] == 100
    rows = {p["policy"]: p for p in doc["policies"]}
    assert set(rows) == {
        "ab",
        "ab-sequential",
        "epsilon-greedy",
        "ucb1",
        "thompson",
        "top-two-thompson",
    }
    for name in ("epsilon-greedy", "ucb1", "thompson", "top-two-thompson"):
        assert rows[name]["decided_share"] >= 0.95, name
        assert rows[name]["picked_best_given_decided"] >= 0.95, name
        assert rows[name]["best_arm_traffic_share"] > 0.7, name
    assert rows["ab"]["ab"]["srm_flagged_share"] <= 0.02
    curve = rows["thompson"]["curve"]
    assert curve["requests"][-1] == 3_000 and len(curve["requests"]) == 30
    assert curve["regret_mean"] == sorted(curve["regret_mean"])  # cumulative
    assert doc["ab_plan"]["control"] == "batch"  # first strategy by name
    assert "thompson reached a decision" in doc["verdict"]
    assert any("biased by its own routing" in c for c in doc["caveats"])


def test_default_subcommand_is_bandits(invoke, results_file):
    args = ("--seeds", "10", "--policies", "thompson", "--format", "json")
    short = _json(invoke("evaluate", results_file, *args))
    long = _json(invoke("evaluate", "bandits", results_file, *args))
    # the same document; only the recorded command line differs
    assert short.pop("command") != long.pop("command")
    assert short == long


def test_same_seed_same_report(invoke, results_file):
    args = ("evaluate", results_file, "--seeds", "20", "--seed", "4", "--format", "json")
    assert invoke(*args).stdout == invoke(*args).stdout


def test_arms_subset_control_and_reward(invoke, results_file):
    doc = _json(
        invoke(
            "evaluate",
            results_file,
            "--arms",
            "popular,batch",
            "--control",
            "batch",
            "--reward",
            "rr",
            "--seeds",
            "20",
            "--policies",
            "ab,thompson",
            "--format",
            "json",
        )
    )
    assert [a["arm"] for a in doc["arms"]] == ["popular", "batch"]
    assert doc["ab_plan"]["control"] == "batch" and doc["reward"] == "rr"
    assert [p["policy"] for p in doc["policies"]] == ["ab", "thompson"]


def test_requests_missing_an_arm_are_dropped_and_counted(invoke, tmp_path):
    path = write_results(tmp_path / "r.parquet", n=2_000, drop=300)
    result = invoke("evaluate", path, "--seeds", "5", "--policies", "thompson", "--format", "json")
    doc = _json(result)
    assert doc["dropped_requests"] == 300 and doc["horizon"] == 1_700
    assert "dropped 300 requests" in result.stderr


def test_bootstrap_allows_a_longer_stream(invoke, results_file):
    base = ("evaluate", results_file, "--seeds", "5", "--policies", "ab", "--requests", "9000")
    assert invoke(*base).exit_code == ExitCode.USAGE
    doc = _json(invoke(*base, "--resample", "bootstrap", "--format", "json"))
    assert doc["horizon"] == 9_000


def test_planning_mode_table(invoke):
    result = invoke(
        "evaluate",
        "--arm",
        "control=0.040",
        "--arm",
        "new=0.045",
        "--seeds",
        "5",
        "--batch-size",
        "1000",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    out = result.stdout
    assert "Verdict:" in out and "51,102" in out  # the A/B test's required requests
    for name in ("ab-sequential", "epsilon-greedy", "ucb1", "thompson", "top-two-thompson"):
        assert name in out
    assert "SRM" in out and "biased by its own routing" in out


def test_planning_mode_json_reports_the_power_calculation(invoke):
    doc = _json(
        invoke(
            "evaluate",
            "--arm",
            "control=0.040",
            "--arm",
            "new=0.045",
            "--seeds",
            "10",
            "--policies",
            "ab",
            "--format",
            "json",
        )
    )
    plan = doc["ab_plan"]
    assert plan["control_sample_size"] == 25_551 and plan["required_requests"] == 51_102
    assert doc["horizon"] == 102_300  # twice the test, rounded up to the batch
    ab = doc["policies"][0]["ab"]
    assert ab["true_effect"] == pytest.approx(0.005)
    assert ab["ci_low_median"] < ab["observed_effect_median"] < ab["ci_high_median"]


def test_value_remaining_rule_stops_no_later(invoke):
    args = ("evaluate", "--arm", "a=0.05", "--arm", "b=0.06", "--seeds", "30")
    args += ("--policies", "thompson", "--format", "json")
    plain = _json(invoke(*args))["policies"][0]
    vr = _json(invoke(*args, "--value-remaining", "0.05"))["policies"][0]
    assert vr["requests_to_decision"]["median"] <= plain["requests_to_decision"]["median"]


def test_plot_writes_a_png(invoke, results_file, tmp_path):
    out = tmp_path / "plots" / "bandits.png"
    result = invoke(
        "evaluate", results_file, "--seeds", "5", "--policies", "ab,thompson", "--plot", out, "-q"
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert result.stdout == ""


def test_plot_without_matplotlib_is_a_clear_error(invoke, results_file, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    out = tmp_path / "x.png"
    result = invoke("evaluate", results_file, "--seeds", "2", "--policies", "ab", "--plot", out)
    assert result.exit_code == ExitCode.USAGE
    assert "pip install 'rtml[plot]'" in result.stderr
    assert not out.exists()


def _one_line_error(result, code, fragment):
    assert result.exit_code == code, (result.exit_code, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rtml: error:") and fragment in lines[-1], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "code", "fragment"),
    [
        (["--arm", "a=0.1"], ExitCode.USAGE, "at least two arms"),
        (["--arm", "a=0.1", "--arm", "b=1.5"], ExitCode.USAGE, "[0, 1]"),
        (["--arm", "a=0.1", "--arm", "b=-0.1"], ExitCode.USAGE, "[0, 1]"),
        (["--arm", "a=0.1", "--arm", "b=x"], ExitCode.USAGE, "not a number"),
        (["--arm", "a0.1", "--arm", "b=0.2"], ExitCode.USAGE, "NAME=RATE"),
        (["--arm", "a=0.1", "--arm", "a=0.2"], ExitCode.USAGE, "unique"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--requests", "0"], ExitCode.USAGE, "zero-length"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--alpha", "1.2"], ExitCode.USAGE, "--alpha"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--power", "0"], ExitCode.USAGE, "--power"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--threshold", "1"], ExitCode.USAGE, "--threshold"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--policies", "ab,nope"], ExitCode.USAGE, "nope"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--split", "1,2,3"], ExitCode.USAGE, "--split"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--control", "zz"], ExitCode.USAGE, "--control"),
        (["--arm", "a=0.1", "--arm", "b=0.1"], ExitCode.USAGE, "--mde"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--seeds", "0"], ExitCode.USAGE, "--seeds"),
        (["--arm", "a=0.1", "--arm", "b=0.2", "--batch-size", "0"], ExitCode.USAGE, "--batch"),
        ([], ExitCode.USAGE, "give a RESULTS file"),
    ],
)
def test_bad_planning_input(invoke, args, code, fragment):
    _one_line_error(invoke("evaluate", "bandits", *args), code, fragment)


def test_results_and_arm_together_is_a_usage_error(invoke, results_file):
    _one_line_error(
        invoke("evaluate", results_file, "--arm", "a=0.1", "--arm", "b=0.2"),
        ExitCode.USAGE,
        "not both",
    )


def test_bad_results_input(invoke, results_file, tmp_path):
    _one_line_error(invoke("evaluate", tmp_path / "nope.parquet"), ExitCode.NO_INPUT, "not exist")
    junk = tmp_path / "junk.parquet"
    junk.write_text("not parquet")
    _one_line_error(invoke("evaluate", junk), ExitCode.DATA_ERR, "not a Parquet")

    no_hit = tmp_path / "nohit.parquet"
    pl.read_parquet(results_file).drop("hit").write_parquet(no_hit)
    _one_line_error(invoke("evaluate", no_hit), ExitCode.DATA_ERR, "lack column(s) hit")

    one = tmp_path / "one.parquet"
    pl.read_parquet(results_file).filter(pl.col("strategy") == "batch").write_parquet(one)
    _one_line_error(invoke("evaluate", one), ExitCode.DATA_ERR, "at least two arms")

    empty = tmp_path / "empty.parquet"
    pl.read_parquet(results_file).head(0).write_parquet(empty)
    _one_line_error(invoke("evaluate", empty), ExitCode.DATA_ERR, "at least two arms")

    _one_line_error(
        invoke("evaluate", results_file, "--arms", "batch,nope"), ExitCode.USAGE, "nope"
    )
    _one_line_error(
        invoke("evaluate", results_file, "--reward", "latency_us"), ExitCode.USAGE, "--reward"
    )
    _one_line_error(
        invoke("evaluate", results_file, "--reward", "hit_purchase"),
        ExitCode.DATA_ERR,
        "nothing to evaluate",
    )
    dupes = tmp_path / "dupes.parquet"
    df = pl.read_parquet(results_file)
    pl.concat([df, df.head(3)]).write_parquet(dupes)
    _one_line_error(invoke("evaluate", dupes), ExitCode.DATA_ERR, "more than once")
    bad_range = tmp_path / "range.parquet"
    df.with_columns(pl.col("rr") * 5).write_parquet(bad_range)
    _one_line_error(
        invoke("evaluate", bad_range, "--reward", "rr"), ExitCode.DATA_ERR, "outside [0, 1]"
    )
    _one_line_error(
        invoke("evaluate", results_file, "--arm", "x=0.1", "--arms", "a,b"),
        ExitCode.USAGE,
        "not both",
    )


def test_help_lists_the_command(invoke):
    result = invoke("evaluate", "--help")
    assert result.exit_code == ExitCode.OK and "bandits" in result.stdout
    result = invoke("evaluate", "bandits", "--help")
    assert result.exit_code == ExitCode.OK and "--arm" in result.stdout


def test_readme_documents_every_option():
    from pathlib import Path

    import typer.main

    from rtml_cli.cli import app

    readme = (Path(__file__).resolve().parent.parent / "docs" / "evaluate.md").read_text()
    section = readme[readme.index("## `rtml evaluate` (bandits") :]
    group = typer.main.get_command(app).commands["evaluate"]
    options = [
        opt
        for param in group.commands["bandits"].params
        for opt in param.opts
        if opt.startswith("--") and opt != "--help"
    ]
    assert len(options) > 20
    missing = [opt for opt in options if opt not in section]
    assert not missing, f"README lacks {missing}"


def test_near_tied_best_arms_get_a_note_and_a_small_decision_gap(invoke):
    doc = _json(
        invoke(
            "evaluate",
            "--arm",
            "a=0.30",
            "--arm",
            "b=0.45",
            "--arm",
            "c=0.449",
            "--requests",
            "5000",
            "--seeds",
            "30",
            "--policies",
            "thompson",
            "--format",
            "json",
        )
    )
    note = doc["caveats"][-1]
    assert note.startswith("b and c differ by 0.0010") and "requests per arm" in note
    thompson = doc["policies"][0]
    assert thompson["decision_gap_mean"] is not None and thompson["decision_gap_mean"] <= 0.001
