"""Session tables for the session-based strategies of the literature (V-SKNN, sequential rules).

Built in DuckDB over the point-in-time view ``ev`` (``batch.source``) and written straight
into the run directory as Parquet (the aggregation never leaves DuckDB, which spills past
its memory cap):

- ``session_items.parquet`` — ``session_idx``, ``session_id``, ``last_ts``, ``item_id``: the
  distinct items of every training session V-SKNN may take as a neighbour (``session_idx``
  0 is the most recent session: ordered by last event, then session id);
- ``item_sessions.parquet`` — ``item_id``, ``session_idx``, ``rank``, ``idf``: per item its
  ``session_sample`` most recent sessions (rank 1 = most recent), and the item's
  ``idf = max(ln(training sessions / item events), 0)``;
- ``sequential_rules.parquet`` — ``item_id``, ``next_id``, ``score``, ``rank``: sequential
  rules a → b, counted over training sessions for every b up to ``rule_steps`` events after
  a, weighted ``1 / distance``, pruned to the ``rule_top`` best per item;
- ``state/sequential_rule_counts.parquet`` — every rule's count before pruning (integers:
  weights scaled by ``lcm(1..rule_steps)`` so sums are exact in any order), what a warm start
  adds the new pairs to.

Memory is bounded by what is kept: V-SKNN keeps only the sessions that are among the
``session_sample`` most recent of at least one of their items. That cap loses nothing:
the most recent N sessions of a union of item sets lie in the union of each item's most
recent N, so serving with ``sample_size <= session_sample`` finds the same neighbours as
with every session.

A warm start reads the new events and, for the sessions they touch, those sessions' earlier
events (a session may straddle the previous as-of): the new pairs of touched sessions are
added to the saved rule counts, and the touched sessions replace their old rows among the
previous run's kept sessions before the per-item top N is taken again. Both give exactly
the tables of a full run (tested): a session the previous run dropped was older than N
others of each of its items, which all stay candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rtml_cli.batch.artifacts import SESSION_FILES
from rtml_cli.batch.source import sql_ts
from rtml_cli.duck import sql_str

__all__ = ["SESSION_FILES", "SessionParams", "PreviousSessions", "build_session_tables"]

RULE_COUNTS = "sequential_rule_counts.parquet"  # under state/
DEFAULT_SESSION_SAMPLE = 2500
DEFAULT_RULE_STEPS = 10
DEFAULT_RULE_TOP = 20
MAX_RULE_STEPS = 20  # lcm(1..20) = 232,792,560 keeps integer rule counts far from overflow


def rule_scale(steps: int) -> int:
    """The integer every rule weight ``1 / distance`` is scaled by: ``lcm(1..steps)``."""
    return math.lcm(*range(1, steps + 1))


@dataclass(frozen=True)
class SessionParams:
    """What the session tables are built with (recorded in the manifest's ``params``)."""

    session_sample: int = DEFAULT_SESSION_SAMPLE
    rule_steps: int = DEFAULT_RULE_STEPS
    rule_top: int = DEFAULT_RULE_TOP

    def as_params(self) -> dict[str, int]:
        return {
            "session_sample": self.session_sample,
            "rule_steps": self.rule_steps,
            "rule_top": self.rule_top,
        }

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> SessionParams | None:
        """The parameters a run was built with; None for runs written without session tables."""
        try:
            return cls(
                int(params["session_sample"]), int(params["rule_steps"]), int(params["rule_top"])
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class PreviousSessions:
    """A warm start's starting point: the previous run's directory and training session count."""

    run_dir: Path
    n_sessions: int


@dataclass(frozen=True)
class SessionTablesResult:
    """Row counts of what was written, and the training sessions (for the next warm start)."""

    n_sessions: int
    session_rows: int
    kept_sessions: int
    item_session_rows: int
    rule_pairs: int
    rule_rows: int
    events_read: int

    def rows(self) -> dict[str, int]:
        return {
            "training_sessions": self.n_sessions,
            "session_items": self.session_rows,
            "kept_sessions": self.kept_sessions,
            "item_sessions": self.item_session_rows,
            "rule_pairs": self.rule_pairs,
            "sequential_rules": self.rule_rows,
            "events_read_for_sessions": self.events_read,
        }


def _count(con: Any, sql: str) -> int:
    return int(con.sql(sql).fetchall()[0][0])


def _copy(con: Any, query: str, path: Path) -> None:
    con.sql(f"COPY ({query}) TO {sql_str(str(path))} (FORMAT PARQUET)")


def item_tables(con: Any, index: Any, item_events: Any) -> None:
    """The run's items as DuckDB temp tables ``_sidx`` (item_idx, item_id) and ``_item_events``
    (item_id, events_total) that the session statements join: joins against a registered
    frame cost about twice as much."""
    for name, frame in (
        ("_sidx", index.select("item_idx", "item_id")),
        ("_item_events", item_events.select("item_id", "events_total")),
    ):
        con.register(f"{name}_frame", frame)
        con.sql(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")


def build_session_tables(
    con: Any,
    index: Any,
    item_events: Any,
    out_dir: Path,
    *,
    since: datetime | None,
    previous: PreviousSessions | None,
    params: SessionParams,
) -> SessionTablesResult:
    """Write the session tables (and the rule-count state) of one run into ``out_dir``.

    ``con`` holds the view ``ev`` (events before the as-of); ``index`` is the run's
    ``item_idx → item_id`` frame; ``item_events`` a frame of ``item_id, events_total``
    (every event before the as-of, for the idf). With ``previous`` (a warm start from a run
    that has session tables built with the same ``params``) only the sessions with events
    since ``since`` are read; without it every event is.
    """
    item_tables(con, index, item_events)
    try:
        warm = previous is not None and since is not None
        events_read = _session_events(con, since if warm else None)
        n_sessions = _training_sessions(con, since, previous if warm else None)
        kept, session_rows, item_rows = _vsknn_tables(
            con, out_dir, n_sessions, params.session_sample, previous if warm else None
        )
        pairs, rules = _rule_tables(con, out_dir, since, previous if warm else None, params)
    finally:
        for table in ("_sidx", "_item_events", "_touched", "_sev", "_cand", "_top", "_kept"):
            con.sql(f"DROP TABLE IF EXISTS {table}")
        con.sql("DROP TABLE IF EXISTS _counts")
    return SessionTablesResult(
        n_sessions=n_sessions,
        session_rows=session_rows,
        kept_sessions=kept,
        item_session_rows=item_rows,
        rule_pairs=pairs,
        rule_rows=rules,
        events_read=events_read,
    )


def _session_events(con: Any, since: datetime | None) -> int:
    """Table ``_sev``: the events of the sessions to (re)build, with their position in the
    session (ordered by time, then item id: stable between full and warm runs) and a 64-bit
    hash of the session id ``s`` (joins on it are ~1.5x faster than on the text)."""
    scope = ""
    if since is not None:
        con.sql(
            "CREATE OR REPLACE TEMP TABLE _touched AS "
            f"SELECT DISTINCT session_id FROM ev WHERE ts >= {sql_ts(since)}"
        )
        scope = "JOIN _touched t ON e.session_id = t.session_id"
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _sev AS
            SELECT hash(e.session_id) AS s, CAST(e.session_id AS VARCHAR) AS session_id,
                   e.ts, e.item_id, i.item_idx, CAST(row_number() OVER (
                       PARTITION BY e.session_id ORDER BY e.ts, e.item_id) AS INTEGER) AS pos
            FROM ev e {scope} JOIN _sidx i ON e.item_id = i.item_id"""
    )
    return _count(con, "SELECT count(*) FROM _sev")


def _training_sessions(con: Any, since: datetime | None, previous: PreviousSessions | None) -> int:
    """Sessions before the as-of: all of them, or the previous count plus the new sessions."""
    if previous is None or since is None:
        return _count(con, "SELECT count(DISTINCT session_id) FROM _sev")
    new = _count(
        con,
        "SELECT count(*) FROM (SELECT session_id FROM _sev GROUP BY session_id "
        f"HAVING min(ts) >= {sql_ts(since)})",
    )
    return previous.n_sessions + new


def _vsknn_tables(
    con: Any, out_dir: Path, n_sessions: int, sample: int, previous: PreviousSessions | None
) -> tuple[int, int, int]:
    """``session_items.parquet`` and ``item_sessions.parquet``; returns their row counts."""
    carried = ""
    if previous is not None:
        # the previous run's kept sessions the new events do not touch, as they were
        old = sql_str(str(previous.run_dir / "session_items.parquet"))
        carried = f"""UNION ALL
            SELECT p.session_id, CAST(p.last_ts AS TIMESTAMP) AS last_ts, i.item_idx, p.item_id
            FROM read_parquet({old}) p JOIN _sidx i ON p.item_id = i.item_id
            WHERE p.session_id NOT IN (SELECT DISTINCT session_id FROM _sev)"""
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _cand AS
            SELECT session_id, max(last_ts) AS last_ts, item_idx, any_value(item_id) AS item_id
            FROM (SELECT session_id, max(ts) OVER (PARTITION BY s) AS last_ts,
                         item_idx, item_id FROM _sev
                  {carried})
            GROUP BY session_id, item_idx"""
    )
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _top AS
            SELECT * FROM (
                SELECT item_idx, item_id, session_id, last_ts, CAST(row_number() OVER (
                    PARTITION BY item_idx ORDER BY last_ts DESC, session_id) AS INTEGER) AS rank
                FROM _cand)
            WHERE rank <= {int(sample)}"""
    )
    con.sql(
        """CREATE OR REPLACE TEMP TABLE _kept AS
           SELECT session_id, last_ts, CAST(row_number() OVER (
               ORDER BY last_ts DESC, session_id) - 1 AS INTEGER) AS session_idx
           FROM (SELECT DISTINCT session_id, last_ts FROM _top)"""
    )
    _copy(
        con,
        """SELECT k.session_idx, k.session_id, CAST(k.last_ts AS TIMESTAMPTZ) AS last_ts,
                  c.item_id
           FROM _cand c JOIN _kept k ON c.session_id = k.session_id
           ORDER BY k.session_idx, c.item_id""",
        out_dir / "session_items.parquet",
    )
    _copy(
        con,
        f"""SELECT t.item_id, k.session_idx, t.rank,
                   CAST(greatest(ln({int(n_sessions)} / greatest(n.events_total, 1)), 0)
                        AS FLOAT) AS idf
            FROM _top t JOIN _kept k ON t.session_id = k.session_id
                 LEFT JOIN _item_events n ON t.item_id = n.item_id
            ORDER BY t.item_id, t.rank""",
        out_dir / "item_sessions.parquet",
    )
    kept = _count(con, "SELECT count(*) FROM _kept")
    session_rows = _count(
        con, "SELECT count(*) FROM _cand c JOIN _kept k ON c.session_id = k.session_id"
    )
    return kept, session_rows, _count(con, "SELECT count(*) FROM _top")


def _rule_tables(
    con: Any,
    out_dir: Path,
    since: datetime | None,
    previous: PreviousSessions | None,
    params: SessionParams,
) -> tuple[int, int]:
    """``sequential_rules.parquet`` and ``state/sequential_rule_counts.parquet``; their rows."""
    steps, scale = int(params.rule_steps), rule_scale(params.rule_steps)
    # a warm start counts only the pairs whose later event is new; the others are in the state
    new_only = f"WHERE b.ts >= {sql_ts(since)}" if previous is not None and since else ""
    # counted by item_idx (integers hash faster than any item id), named by item id after
    fresh = f"""SELECT a.item_idx AS src, b.item_idx AS dst,
                       sum({scale} // (b.pos - a.pos)) AS weight
                FROM _sev a JOIN _sev b ON a.s = b.s
                     AND b.pos > a.pos AND b.pos <= a.pos + {steps}
                {new_only}
                GROUP BY a.item_idx, b.item_idx"""
    if previous is not None and new_only:
        old = sql_str(str(previous.run_dir / "state" / RULE_COUNTS))
        fresh = f"""SELECT src, dst, sum(weight) AS weight FROM (
                        {fresh} UNION ALL
                        SELECT a.item_idx, b.item_idx, c.weight FROM read_parquet({old}) c
                        JOIN _sidx a ON c.item_id = a.item_id JOIN _sidx b ON c.next_id = b.item_id)
                    GROUP BY src, dst"""
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _counts AS
            SELECT a.item_id AS item_id, b.item_id AS next_id, CAST(c.weight AS BIGINT) AS weight
            FROM ({fresh}) c JOIN _sidx a ON c.src = a.item_idx JOIN _sidx b ON c.dst = b.item_idx"""
    )
    state = out_dir / "state"
    state.mkdir(exist_ok=True)
    _copy(con, "SELECT * FROM _counts ORDER BY item_id, next_id", state / RULE_COUNTS)
    _copy(
        con,
        f"""SELECT item_id, next_id, CAST(weight / {scale} AS FLOAT) AS score, rank FROM (
                SELECT item_id, next_id, weight, CAST(row_number() OVER (
                    PARTITION BY item_id ORDER BY weight DESC, next_id) AS INTEGER) AS rank
                FROM _counts)
            WHERE rank <= {int(params.rule_top)}
            ORDER BY item_id, rank""",
        out_dir / "sequential_rules.parquet",
    )
    pairs = _count(con, "SELECT count(*) FROM _counts")
    rules = _count(
        con,
        f"SELECT coalesce(sum(least(n, {int(params.rule_top)})), 0) FROM "
        "(SELECT count(*) AS n FROM _counts GROUP BY item_id)",
    )
    return pairs, rules
