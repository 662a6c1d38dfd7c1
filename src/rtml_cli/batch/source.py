"""Opening the event log for a precompute run: schema check, fingerprints, point-in-time view.

The log is never pulled into Python objects: DuckDB scans the Parquet files and
every later step queries the view ``ev``, which holds only events strictly
before the run's as-of (point-in-time correctness).
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rtml_cli.duck import sql_str
from rtml_cli.errors import DataError, UsageError

REQUIRED = ("ts", "user_id", "session_id", "item_id", "event")
_TIMESTAMP_TYPES = ("TIMESTAMP", "DATE")
_TS = "CAST(ts AS TIMESTAMP)"  # the log's ts as a naive-UTC TIMESTAMP in every query
_FILE = "_rtml_file"  # read_parquet's file-name column in the scan of unchecked files


@dataclass(frozen=True)
class CheckedFiles:
    """Event files a previous run passed through the per-row checks: their SHA-256 digests,
    and the digest of the checks themselves (``checks_digest``) as that run applied them."""

    checks: str
    files: frozenset[str]


def checks_digest(schema: dict[str, str]) -> str:
    """A digest of the per-row checks ``open_events`` applies to a log of this ``schema``
    (column -> DuckDB type): the SQL of every check (with a fixed clock) and the types it
    was written for. A run skips a file only when the run that checked it had this digest,
    so a change to the checks, or to the log's column types, checks every file again."""
    from rtml_cli.data.validate import event_row_checks

    fixed = datetime(2000, 1, 1, tzinfo=timezone.utc)
    doc = {"schema": schema, "checks": event_row_checks(schema, fixed, ts_sql=_TS)}
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def sql_files(files: list[Path]) -> str:
    return "[" + ", ".join(sql_str(str(f)) for f in files) + "]"


def sql_ts(value: datetime) -> str:
    """A naive-UTC TIMESTAMP literal (DuckDB without the ICU extension has no time zones).

    A naive ``value`` is UTC already (what DuckDB returns for a TIMESTAMP column), never the
    host's local time: ``astimezone`` would read it as local time and move it by the host's
    UTC offset.
    """
    naive = value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else value
    return f"TIMESTAMP {sql_str(naive.isoformat(sep=' ', timespec='microseconds'))}"


class _Cancelled(Exception):
    """The scan failed or was interrupted: the hashes it waited for are not needed."""


