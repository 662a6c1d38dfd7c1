"""Atomic publish, the root lock, Parquet input discovery, duration parsing."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtml_cli.errors import DataError, InputMissing, TemporaryFailure, UsageError
from rtml_cli.fsutil import JSON_OUTPUT, atomic_path, parquet_files, root_lock
from rtml_cli.timeutil import format_duration, parse_duration, parse_timestamp


def test_atomic_path_publishes_on_success(tmp_path):
    target = tmp_path / "out" / "x.json"
    with atomic_path(target, JSON_OUTPUT) as tmp:
        tmp.write_text('"hello"')
        assert not target.exists()
    assert target.read_text() == '"hello"'
    assert [p.name for p in target.parent.iterdir()] == ["x.json"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "x.json"
    target.write_text('"old"')
    with pytest.raises(RuntimeError), atomic_path(target, JSON_OUTPUT) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == '"old"'
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def _hold_lock(root, ready):
    with root_lock(root):
        ready.set()
        time.sleep(60)


def test_lock_blocks_second_run_and_is_freed_by_kill9(tmp_path):
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    proc = ctx.Process(target=_hold_lock, args=(tmp_path, ready))
    proc.start()
    try:
        assert ready.wait(10)
        with pytest.raises(TemporaryFailure, match=f"pid {proc.pid}"), root_lock(tmp_path):
            pass
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
    with root_lock(tmp_path):  # the killed holder's lock does not block
        pass


def test_parquet_files_errors(tmp_path):
    with pytest.raises(InputMissing):
        parquet_files(tmp_path / "missing.parquet")
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        parquet_files(empty)
    csv = tmp_path / "x.parquet"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="not a Parquet"):
        parquet_files(csv)
    with pytest.raises(InputMissing):
        parquet_files(tmp_path / "*.nothing")


def test_durations_and_timestamps():
    assert parse_duration("30m") == timedelta(minutes=30)
    assert parse_duration("0s") == timedelta(0)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    with pytest.raises(UsageError):
        parse_duration("soon")
    assert parse_timestamp("2024-03-01").isoformat() == "2024-03-01T00:00:00+00:00"
    with pytest.raises(UsageError):
        parse_timestamp("yesterday")


@given(st.integers(min_value=1, max_value=10**12))
def test_duration_round_trip(micros):
    delta = timedelta(microseconds=micros)
    assert parse_duration(format_duration(delta)) == delta
