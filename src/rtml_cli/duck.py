"""The one way rtml opens DuckDB: UTC, a memory cap, a spill directory rtml owns, no progress bar.

Every module calls :func:`connect` so that none can forget a setting: a connection
that missed ``SET TimeZone = 'UTC'`` moves an as-of by the host's UTC offset.
"""

from __future__ import annotations

import os
from pathlib import Path

from rtml_cli.errors import MEMORY_LIMIT_ENV, UsageError


def sql_str(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def share_of_ram(fraction: float = 1 / 8, floor_gb: float = 1.0) -> str:
    """``fraction`` of the machine's physical memory, at least ``floor_gb`` (e.g. ``3GB`` on
    a 24 GB machine): the default cap of the jobs whose data grows with the log."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: the floor
        total = 0
    gb = max(floor_gb, total * fraction / 2**30)
    return f"{gb:.1f}GB"


def connect(spill: Path | None = None, *, memory_limit: str | None = None):
    """A DuckDB connection in UTC that spills to ``spill`` under a memory cap.

    The cap is ``RTML_MEMORY_LIMIT`` (e.g. ``2GB``) when set, else ``memory_limit``
    (else DuckDB's default); sorts, joins and aggregations beyond it spill to disk.
    Source order is kept, so row numbers (tie-breakers between equal timestamps) are stable.
    """
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")  # rtml owns stderr
    con.execute("SET preserve_insertion_order = true")
    if spill is not None:
        con.execute(f"SET temp_directory = {sql_str(str(spill))}")
    limit = os.environ.get(MEMORY_LIMIT_ENV, "").strip() or memory_limit
    if limit:
        try:
            con.execute(f"SET memory_limit = {sql_str(limit)}")
        except duckdb.Error:
            con.close()
            raise UsageError(
                f"invalid {MEMORY_LIMIT_ENV} {limit!r}: use a size such as 512MB or 4GB"
            ) from None
    return con
