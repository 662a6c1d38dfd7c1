"""The event log's fingerprint: a hash of the content, taken while DuckDB scans the log."""

from __future__ import annotations

import os
import threading

import polars as pl
import pytest

from rtml_cli.batch.precompute import run_precompute
from rtml_cli.batch.source import CheckedFiles, _Cancelled, connect, fingerprint, open_events
from rtml_cli.errors import DataError
from tests.test_batch_precompute import make_events


def test_open_events_fingerprints_equal_a_serial_hash(tmp_path):
    """The hashes taken in a thread during the scan are the files' own SHA-256, in order."""
    files = []
    for seed in (1, 2):
        path = tmp_path / f"events-{seed}.parquet"
        make_events(n_sessions=50, seed=seed).write_parquet(path)
        files.append(path)
    con = connect(tmp_path / "spill")
    try:
        src = open_events(con, files, None)
    finally:
        con.close()
    assert src.inputs == [fingerprint(f) for f in files]
    assert src.inputs[0]["sha256"] != src.inputs[1]["sha256"]


def test_same_size_and_mtime_but_new_content_is_not_the_same_input(tmp_path):
    """Neither size nor mtime decides "unchanged": a log rewritten in place with other bytes
    of the same length and the same mtime is a different input."""
    events = tmp_path / "events.parquet"
    make_events(n_sessions=200, days=6, seed=4).write_parquet(events)
    first = run_precompute(events, tmp_path / "root", dim=4, n_trees=2, top_k=5, n_neighbors=5)
    stat = events.stat()
    data = bytearray(events.read_bytes())
    data[len(data) // 2] ^= 0xFF
    events.write_bytes(bytes(data))
    os.utime(events, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert events.stat().st_size == stat.st_size and events.stat().st_mtime_ns == stat.st_mtime_ns
    saved = first.manifest["inputs"]["events"][0]
    assert saved["bytes"] == stat.st_size
    assert fingerprint(events)["sha256"] != saved["sha256"]


def test_a_cancelled_fingerprint_stops_at_its_next_read(tmp_path):
    """A scan that fails sets the event: the hash of a large log stops at its next 1 MiB
    read instead of holding the error back until the whole file is read."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(3 << 20))
    cancel = threading.Event()
    assert fingerprint(path, cancel) == fingerprint(path)  # not set: the full hash
    cancel.set()
    with pytest.raises(_Cancelled):
        fingerprint(path, cancel)


def test_a_scan_that_fails_raises_its_own_error_not_the_hash_thread(tmp_path):
    """Bad rows fail the scan with DataError; the cancelled hash does not replace it."""
    path = tmp_path / "events.parquet"
    make_events(n_sessions=20, seed=3).with_columns(session_id=pl.lit("")).write_parquet(path)
    con = connect(tmp_path / "spill")
    try:
        with pytest.raises(DataError):
            open_events(con, [path], None)
    finally:
        con.close()


def _bad_and_good(tmp_path):
    """A log of two files: one with an empty session_id row, one clean."""
    bad, good = tmp_path / "a-bad.parquet", tmp_path / "b-good.parquet"
    frame = make_events(n_sessions=30, seed=5)
    frame.with_columns(
        session_id=pl.when(pl.int_range(pl.len()) == 0).then(pl.lit("")).otherwise("session_id")
    ).write_parquet(bad)
    make_events(n_sessions=30, seed=6).write_parquet(good)
    return bad, good


def test_files_a_previous_run_checked_are_not_checked_row_by_row_again(tmp_path):
    """``checked`` (the warm-start run's input digests) skips the per-row checks of exactly
    those files: the same bad file passes when its digest is listed, and fails when it is
    not, while the counts still cover every file."""
    bad, good = _bad_and_good(tmp_path)
    con = connect(tmp_path / "spill")
    try:
        with pytest.raises(DataError, match="1 problem"):
            open_events(con, [bad, good], None)
        rules = open_events(con, [good], None).checks

        def checked(path, checks=rules):
            return CheckedFiles(checks=checks, files=frozenset({fingerprint(path)["sha256"]}))

        with pytest.raises(DataError, match="1 problem"):
            open_events(con, [bad, good], None, checked=checked(good))
        # checked under other rules (another rtml's checks, other column types): checked again
        with pytest.raises(DataError, match="1 problem"):
            open_events(con, [bad, good], None, checked=checked(bad, checks="0" * 64))
        src = open_events(con, [bad, good], None, checked=checked(bad))
        full = open_events(con, [good], None)
    finally:
        con.close()
    n_bad, n_good = pl.read_parquet(bad).height, pl.read_parquet(good).height
    assert src.rows_in_files == n_bad + n_good and src.rows_checked == n_good
    assert full.rows_checked == n_good == full.rows_in_files


def test_a_warm_start_checks_only_the_files_its_run_did_not(tmp_path):
    """A daily job over a directory of files: the warm start checks the new file's rows
    only (manifest ``rows.events_checked``); a full run checks every row."""
    from datetime import timedelta

    from tests.test_batch_precompute import START

    log = tmp_path / "log"
    log.mkdir()
    events = make_events(n_sessions=300, days=9, seed=7)
    cut = START + timedelta(days=8)
    events.filter(pl.col("ts") < cut).write_parquet(log / "part-1.parquet")
    root = tmp_path / "root"
    opts = {"dim": 4, "n_trees": 2, "top_k": 5, "n_neighbors": 5}
    base = run_precompute(log, root, **opts)
    assert base.rows["events_checked"] == base.rows["events_in_files"]
    new = events.filter(pl.col("ts") >= cut)
    new.write_parquet(log / "part-2.parquet")
    warm = run_precompute(log, root, warm_start=root, n_trees=2, top_k=5, n_neighbors=5)
    assert warm.rows["events_checked"] == new.height > 0
    assert warm.rows["events_in_files"] == events.height


@pytest.mark.parametrize("new_file", ["without user_id", "user_id as integers"])
def test_a_warm_start_reads_a_new_file_as_a_full_run_does(tmp_path, new_file):
    """The unchecked files are checked within the whole log's schema: a new daily file that
    lacks the optional user_id column, or stores it as another type, is accepted by the warm
    start exactly when a full run over the same log accepts it."""
    from datetime import timedelta

    from tests.test_batch_precompute import START

    log = tmp_path / "log"
    log.mkdir()
    events = make_events(n_sessions=300, days=9, seed=8)
    cut = START + timedelta(days=8)
    events.filter(pl.col("ts") < cut).write_parquet(log / "part-1.parquet")
    opts = {"n_trees": 2, "top_k": 5, "n_neighbors": 5}
    run_precompute(log, tmp_path / "root", dim=4, **opts)
    new = events.filter(pl.col("ts") >= cut)
    if new_file == "without user_id":
        new = new.drop("user_id")
    else:
        codes = new["user_id"].cast(pl.Categorical).to_physical().cast(pl.Int64)
        new = new.with_columns(user_id=codes)
    new.write_parquet(log / "part-2.parquet")
    full = run_precompute(log, tmp_path / "full", dim=4, **opts)
    warm = run_precompute(log, tmp_path / "root", warm_start=tmp_path / "root", **opts)
    assert warm.rows["events_checked"] == new.height > 0
    assert warm.rows["events_in_files"] == full.rows["events_in_files"] == events.height