def fingerprint(path: Path, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Size and SHA-256 of a file's content (the idempotence key of a run).

    ``cancel``: checked between 1 MiB reads; once set, raises ``_Cancelled`` (so a scan that
    fails does not wait for a hash of a large log that nobody will read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            if cancel is not None and cancel.is_set():
                raise _Cancelled(str(path))
            digest.update(chunk)
    return {"path": str(path), "bytes": path.stat().st_size, "sha256": digest.hexdigest()}


def connect(spill: Path, memory_limit: str | None = None):
    """Precompute's DuckDB connection (``rtml_cli.duck.connect``): an eighth of the machine's
    memory, at least 1 GB (``duck.share_of_ram``), unless ``RTML_MEMORY_LIMIT`` says
    otherwise, spilling to ``spill`` under ROOT. (A flat 1 GB ran out of memory at ~100M
    events; 3 GB, an eighth of 24 GB, ran them at 4.75 GB peak RSS.)"""
    from rtml_cli.duck import connect as duck_connect
    from rtml_cli.duck import share_of_ram

    return duck_connect(spill, memory_limit=memory_limit or share_of_ram())


@dataclass
class EventSource:
    files: list[Path]
    inputs: list[dict[str, Any]]  # fingerprints
    as_of: datetime
    first_ts: datetime
    last_ts: datetime
    rows_in_files: int
    rows_used: int
    item_id_type: str
    rows_checked: int = 0  # rows the per-row contract checks ran on (see ``checked``)
    checks: str = ""  # ``checks_digest`` of the per-row checks this run applied
    view: str = ""  # the statement that created ``ev``

    def cursor(self, con: Any) -> Any:
        """A second connection to ``con``'s database for another thread, with its own ``ev``
        (temp views and the time zone are per connection)."""
        cur = con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        cur.sql(self.view)
        return cur


def _as_utc(value: Any) -> datetime:
    if isinstance(value, datetime):
        return (
            value.replace(tzinfo=timezone.utc)
            if value.tzinfo is None
            else value.astimezone(timezone.utc)
        )
    return datetime.combine(value, datetime.min.time(), tzinfo=timezone.utc)


def open_events(
    con,
    files: list[Path],
    as_of: datetime | None,
    *,
    now: datetime | None = None,
    checked: CheckedFiles | None = None,
) -> EventSource:
    """Check the events contract, resolve as-of and create the view ``ev`` (ts < as-of).

    One scan counts the rows and applies `rtml data validate`'s per-row checks
    (``data.validate.event_row_checks``): null, empty, NaN or infinite
    ``ts``/``session_id``/``item_id``/``event``, an empty ``user_id``, timestamps
    more than ``timeutil.CLOCK_SKEW`` after ``now`` (default: the clock) — a log
    with a row in 2200 would otherwise set the as-of to 2200 and lock ``latest``
    there. Raises ``DataError`` listing every problem.

    ``checked``: the files a previous run (a warm start's run) already passed through these
    checks (SHA-256 digests) and the digest of those checks; when the checks are the same
    (``checks_digest``: same rules, same column types), a file with the same content is not
    checked row by row again (its rows are counted, from the ``ts`` column alone). A log
    appended in place has another digest and is checked whole; a log split into daily
    files is checked only in its new files.
    """
    import duckdb

    from rtml_cli.timeutil import utc_now

    scan = f"read_parquet({sql_files(files)}, union_by_name=true)"
    try:
        schema = {
            row[0]: str(row[1]) for row in con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()
        }
    except duckdb.Error as exc:
        raise DataError(f"events are unreadable: {str(exc).splitlines()[0]}") from None
    problems = [f"missing column {name!r}" for name in REQUIRED if name not in schema]
    if "ts" in schema and not schema["ts"].upper().startswith(_TIMESTAMP_TYPES):
        problems.append(f"column 'ts' must be a timestamp, found {schema['ts']}")
    if problems:
        raise DataError(
            "events violate the events contract (see `rtml data contracts`)", problems=problems
        )
    now = now or utc_now()
    # the content hashes (the run's idempotence key) are taken in a thread while DuckDB
    # scans the same files: hashlib and file reads release the GIL, so the two reads
    # overlap and share the page cache instead of reading the log twice in a row
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtml-fingerprint")
    cancel = threading.Event()
    hashing = pool.submit(lambda: [fingerprint(f, cancel) for f in files])
    try:
        return _open_events(con, files, as_of, schema, scan, now, hashing, checked)
    finally:
        cancel.set()  # a no-op once the hashes are in; else the thread stops at its next read
        pool.shutdown(wait=True, cancel_futures=True)


def _open_events(
    con: Any,
    files: list[Path],
    as_of: datetime | None,
    schema: dict[str, str],
    scan: str,
    now: datetime,
    hashing: Future[list[dict[str, Any]]],
    checked: CheckedFiles | None,
) -> EventSource:
    from rtml_cli.data.validate import event_row_checks, event_row_problems

    ts = _TS
    before = f"{ts} < {sql_ts(as_of)}" if as_of is not None else "TRUE"
    exprs = {
        "rows": "count(*)",
        "first": f"min({ts})",
        "last": f"max({ts})",
        "used": f"count(*) FILTER (WHERE {before})",
    }
    checks = event_row_checks(schema, now, ts_sql=ts)
    digest = checks_digest(schema)
    if checked is None or checked.checks != digest or not checked.files:
        # one pass: the counts and every row's checks
        found = _aggregate(con, scan, {**exprs, **checks})
        inputs, rows_checked = None, found["rows"]  # a bad log fails before the hash ends
    else:
        # the counts read the ts column alone, while the files are hashed; then only the
        # files the previous run did not check get the per-row checks
        found = _aggregate(con, scan, exprs)
        inputs = hashing.result()
        unchecked = [
            f for f, fp in zip(files, inputs, strict=True) if fp["sha256"] not in checked.files
        ]
        rows_checked = 0
        if unchecked:
            # the scan of every file, filtered to the unchecked ones by file name: the checks
            # see the log's own column types (a new file may lack an optional column or store
            # it as another type) and DuckDB reads only those files
            names = ", ".join(sql_str(str(f)) for f in unchecked)
            more = _aggregate(
                con,
                f"read_parquet({sql_files(files)}, union_by_name=true, filename={sql_str(_FILE)})"
                f" WHERE {_FILE} IN ({names})",
                {"checked_rows": "count(*)", **checks},
            )
            rows_checked = more.pop("checked_rows")
            found.update(more)
    rows, first, last, used = (found[k] for k in ("rows", "first", "last", "used"))
    if rows == 0:
        raise DataError(f"events contain no rows ({len(files)} file(s)): nothing to precompute")
    problems = event_row_problems(schema, found, now) if rows_checked else []
    if problems:
        raise DataError(
            f"events violate the events contract: {len(problems)} problem(s) found "
            "(`rtml data validate` checks a log)",
            problems=problems,
        )
    if inputs is None:
        inputs = hashing.result()
    first, last = _as_utc(first), _as_utc(last)
    if as_of is None:
        as_of = last + timedelta(microseconds=1)
    if as_of <= first:
        raise UsageError(
            f"--as-of {as_of.isoformat()} is not after the first event ({first.isoformat()}): "
            "no events to learn from; pick a later as-of"
        )
    view = f"""CREATE OR REPLACE TEMP VIEW ev AS
            SELECT CAST(ts AS TIMESTAMP) AS ts, user_id, session_id, item_id,
                   CAST(event AS VARCHAR) AS event
            FROM {scan} WHERE CAST(ts AS TIMESTAMP) < {sql_ts(as_of)}"""
    con.sql(view)
    return EventSource(
        view=view,
        files=files,
        inputs=inputs,
        as_of=as_of,
        first_ts=first,
        last_ts=last,
        rows_in_files=int(rows),
        rows_used=int(used),
        item_id_type=schema["item_id"],
        rows_checked=int(rows_checked),
        checks=digest,
    )


def _aggregate(con: Any, scan: str, exprs: dict[str, str]) -> dict[str, Any]:
    import duckdb

    try:
        row = con.sql(f"SELECT {', '.join(exprs.values())} FROM {scan}").fetchall()[0]
    except duckdb.Error as exc:
        raise DataError(f"events are unreadable: {str(exc).splitlines()[0]}") from exc
    return dict(zip(exprs, row, strict=True))


def open_items(con, files: list[Path]) -> list[str]:
    """Create the view ``catalogue`` (item key as text, category, title); returns its columns."""
    import duckdb

    scan = f"read_parquet({sql_files(files)}, union_by_name=true)"
    try:
        columns = [row[0] for row in con.sql(f"DESCRIBE SELECT * FROM {scan}").fetchall()]
    except duckdb.Error as exc:
        raise DataError(f"items are unreadable: {str(exc).splitlines()[0]}") from None
    if "item_id" not in columns:
        raise DataError(
            "items violate the items contract (see `rtml data contracts`)",
            problems=["missing column 'item_id'"],
        )
    category = "CAST(category AS VARCHAR)" if "category" in columns else "NULL::VARCHAR"
    title = "CAST(title AS VARCHAR)" if "title" in columns else "NULL::VARCHAR"
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE catalogue AS
            SELECT CAST(item_id AS VARCHAR) AS item_key,
                   any_value({category}) AS category, any_value({title}) AS title
            FROM {scan} GROUP BY 1"""
    )
    return columns
