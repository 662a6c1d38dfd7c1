"""Check a contract-named source view and write it as an event log (sessionized if needed)."""

from __future__ import annotations

import functools
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from rtml_cli import contracts
from rtml_cli.data.importers.common import (
    _FUTURE_SLACK,
    _INT_ID,
    EVENT_COLUMNS,
    ImportResult,
    _duck_error,
    _is_numeric,
    _problem_example,
    _Source,
    lit,
    q,
    ts_expression,
    write_parquet_outputs,
)
from rtml_cli.data.sessionize import ROW_COLUMN, sessionize_sql
from rtml_cli.errors import DataError, UsageError


def _items_sql(con: Any, items: str, item_expr: str) -> str:
    """The source's items query, with the events' item id type so the two join."""
    if item_expr.startswith("CAST(item_id AS BIGINT)"):
        # Same id type as the events, so the two join: integer only if all ids are.
        all_int = con.execute(
            f"SELECT coalesce(bool_and(regexp_full_match(item_id, '{_INT_ID}')), false) "
            f"FROM ({items})"
        ).fetchone()[0]
        if all_int:
            items = f"SELECT * REPLACE (CAST(item_id AS BIGINT) AS item_id) FROM ({items})"
    return items


def parse_event_map(specs: list[str] | str | None) -> dict[str, str]:
    """``["add_to_cart=cart", "buy=purchase,pv=view"]`` → ``{"add_to_cart": "cart", …}``:
    source event value → contract event (one of ``contracts.KNOWN_EVENTS``)."""
    known = contracts.KNOWN_EVENTS
    out: dict[str, str] = {}
    for spec in [specs] if isinstance(specs, str) else specs or []:
        for part in spec.split(","):
            if not part.strip():
                continue
            value, sep, target = (x.strip() for x in part.partition("="))
            if not sep or not value or not target:
                raise UsageError(
                    f"invalid --map-event entry {part!r}: use SOURCE_VALUE=EVENT, e.g. "
                    "add_to_cart=cart"
                )
            if target not in known:
                raise UsageError(
                    f"invalid --map-event target {target!r}: map to one of {', '.join(known)}"
                )
            if out.get(value, target) != target:
                raise UsageError(f"--map-event maps {value!r} twice ({out[value]}, {target})")
            out[value] = target
    return out


def _event_values(
    con: Any,
    src: _Source,
    *,
    source: str,
    event: str,
    event_map: dict[str, str],
    ignore: set[str],
) -> tuple[dict[str, int], dict[str, int]]:
    """(rows per mapped source value, rows per ignored value); ``DataError`` listing every
    value outside the contract that is neither mapped nor ignored (a cart must never be
    dropped without a word)."""
    known = contracts.KNOWN_EVENTS
    if "event" not in src.columns:
        value = event_map.get(event, event)
        if value not in known:
            raise UsageError(
                f"--event {event!r} is not one of {', '.join(known)}: map it with "
                f"--map-event {event}=view"
            )
        return ({event: -1} if event in event_map else {}), {}
    try:
        mix = con.execute(
            "SELECT CAST(event AS VARCHAR), count(*) FROM src GROUP BY 1 ORDER BY 2 DESC, 1"
        ).fetchall()
    except duckdb.Error as exc:
        raise _duck_error(source, exc) from exc
    counts = {value: int(n) for value, n in mix}
    unknown = {
        v: n
        for v, n in counts.items()
        if v is not None and v not in known and v not in event_map and v not in ignore
    }
    if unknown:
        listed = ", ".join(f"{v} ({n:,} rows)" for v, n in list(unknown.items())[:10])
        first = next(iter(unknown))
        raise DataError(
            f"{source}: event values outside the contract ({', '.join(known)}): {listed}; "
            f"map them, e.g. --map-event {first}=cart, or drop them with --ignore-events {first}"
        )
    if None in counts:
        raise DataError(f"{source}: {counts[None]:,} rows have no event value")
    mapped = {v: counts[v] for v in event_map if v in counts}
    ignored = {v: counts[v] for v in sorted(ignore) if v in counts}
    return mapped, ignored


