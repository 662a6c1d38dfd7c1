"""Sessionization: cut each visitor's event stream into sessions at an inactivity gap.

A new session starts at a visitor's first event and whenever more than ``gap``
has passed since that visitor's previous event (a gap of exactly ``gap`` stays in
the session). Sessions are numbered per visitor in time order, so the session
id ``"{key}:{n}"`` is unique across visitors (the number after the last ``:``
never contains one) and stable across runs. Events with a null key cannot be
linked to anything: each one becomes a session of its own, ``"~{row}"``.

The rule is written once, as SQL over a DuckDB relation, so importers run it
out of core over files larger than memory; ``sessionize_frame`` applies the same
SQL to an in-memory Polars frame (tests, small data).
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import polars as pl

ROW_COLUMN = "__rtml_row"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def gap_micros(gap: timedelta) -> int:
    return round(gap.total_seconds() * 1_000_000)


def sessionize_sql(
    relation: str,
    *,
    key: str,
    ts: str,
    gap: timedelta,
    row: str = ROW_COLUMN,
    out: str = "session_id",
) -> str:
    """A SELECT over ``relation`` adding a ``out`` session-id column.

    ``relation`` is a table, view or parenthesised subquery with a visitor
    column ``key``, a timestamp column ``ts`` and a column ``row`` that breaks
    ties between events at the same instant (the source row number). All other
    columns pass through unchanged. The result is unordered, like any SQL.
    """
    k, t, r, o = _quote(key), _quote(ts), _quote(row), _quote(out)
    gap_us = gap_micros(gap)
    window = f"PARTITION BY {k} ORDER BY {t}, {r}"
    return f"""
SELECT * EXCLUDE (__rtml_new, __rtml_n),
    CASE WHEN {k} IS NULL THEN '~' || CAST({r} AS VARCHAR)
         ELSE CAST({k} AS VARCHAR) || ':' || CAST(__rtml_n AS VARCHAR) END AS {o}
FROM (
    SELECT *, SUM(__rtml_new) OVER ({window} ROWS UNBOUNDED PRECEDING) - 1 AS __rtml_n
    FROM (
        SELECT *,
            CASE WHEN lag({t}) OVER ({window}) IS NULL
                   OR epoch_us({t}) - epoch_us(lag({t}) OVER ({window})) > {gap_us}
                 THEN 1 ELSE 0 END AS __rtml_new
        FROM {relation}
    )
)"""


def sessionize_frame(
    frame: pl.DataFrame, *, key: str = "user_id", ts: str = "ts", gap: timedelta
) -> pl.DataFrame:
    """Add a ``session_id`` column to an in-memory frame; row order is kept.

    ``ts`` must be a Polars Datetime column. Same rule as ``sessionize_sql``,
    with the frame's row index as tie-breaker.
    """
    import polars as pl

    from rtml_cli.duck import connect

    if "session_id" in frame.columns:
        frame = frame.drop("session_id")
    indexed = frame.with_row_index(ROW_COLUMN)
    con = connect()
    try:
        con.register("frame_in", indexed)
        query = sessionize_sql("frame_in", key=key, ts=ts, gap=gap)
        result = con.sql(f"SELECT * FROM ({query}) ORDER BY {ROW_COLUMN}").pl()
    finally:
        con.close()
    result = result.drop(ROW_COLUMN)
    # DuckDB hands back its own time zone for tz-aware columns; restore the input dtype.
    return result.with_columns(pl.col(ts).cast(frame.schema[ts]))
