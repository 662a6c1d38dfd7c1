"""Issue #15, inputs: never serve a silently wrong answer, never hide why a run failed.

Precompute applies `rtml data validate`'s row checks to what it reads; environmental
failures (disk full, Ctrl-C inside DuckDB, out of memory) and corrupt warm-start state
get their own exit codes and one line; literal brackets in paths, duplicate CSV
headers and output determinism.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import polars as pl

from rtml_cli.errors import ExitCode
from tests.test_batch_precompute import make_events


def _write(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_parquet(path)
    return path


def _errors(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("rtml: error:")]


def _assert_nothing_published(root: Path) -> None:
    assert not (root / "latest").exists() and not (root / "latest").is_symlink()
    runs = root / "runs"
    assert not runs.exists() or [p.name for p in runs.iterdir()] == []


# --- 1. precompute checks what it reads --------------------------------------------------


def test_precompute_refuses_timestamps_in_the_future(invoke, tmp_path):
    frame = make_events()
    far = datetime(2200, 1, 1, tzinfo=timezone.utc)
    frame = frame.with_columns(
        ts=pl.when(pl.int_range(pl.len()) < 3).then(pl.lit(far)).otherwise("ts")
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert len(_errors(result)) == 1 and "events contract" in _errors(result)[0]
    assert "  - 3 timestamps lie in the future" in result.stderr
    assert "2200-01-01" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_published(root)


def test_precompute_allows_small_clock_skew(tmp_path):
    from rtml_cli.batch.source import connect, open_events
    from rtml_cli.timeutil import CLOCK_SKEW

    now = datetime(2024, 3, 11, tzinfo=timezone.utc)
    frame = make_events().with_columns(  # make_events spans 2024-03-01 .. 2024-03-11
        ts=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit(now + CLOCK_SKEW / 2)).otherwise("ts")
    )
    events = _write(tmp_path / "e.parquet", frame)
    con, _ = connect()
    try:
        src = open_events(con, [events], None, now=now)
    finally:
        con.close()
    assert src.last_ts == now + CLOCK_SKEW / 2


def test_precompute_refuses_nan_item_ids(invoke, tmp_path):
    frame = make_events().with_columns(pl.col("item_id").cast(pl.Float64))
    frame = frame.with_columns(
        item_id=pl.when(pl.int_range(pl.len()) < 2)
        .then(float("nan"))
        .when(pl.int_range(pl.len()) == 2)
        .then(float("inf"))
        .otherwise("item_id")
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert "  - 3 rows have a null, NaN or infinite item_id" in result.stderr
    _assert_nothing_published(root)


def test_precompute_refuses_empty_ids_and_lists_every_problem(invoke, tmp_path):
    n = pl.int_range(pl.len())
    frame = make_events().with_columns(
        session_id=pl.when(n < 2).then(pl.lit("")).otherwise("session_id"),
        user_id=pl.when(n == 5).then(pl.lit(" ")).otherwise("user_id"),
        event=pl.when(n == 6).then(pl.lit("")).otherwise("event"),
    )
    events = _write(tmp_path / "e.parquet", frame)
    root = tmp_path / "root"
    result = invoke("precompute", events, "--out", root, "--dim", "8", "--trees", "5")
    assert result.exit_code == ExitCode.DATA_ERR, result.stderr
    assert "  - 2 rows have a null or empty session_id" in result.stderr
    assert "  - 1 rows have a null or empty event" in result.stderr
    assert "  - 1 rows have an empty user_id: use null for anonymous visitors" in result.stderr
    assert "3 problem(s)" in _errors(result)[0]
    _assert_nothing_published(root)


def test_validate_and_precompute_word_problems_alike(invoke, tmp_path):
    frame = make_events().with_columns(
        session_id=pl.when(pl.int_range(pl.len()) < 2).then(pl.lit("")).otherwise("session_id")
    )
    events = _write(tmp_path / "e.parquet", frame)
    validated = invoke("data", "validate", events, "--session-gap", "none")
    precomputed = invoke("precompute", events, "--out", tmp_path / "root", "--dim", "8")
    assert validated.exit_code == precomputed.exit_code == ExitCode.DATA_ERR
    line = "  - 2 rows have a null or empty session_id"
    assert line in validated.stderr and line in precomputed.stderr