def _import_events(
    con: Any,
    src: _Source,
    *,
    fmt: str,
    source: str,
    out: Path,
    ts_unit: str | None,
    session_gap: timedelta,
    event: str,
    items_out: Path | None,
    event_map: dict[str, str] | None = None,
    ignore_events: list[str] | None = None,
) -> ImportResult:
    """Check the view ``src`` (every problem at once), then write it as an event log."""
    started = time.perf_counter()
    cols = src.columns
    unit = ts_unit or src.ts_unit
    ts = ts_expression("ts", src.ts_dtype, unit)
    has_session = "session_id" in cols
    event_map = dict(event_map or {})
    ignore = set(ignore_events or [])
    mapped, ignored = _event_values(
        con, src, source=source, event=event, event_map=event_map, ignore=ignore
    )
    if ignored:
        values = ", ".join(lit(v) for v in sorted(ignored))
        con.execute("ALTER VIEW src RENAME TO src_all")
        con.execute(
            "CREATE VIEW src AS SELECT * FROM src_all "
            f"WHERE CAST(event AS VARCHAR) NOT IN ({values})"
        )
    s, warnings = _check_events(con, src, source=source, ts=ts, unit=unit)
    if ignored:
        warnings.append(
            "dropped "
            + ", ".join(f"{n:,} rows with event {v}" for v, n in ignored.items())
            + " (--ignore-events)"
        )

    item_expr = "item_id"
    item_text = not _is_numeric(cols["item_id"])
    if item_text and s.get("item_int"):
        item_expr = "CAST(item_id AS BIGINT)"  # integer ids stay integers, as in the source
    elif item_text:
        item_expr = "CAST(item_id AS VARCHAR)"
    query = _events_query(
        src, ts=ts, item_expr=item_expr, event=event, session_gap=session_gap, event_map=event_map
    )

    written = write_parquet_outputs(
        con,
        query,
        out,
        source=source,
        summary="count(*), count(DISTINCT session_id), count(DISTINCT user_id), "
        "count(DISTINCT item_id)",
        items=(
            functools.partial(_items_sql, con, src.items_sql, item_expr)
            if src.items_sql is not None
            else None
        ),
        items_out=items_out,
    )
    summary = written.summary
    return ImportResult(
        format=fmt,
        source=source,
        out=str(out),
        kind="events",
        rows=summary[0],
        columns=written.columns,
        ts_min=s["ts_min"],
        ts_max=s["ts_max"],
        seconds=round(time.perf_counter() - started, 3),
        sessions=summary[1],
        users=summary[2],
        items=summary[3],
        sessionized=not has_session,
        session_gap=None if has_session else session_gap,
        items_out=str(items_out) if written.items_rows is not None else None,
        items_rows=written.items_rows,
        warnings=warnings,
        events_mapped={v: {"to": event_map[v], "rows": n} for v, n in mapped.items()},
        events_ignored=ignored,
    )


