"""`rtml data validate`: a summary for good inputs, every problem (exit 65) for bad ones."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from rtml_cli.data.importers import import_log
from rtml_cli.data.validate import validate, validate_bandit, validate_events
from rtml_cli.errors import DataError, ExitCode

OBD = Path(__file__).resolve().parent.parent / "sample_data" / "obd"
T0 = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)


def _events(**overrides) -> pl.DataFrame:
    base = {
        "ts": [T0 + timedelta(minutes=m) for m in (0, 1, 2, 0, 5, 60)],
        "user_id": ["u1", "u1", "u1", None, None, "u2"],
        "session_id": ["s1", "s1", "s1", "s2", "s2", "s3"],
        "item_id": [1, 2, 3, 1, 4, 2],
        "event": ["view", "cart", "purchase", "view", "view", "view"],
    }
    base.update(overrides)
    return pl.DataFrame(base).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


def _bandit(**overrides) -> pl.DataFrame:
    base = {
        "ts": [T0 + timedelta(seconds=s) for s in range(4)],
        "action": [0, 1, 2, 1],
        "position": [1, 2, 1, 3],
        "reward": [0.0, 1.0, 0.0, 0.0],
        "propensity": [0.25, 0.5, 1.0, 0.125],
        "policy": ["p"] * 4,
        "ctx_0": [0.1, 0.2, 0.3, 0.4],
    }
    base.update(overrides)
    return pl.DataFrame(base, strict=False)


def _write(df: pl.DataFrame, path: Path) -> Path:
    df.write_parquet(path)
    return path


def _fails(invoke, path, *args, contains: str, kind: str | None = None):
    result = invoke("data", "validate", path, *args)
    assert result.exit_code == ExitCode.DATA_ERR, result.stdout + result.stderr
    assert contains in result.stderr, result.stderr
    if kind:
        assert f"is not a valid {kind}" in result.stderr
    assert "Traceback" not in result.stderr
    return result


# --------------------------------------------------------------------------- happy paths


def test_valid_events_summary(invoke, tmp_path):
    path = _write(_events(), tmp_path / "events.parquet")
    result = invoke("data", "validate", path, "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert (
        report["valid"] is True and report["contract"] == "events" and report["contract_detected"]
    )
    s = report["summary"]
    assert s["rows"] == 6 and s["users"] == 2 and s["sessions"] == 3 and s["items"] == 4
    assert s["anonymous_event_share"] == pytest.approx(2 / 6)
    assert s["anonymous_session_share"] == pytest.approx(1 / 3)
    assert s["events_per_session"]["mean"] == pytest.approx(2.0)
    assert s["events_per_session"]["median"] == pytest.approx(2.0)
    assert s["event_mix"] == {"view": 4, "cart": 1, "purchase": 1}
    assert s["time_range"][0].startswith("2024-03-01T12:00:00")


def test_valid_events_table_says_kind_was_detected(invoke, tmp_path):
    path = _write(_events(), tmp_path / "events.parquet")
    result = invoke("data", "validate", path)
    assert result.exit_code == ExitCode.OK
    assert "a valid events file (detected from its columns" in result.stdout
    assert "events per session" in result.stdout and "mean 2" in result.stdout


def test_directory_and_glob_of_partitions(invoke, tmp_path):
    df = _events()
    part = tmp_path / "log"
    (part / "day=1").mkdir(parents=True)
    (part / "day=2").mkdir()
    df.head(3).write_parquet(part / "day=1" / "a.parquet")
    df.tail(3).write_parquet(part / "day=2" / "b.parquet")
    for target in (part, f"{part}/*/*.parquet"):
        report = validate(target)
        assert report.ok and report.files == 2 and report.rows == 6


def test_real_obd_bandit_log_is_valid(invoke, tmp_path):
    out = tmp_path / "bts.parquet"
    import_log("obd", OBD / "bts" / "men" / "men.csv.gz", out)
    result = invoke("data", "validate", out, "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    report = json.loads(result.stdout)
    assert report["contract"] == "bandit"
    s = report["summary"]
    assert s["rows"] == 10_000 and s["actions"] == 34 and s["positions"] == [1, 2, 3]
    assert s["policies"] == {"bts": 10_000}
    assert 0 < s["propensity_min"] <= s["propensity_max"] <= 1
    # the imported items file is an item catalogue
    assert validate(tmp_path / "bts.items.parquet").kind == "items"


def test_items_summary(invoke, tmp_path):
    items = pl.DataFrame(
        {"item_id": [1, 2, 3], "category": ["a", "a", "b"], "price": [1.0, 2.5, 9.0]}
    )
    path = _write(items.with_columns(title=pl.lit("x")), tmp_path / "items.parquet")
    result = invoke("data", "validate", path, "--kind", "items", "--format", "json")
    assert result.exit_code == ExitCode.OK
    s = json.loads(result.stdout)["summary"]
    assert s["items"] == 3 and s["categories"] == 2 and s["price_max"] == 9.0
    assert s["titles_present"] == 3


def test_library_function_raises_with_every_problem(tmp_path):
    path = _write(_bandit(propensity=[0.0, 0.5, 2.0, None]), tmp_path / "b.parquet")
    with pytest.raises(DataError) as err:
        validate_bandit(path)
    assert len(err.value.problems) == 2
    assert validate_events(_write(_events(), tmp_path / "e.parquet")).ok


# --------------------------------------------------------------------------- bad inputs


def test_missing_column(invoke, tmp_path):
    path = _write(_events().drop("session_id"), tmp_path / "e.parquet")
    _fails(invoke, path, "--kind", "events", contains="missing column 'session_id'", kind="events")


def test_mistyped_column(invoke, tmp_path):
    df = _events().with_columns(pl.col("ts").dt.epoch("s"))
    path = _write(df, tmp_path / "e.parquet")
    _fails(invoke, path, contains="column 'ts' is BIGINT, expected a timestamp", kind="events")


def test_null_or_empty_session_id(invoke, tmp_path):
    path = _write(_events(session_id=["s1", None, "", "s2", "s2", "s3"]), tmp_path / "e.parquet")
    _fails(invoke, path, contains="2 rows have a null or empty session_id")


def test_null_or_empty_item_id(invoke, tmp_path):
    path = _write(_events(item_id=["a", "b", "", None, "c", "d"]), tmp_path / "e.parquet")
    _fails(invoke, path, contains="2 rows have a null or empty item_id")


def test_unparseable_timestamps(invoke, tmp_path):
    df = _events().with_columns(pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S"))
    df = df.with_columns(ts=pl.when(pl.int_range(6) == 2).then(pl.lit("yesterday")).otherwise("ts"))
    result = _fails(
        invoke, _write(df, tmp_path / "e.parquet"), contains="1 values of ts cannot be parsed"
    )
    assert "'yesterday'" in result.stderr
    assert "expected a timestamp" in result.stderr


def test_future_timestamps(invoke, tmp_path):
    future = datetime.now(timezone.utc) + timedelta(days=400)
    df = _events().with_columns(
        ts=pl.when(pl.int_range(6) == 5).then(pl.lit(future)).otherwise("ts")
    )
    _fails(invoke, _write(df, tmp_path / "e.parquet"), contains="1 timestamps lie in the future")


def test_duplicate_rows(invoke, tmp_path):
    df = pl.concat([_events(), _events().head(2)])
    _fails(invoke, _write(df, tmp_path / "e.parquet"), contains="2 rows are exact duplicates")


def test_session_spanning_more_than_the_gap(invoke, tmp_path):
    df = _events(
        session_id=["s1", "s1", "s1", "s2", "s2", "s1"], user_id=["u1"] * 3 + [None] * 2 + ["u1"]
    )
    path = _write(df, tmp_path / "e.parquet")
    result = _fails(invoke, path, contains="1 sessions have consecutive events more than 30m apart")
    assert "longest gap 58m" in result.stderr and "'s1'" in result.stderr
    # configurable: a 1h gap accepts it, and 'none' skips the check
    assert invoke("data", "validate", path, "--session-gap", "1h").exit_code == ExitCode.OK
    assert invoke("data", "validate", path, "--session-gap", "none").exit_code == ExitCode.OK


def test_propensity_outside_unit_interval(invoke, tmp_path):
    path = _write(_bandit(propensity=[0.0, 0.5, 1.5, -0.1]), tmp_path / "b.parquet")
    _fails(invoke, path, contains="3 propensities lie outside (0, 1]", kind="bandit")


def test_propensity_missing(invoke, tmp_path):
    path = _write(_bandit(propensity=[0.5, None, float("nan"), 0.5]), tmp_path / "b.parquet")
    _fails(invoke, path, contains="2 propensities are missing (null or NaN)")
    nocol = _write(_bandit().drop("propensity"), tmp_path / "c.parquet")
    _fails(invoke, nocol, "--kind", "bandit", contains="missing column 'propensity'")


def test_non_numeric_reward(invoke, tmp_path):
    path = _write(_bandit(reward=["0", "1", "click", "0"]), tmp_path / "b.parquet")
    result = _fails(invoke, path, contains="column 'reward' is VARCHAR, expected numeric")
    assert "1 rewards are not numbers (e.g. 'click')" in result.stderr


def test_nan_reward(invoke, tmp_path):
    path = _write(_bandit(reward=[0.0, float("nan"), None, 1.0]), tmp_path / "b.parquet")
    _fails(invoke, path, contains="2 rewards are null, NaN or infinite")


def test_empty_file(invoke, tmp_path):
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    _fails(invoke, empty, contains="is empty (0 bytes)")
    no_rows = _write(_events().head(0), tmp_path / "norows.parquet")
    _fails(invoke, no_rows, contains="the file has no rows")


def test_not_parquet(invoke, tmp_path):
    path = tmp_path / "events.parquet"
    path.write_text("ts,user_id\n1,2\n")
    _fails(invoke, path, contains="is not a Parquet file")


def test_missing_path(invoke, tmp_path):
    result = invoke("data", "validate", tmp_path / "nope.parquet")
    assert result.exit_code == ExitCode.NO_INPUT
    assert "nope.parquet does not exist" in result.stderr
    result = invoke("data", "validate", f"{tmp_path}/*.parquet")
    assert result.exit_code == ExitCode.NO_INPUT and "matches no file" in result.stderr


def test_undetectable_kind_asks_for_kind(invoke, tmp_path):
    path = _write(pl.DataFrame({"a": [1], "b": [2]}), tmp_path / "x.parquet")
    _fails(invoke, path, contains="pass --kind")


def test_every_problem_is_listed_and_json_carries_them(invoke, tmp_path):
    df = pl.concat(
        [_events(item_id=[1, None, 3, 1, 4, 2]), _events(item_id=[1, None, 3, 1, 4, 2]).head(1)]
    )
    df = df.with_columns(
        session_id=pl.when(pl.int_range(7) == 3).then(None).otherwise("session_id")
    )
    path = _write(df, tmp_path / "e.parquet")
    result = invoke("data", "validate", path, "--format", "json")
    assert result.exit_code == ExitCode.DATA_ERR
    report = json.loads(result.stdout)
    assert report["valid"] is False and len(report["problems"]) == 3
    for problem in report["problems"]:
        assert f"  - {problem}" in result.stderr
    assert "3 problem(s) found" in result.stderr


def test_bad_session_gap_is_usage_error(invoke, tmp_path):
    path = _write(_events(), tmp_path / "e.parquet")
    result = invoke("data", "validate", path, "--session-gap", "soon")
    assert result.exit_code == ExitCode.USAGE and "invalid duration 'soon'" in result.stderr
