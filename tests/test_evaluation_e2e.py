"""End to end on the committed sample world: precompute -> simulate -> evaluate."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from rtml_cli.errors import ExitCode

SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"


@pytest.mark.slow
def test_policies_converge_to_the_strategy_with_the_highest_mean_reward(invoke, tmp_path):
    world = json.loads((SHOP / "world.json").read_text())
    cutoff = world["history_cutoff"]
    start = datetime.fromisoformat(cutoff.replace("Z", "+00:00"))
    until = (start + timedelta(hours=12)).isoformat()  # half a day of sessions: a few seconds
    result = invoke(
        "precompute",
        SHOP / "events.parquet",
        "--items",
        SHOP / "items.parquet",
        "--as-of",
        cutoff,
        "--out",
        tmp_path / "pre",
        "-q",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    results = tmp_path / "results.parquet"
    result = invoke(
        "simulate",
        SHOP / "events.parquet",
        "--artifacts",
        tmp_path / "pre",
        "--strategies",
        "popular,session-embedding,session-itemknn",
        "--to",
        until,
        "--out",
        results,
        "-q",
    )
    assert result.exit_code == ExitCode.OK, result.stderr

    result = invoke("evaluate", results, "--seeds", "100", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    means = {a["arm"]: a["mean_reward"] for a in doc["arms"]}
    best = max(means, key=means.get)
    assert doc["horizon"] > 1_000
    for row in doc["policies"]:
        if row["kind"] == "bandit":
            # converged: most of the traffic went to the arm with the highest mean reward
            assert row["best_arm_traffic_share"] > 0.6, row["policy"]
            assert row["picked_best_given_decided"] >= 0.9, row["policy"]
    assert [a["arm"] for a in doc["arms"] if a["best"]] == [best]