def _check_events(
    con: Any, src: _Source, *, source: str, ts: str, unit: str | None
) -> tuple[dict[str, Any], list[str]]:
    """One aggregation pass over the view: its statistics and warnings, or every problem."""
    item_text = not _is_numeric(src.columns["item_id"])
    has_session = "session_id" in src.columns
    checks = [
        "count(*) AS rows",
        "count(*) FILTER (ts IS NULL) AS null_ts",
        f"count(*) FILTER (ts IS NOT NULL AND ({ts}) IS NULL) AS bad_ts",
        f"any_value(ts) FILTER (ts IS NOT NULL AND ({ts}) IS NULL) AS bad_ts_example",
        f"min({ts}) AS ts_min",
        f"max({ts}) AS ts_max",
        f"CAST(max({ts}) AS VARCHAR) AS ts_max_text",
        f"count(*) FILTER (({ts}) > now() + INTERVAL {_FUTURE_SLACK.days} DAY) AS future",
        "count(*) FILTER (item_id IS NULL OR trim(CAST(item_id AS VARCHAR)) = '') AS null_items",
    ]
    if item_text:
        checks.append(
            f"coalesce(bool_and(regexp_full_match(item_id, '{_INT_ID}')), false) AS item_int"
        )
    if has_session:
        checks.append(
            "count(*) FILTER (session_id IS NULL OR trim(CAST(session_id AS VARCHAR)) = '') "
            "AS null_sessions"
        )
    try:
        stats = con.execute(f"SELECT {', '.join(checks)} FROM src").fetchone()
    except duckdb.Error as exc:
        raise _duck_error(source, exc) from exc
    names = [c.split(" AS ")[-1] for c in checks]
    s = dict(zip(names, stats, strict=True))
    if s["rows"] == 0:
        raise DataError(f"{source} has no rows: nothing to import")
    problems = []
    if s["null_ts"]:
        problems.append(f"{s['null_ts']:,} rows have no timestamp")
    if s["bad_ts"]:
        hint = unit or ("epoch seconds or ISO 8601" if not _is_numeric(src.ts_dtype) else "s")
        problems.append(
            f"{s['bad_ts']:,} timestamps cannot be parsed as {hint} "
            f"(e.g. {_problem_example(s['bad_ts_example'])}); set --ts-unit s|ms|us|iso"
        )
    if s["null_items"]:
        problems.append(f"{s['null_items']:,} rows have a null or empty item id")
    if has_session and s["null_sessions"]:
        problems.append(f"{s['null_sessions']:,} rows have a null or empty session id")
    if s["future"]:
        problems.append(
            f"{s['future']:,} timestamps lie in the future (up to {s['ts_max_text'].split(' ')[0]}): is --ts-unit "
            f"{unit or 's'} right? (s, ms and us epochs differ by 1000x)"
        )
    if problems:
        raise DataError(f"cannot import {source}: {len(problems)} problem(s)", problems=problems)
    warnings = []
    if s["ts_min"] is not None and s["ts_min"] < datetime(1990, 1, 1, tzinfo=timezone.utc):
        warnings.append(
            f"timestamps start at {s['ts_min']:%Y-%m-%d}: check --ts-unit "
            f"(now {unit or 's'}) if that is not expected"
        )
    return s, warnings


def _events_query(
    src: _Source,
    *,
    ts: str,
    item_expr: str,
    event: str,
    session_gap: timedelta,
    event_map: dict[str, str] | None = None,
) -> str:
    """The SELECT writing the events contract in time order (sessionized when it has none);
    ``event_map`` turns source event values into contract events."""
    cols = src.columns
    has_session = "session_id" in cols
    extras = [c for c in cols if c not in EVENT_COLUMNS]
    user_expr = "CAST(user_id AS VARCHAR)" if "user_id" in cols else "CAST(NULL AS VARCHAR)"
    event_map = event_map or {}
    if "event" in cols:
        event_expr = "CAST(event AS VARCHAR)"
        if event_map:
            whens = " ".join(f"WHEN {lit(v)} THEN {lit(t)}" for v, t in event_map.items())
            event_expr = f"CASE {event_expr} {whens} ELSE {event_expr} END"
    else:
        event_expr = lit(event_map.get(event, event))
    base = [f"{ts} AS ts", f"{user_expr} AS user_id", f"{item_expr} AS item_id"]
    base.append(f"{event_expr} AS event")
    if has_session:
        base.append("CAST(session_id AS VARCHAR) AS session_id")
    base += [q(c) for c in extras] + [ROW_COLUMN]
    relation = f"(SELECT {', '.join(base)} FROM src)"
    if not has_session:
        relation = f"({sessionize_sql(relation, key='user_id', ts='ts', gap=session_gap)})"
    final = ["ts", "user_id", "session_id", "item_id", "event"] + [q(c) for c in extras]
    return f"SELECT {', '.join(final)} FROM {relation} ORDER BY ts, {ROW_COLUMN}"
