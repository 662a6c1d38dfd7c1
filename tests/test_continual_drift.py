"""`rtml drift`: detectors, histogram properties, CLI exit codes and bad input."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.continual.drift import (
    DETECTORS,
    PSI_FLOOR,
    categorical_distribution,
    make_detectors,
    numeric_distribution,
    popularity_drift,
)
from rtml_cli.errors import ExitCode, UsageError

# The detector contract (identical samples, large and tiny shifts, categorical symmetry,
# thresholds) is rtml_cli.checks.detectors, run over every registered detector by
# tests/test_registry.py.


def test_make_detectors_rejects_unknown_and_empty() -> None:
    with pytest.raises(UsageError, match="unknown drift detector 'kl'"):
        make_detectors(["psi", "kl"])
    with pytest.raises(UsageError, match="no drift detector"):
        make_detectors([])


def test_psi_severity_bands() -> None:
    psi = DETECTORS.get("psi")()
    none = psi.score(categorical_distribution("c", {"a": 500, "b": 500}, {"a": 520, "b": 480}))
    moderate = psi.score(categorical_distribution("c", {"a": 500, "b": 500}, {"a": 680, "b": 320}))
    significant = psi.score(
        categorical_distribution("c", {"a": 500, "b": 500}, {"a": 800, "b": 200})
    )
    assert (none.severity, moderate.severity, significant.severity) == (
        "none",
        "moderate",
        "significant",
    )
    # PSI of 0.5/0.5 -> 0.68/0.32 by hand.
    expected = (0.68 - 0.5) * math.log(0.68 / 0.5) + (0.32 - 0.5) * math.log(0.32 / 0.5)
    assert moderate.value == pytest.approx(expected)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 1000), min_size=2, max_size=12),
    st.lists(st.integers(0, 1000), min_size=2, max_size=12),
)
def test_scores_are_bounded(ref_counts: list[int], cur_counts: list[int]) -> None:
    ref = {f"k{i}": c for i, c in enumerate(ref_counts)}
    cur = {f"k{i}": c for i, c in enumerate(cur_counts)}
    dist = categorical_distribution("c", ref, cur, max_categories=5)
    assert dist.reference_rows == sum(ref_counts)
    assert dist.current_rows == sum(cur_counts)
    for det in make_detectors():
        res = det.score(dist)
        assert res.value >= 0
        if det.name == "js":
            assert res.value <= 1
        if det.name == "psi":
            # Bounded by the floor: no bin share can fall below PSI_FLOOR / (1 + k * floor).
            assert res.value <= 2 * math.log(1 / PSI_FLOOR) + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=200),
    st.lists(st.floats(-1e6, 1e6) | st.just(math.nan), min_size=1, max_size=200),
    st.integers(2, 20),
)
def test_numeric_bins_count_every_value(ref: list[float], cur: list[float], bins: int) -> None:
    dist = numeric_distribution("x", np.array(ref), np.array(cur), bins=bins)
    assert dist.reference_rows == len(ref)
    assert dist.current_rows == len(cur)
    assert len(dist.bins) <= bins + 1  # + the (null) bin
    assert len(dist.bins) == len(dist.reference_counts) == len(dist.current_counts)


def test_quantile_bins_split_reference_evenly() -> None:
    ref = np.arange(1000, dtype=float)
    dist = numeric_distribution("x", ref, ref + 10_000, bins=4)
    assert dist.reference_counts.tolist() == [250, 250, 250, 250]
    assert dist.current_counts.tolist() == [0, 0, 0, 1000]  # beyond the range: last bin


def test_unseen_categories_fall_in_other() -> None:
    dist = categorical_distribution("c", {"a": 90, "b": 10}, {"a": 50, "z": 50}, max_categories=5)
    assert dist.bins == ("a", "b", "(other)")
    assert dist.current_counts.tolist() == [50, 0, 50]
    assert dist.unseen_share == pytest.approx(0.5)


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture
def samples(tmp_path):
    rng = np.random.default_rng(7)
    n = 3000

    def frame(shift: float, cats: list[str], probs: list[float]):
        return pl.DataFrame(
            {
                "price": rng.normal(10 + shift, 2, n),
                "category": rng.choice(cats, n, p=probs),
                "ts": [datetime(2024, 3, 1, tzinfo=timezone.utc)] * n,
                "order_id": np.arange(n),
            }
        )

    frame(0, ["a", "b", "c"], [0.5, 0.3, 0.2]).write_parquet(tmp_path / "ref.parquet")
    frame(0, ["a", "b", "c"], [0.5, 0.3, 0.2]).write_parquet(tmp_path / "same.parquet")
    frame(3, ["a", "b", "d"], [0.2, 0.3, 0.5]).write_parquet(tmp_path / "moved.parquet")
    return tmp_path


def test_cli_no_drift_exits_ok(invoke, samples) -> None:
    result = invoke("drift", samples / "ref.parquet", samples / "same.parquet")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "no drift" in result.stdout
    assert "ts (timestamp" in result.stdout  # skipped and said so
    assert "order_id (identifier" in result.stdout


def test_cli_drift_exits_10_with_json(invoke, samples) -> None:
    result = invoke("drift", samples / "ref.parquet", samples / "moved.parquet", "--format", "json")
    assert result.exit_code == ExitCode.DRIFT
    payload = json.loads(result.stdout)
    assert payload["drift"] is True
    assert sorted(payload["drifted_features"]) == ["category", "price"]
    cat = next(f for f in payload["features"] if f["feature"] == "category")
    assert cat["unseen_share"] == pytest.approx(0.5, abs=0.05)
    assert set(cat["detectors"]) == {"psi", "ks", "js"}
    assert cat["detectors"]["ks"]["test"] == "chi2"


def test_cli_features_and_detectors(invoke, samples) -> None:
    result = invoke(
        "drift",
        "compare",
        samples / "ref.parquet",
        samples / "moved.parquet",
        "--features",
        "price",
        "--detectors",
        "psi",
        "--psi-threshold",
        "50",
        "-f",
        "json",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    payload = json.loads(result.stdout)
    assert [f["feature"] for f in payload["features"]] == ["price"]
    assert payload["detectors"] == {"psi": 50.0}


def test_cli_timestamp_feature_when_named(invoke, samples) -> None:
    result = invoke(
        "drift", samples / "ref.parquet", samples / "same.parquet", "--features", "ts", "-f", "json"
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["features"][0]["feature_kind"] == "numeric"


def test_cli_directory_and_glob_inputs(invoke, samples) -> None:
    parts = samples / "parts"
    parts.mkdir()
    frame = pl.read_parquet(samples / "ref.parquet")
    frame[:1500].write_parquet(parts / "a.parquet")
    frame[1500:].write_parquet(parts / "b.parquet")
    result = invoke("drift", parts, str(samples / "sam*.parquet"), "-f", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert json.loads(result.stdout)["reference"]["files"] == 2


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--psi-threshold", "-0.1"], ExitCode.USAGE, "--psi-threshold must be > 0"),
        (["--ks-alpha", "1.5"], ExitCode.USAGE, "--ks-alpha must be in (0, 1)"),
        (["--js-threshold", "0"], ExitCode.USAGE, "--js-threshold must be in (0, 1)"),
        (["--bins", "1"], ExitCode.USAGE, "--bins must be at least 2"),
        (["--detectors", "psi,wasserstein"], ExitCode.USAGE, "unknown drift detector"),
        (["--features", "price,colour"], ExitCode.USAGE, "colour not in both inputs"),
    ],
)
def test_cli_bad_options(invoke, samples, args, code, message) -> None:
    result = invoke("drift", samples / "ref.parquet", samples / "same.parquet", *args)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_cli_bad_inputs(invoke, samples) -> None:
    ref = samples / "ref.parquet"
    missing = invoke("drift", ref, samples / "nope.parquet")
    assert missing.exit_code == ExitCode.NO_INPUT and "does not exist" in missing.stderr

    (samples / "empty.parquet").write_bytes(b"")
    empty = invoke("drift", ref, samples / "empty.parquet")
    assert empty.exit_code == ExitCode.DATA_ERR and "is empty" in empty.stderr

    (samples / "text.parquet").write_text("id,price\n1,2\n")
    text = invoke("drift", ref, samples / "text.parquet")
    assert text.exit_code == ExitCode.DATA_ERR and "not a Parquet file" in text.stderr

    pl.DataFrame({"other": [1, 2]}).write_parquet(samples / "other.parquet")
    disjoint = invoke("drift", ref, samples / "other.parquet")
    assert disjoint.exit_code == ExitCode.DATA_ERR and "no columns in common" in disjoint.stderr

    pl.DataFrame({"price": ["x", "y"]}).write_parquet(samples / "strprice.parquet")
    types = invoke("drift", ref, samples / "strprice.parquet")
    assert types.exit_code == ExitCode.DATA_ERR and "disagree on column types" in types.stderr
    assert "price: Float64 in REFERENCE but String in CURRENT" in types.stderr

    pl.DataFrame({"price": pl.Series([], dtype=pl.Float64)}).write_parquet(samples / "zero.parquet")
    zero = invoke("drift", ref, samples / "zero.parquet")
    assert zero.exit_code == ExitCode.DATA_ERR and "has no rows" in zero.stderr


# --- event-log popularity ---------------------------------------------------------------------


def _events(tmp_path, shift_day: int = 10, days: int = 14):
    """Views over 20 items; from ``shift_day`` on, interest moves to items 10-19."""
    rng = np.random.default_rng(3)
    start = datetime(2024, 3, 1, tzinfo=timezone.utc)
    rows = []
    for day in range(days):
        weights = np.ones(20)
        weights[10 if day >= shift_day else 0 : 20 if day >= shift_day else 10] = 8.0
        items = rng.choice(20, 400, p=weights / weights.sum())
        secs = np.sort(rng.integers(0, 86_400, 400))
        for item, sec in zip(items, secs, strict=True):
            rows.append((start + timedelta(days=day, seconds=int(sec)), f"i{item}"))
    frame = pl.DataFrame(
        {
            "ts": [r[0] for r in rows],
            "user_id": [None] * len(rows),
            "session_id": [f"s{i // 5}" for i in range(len(rows))],
            "item_id": [r[1] for r in rows],
            "event": ["view"] * len(rows),
        }
    )
    frame.write_parquet(tmp_path / "events.parquet")
    pl.DataFrame(
        {"item_id": [f"i{i}" for i in range(20)], "category": ["A"] * 10 + ["B"] * 10}
    ).write_parquet(tmp_path / "items.parquet")
    return frame, start


def test_popularity_drift_fires_after_shift_only(tmp_path) -> None:
    frame, start = _events(tmp_path)
    day = timedelta(days=1)
    # JS distance is biased upwards on small samples (400 views over 20 items): 0.2, not 0.1.
    dets = make_detectors(["psi", "js"], {"js": 0.2})
    before = popularity_drift(
        frame,
        (start + 2 * day, start + 9 * day),
        (start + 9 * day, start + 10 * day),
        detectors=dets,
    )
    after = popularity_drift(
        frame,
        (start + 3 * day, start + 10 * day),
        (start + 10 * day, start + 11 * day),
        detectors=dets,
    )
    assert not before.drift, before.results
    assert after.drift and after.results["psi"].severity == "significant"


def test_cli_popularity(invoke, tmp_path) -> None:
    _events(tmp_path)
    events = tmp_path / "events.parquet"
    quiet = invoke("drift", "popularity", events, "--end", "2024-03-10", "--by", "category")
    assert quiet.exit_code == ExitCode.OK, quiet.stderr
    moved = invoke("drift", "popularity", events, "--by", "category", "-f", "json")
    assert moved.exit_code == ExitCode.DRIFT, moved.stderr
    payload = json.loads(moved.stdout)
    assert payload["feature"] == "category share" and payload["drift"] is True
    # every detector's statistic is in the JSON (cron scripts branch on it), with the table's
    # value; the thresholds in force are listed apart
    table = invoke("drift", "popularity", events, "--by", "category").stdout
    for name, result in payload["detectors"].items():
        assert {"value", "threshold", "drift"} <= set(result), name
        assert f"{result['value']:.4f}" in table, name
    assert set(payload["thresholds"]) == set(payload["detectors"])
    outside = invoke("drift", "popularity", events, "--end", "2030-01-01")
    assert outside.exit_code == ExitCode.USAGE and "outside the data" in outside.stderr
    bad_by = invoke("drift", "popularity", events, "--by", "brand")
    assert bad_by.exit_code == ExitCode.USAGE
