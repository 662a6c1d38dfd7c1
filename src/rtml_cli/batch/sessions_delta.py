"""The session tables of a delta run (``precompute --warm-start``, issue #10): only what changed
since the chain's base run, overlaid on the base's tables by readers.

A delta run's V-SKNN tables and sequential rules (``batch.sessions``) differ from its base's
only where the days since the base reach: the sessions with events since then, the items
those sessions hold, and the rules whose source item has new pairs. The delta writes those
and references the base's four files (``session_items``, ``item_sessions``,
``sequential_rules``, ``state/sequential_rule_counts``) by run id and sha256:

- ``delta/session_items.parquet`` — the kept sessions with events since the base, numbered
  ``0..T-1`` (they are the most recent: every other session ended before the base's as-of);
- ``delta/session_removed.parquet`` — ``session_idx`` of the base's sessions that are gone
  (replaced by a row above, or no longer among any item's recent sessions); the base's
  other sessions keep their order and are numbered ``T, T+1, …``;
- ``delta/item_sessions.parquet`` — the recent sessions of every item of those sessions,
  numbered as above; the base's rows of every other item are unchanged but for the numbering
  and the idf;
- ``delta/item_idf.parquet`` — every item's idf (the training sessions count moves daily);
- ``delta/state/sequential_rule_counts.parquet`` — the rule counts added since the base (the
  counts are integers and never decay: base + added is exactly a full run's);
- ``delta/sequential_rules.parquet`` — the rules of every source item with added counts.

:func:`rtml_cli.batch.artifacts.overlay_session_tables` is the reader's side: base + delta is exactly the
self-contained run's tables (tested). Writing a delta reads the base's tables only where
the new day reaches them (the items it touches, a row-group-pruned scan for sessions that
straddle the base's as-of) and costs ~what the new day holds, not the 8.7M + 6.9M + 10M rows
a self-contained run rewrites on the large world.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rtml_cli.batch import sessions as full
from rtml_cli.batch.artifacts import DELTA_SESSION_FILES, has_session_delta
from rtml_cli.batch.sessions import (
    RULE_COUNTS,
    PreviousSessions,
    SessionParams,
    SessionTablesResult,
    rule_scale,
)
from rtml_cli.batch.source import sql_ts
from rtml_cli.duck import sql_str

__all__ = [
    "DELTA_SESSION_FILES",
    "ChainBase",
    "PreviousDelta",
    "build_session_delta",
    "has_session_delta",
]

RULE_FILE = f"state/{RULE_COUNTS}"


@dataclass(frozen=True)
class ChainBase:
    """The self-contained run a delta overlays: its session files and row counts."""

    session_items: Path
    item_sessions: Path
    rules: Path
    rule_counts: Path
    as_of: datetime
    rows: dict[str, Any]

    @property
    def n_sessions(self) -> int:
        """Kept sessions of the base (its ``session_idx`` run ``0..n-1``)."""
        return int(self.rows["kept_sessions"])


@dataclass(frozen=True)
class PreviousDelta:
    """The run a delta continues from when it is itself a delta of the same base."""

    run_dir: Path  # its delta/ files

    def file(self, name: str) -> str:
        return sql_str(str(self.run_dir / name))


def _count(con: Any, sql: str) -> int:
    return int(con.sql(sql).fetchall()[0][0] or 0)


def _copy(con: Any, query: str, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    con.sql(f"COPY ({query}) TO {sql_str(str(path))} (FORMAT PARQUET)")


_TEMP = (
    "_sidx", "_item_events", "_touched", "_sev", "_s2", "_s2items", "_i2", "_wsess",
    "_wsurv", "_strad", "_plist", "_lists", "_kept0", "_surv", "_fresh", "_added",
    "_rcand",
)  # fmt: skip


def build_session_delta(
    con: Any,
    index: Any,
    item_events: Any,
    out_dir: Path,
    *,
    since: datetime,
    n_sessions: int,
    base: ChainBase,
    previous: PreviousDelta | None,
    params: SessionParams,
) -> SessionTablesResult:
    """Write a delta run's session files into ``out_dir/delta/`` (see the module doc).

    ``con`` holds the view ``ev`` (events before the as-of); ``index`` and ``item_events`` as
    for ``sessions.build_session_tables``; ``n_sessions``: the training sessions of the run
    continued from (``since`` is its as-of); ``previous``: that run when it is a delta of
    ``base`` (None: it is ``base``). Returns the row counts a reader of the overlay sees."""
    for name, frame in (
        ("_sidx", index.select("item_idx", "item_id")),
        ("_item_events", item_events.select("item_id", "events_total")),
    ):
        con.register(f"{name}_frame", frame)
        con.sql(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_frame")
        con.unregister(f"{name}_frame")
    delta = out_dir / "delta"
    try:
        events_read = full._session_events(con, since)
        total = full._training_sessions(con, since, PreviousSessions(out_dir, n_sessions))
        vsknn = _vsknn_delta(con, delta, total, params.session_sample, base, previous, since)
        rules = _rules_delta(con, delta, base, previous, params, since)
    finally:
        for table in _TEMP:
            con.sql(f"DROP TABLE IF EXISTS {table}")
    kept, session_rows, item_rows = vsknn
    pairs, rule_rows = rules
    return SessionTablesResult(
        n_sessions=total,
        session_rows=session_rows,
        kept_sessions=kept,
        item_session_rows=item_rows,
        rule_pairs=pairs,
        rule_rows=rule_rows,
        events_read=events_read,
    )


def _vsknn_delta(
    con: Any,
    delta: Path,
    n_sessions: int,
    sample: int,
    base: ChainBase,
    previous: PreviousDelta | None,
    since: datetime,
) -> tuple[int, int, int]:
    """The delta's V-SKNN files; the overlay's kept sessions, session and item rows.

    Sessions are named by tier: 0 — a session with events since the base (``session_id``,
    ``last_ts``), 1 — a base session no event since the base touched (its base ``bidx``).
    Tier 0 sorts first (newer), by last event then id; tier 1 keeps the base's order."""
    b_si, b_is = sql_str(str(base.session_items)), sql_str(str(base.item_sessions))
    # today's sessions (tier 0) and their items
    con.sql(
        """CREATE OR REPLACE TEMP TABLE _s2 AS
           SELECT session_id, max(ts) AS last_ts, min(ts) AS first_ts FROM _sev
           GROUP BY session_id"""
    )
    con.sql(
        """CREATE OR REPLACE TEMP TABLE _s2items AS
           SELECT DISTINCT e.session_id, s.last_ts, e.item_idx, e.item_id
           FROM _sev e JOIN _s2 s ON e.session_id = s.session_id"""
    )
    con.sql("CREATE OR REPLACE TEMP TABLE _i2 AS SELECT DISTINCT item_idx FROM _s2items")
    # the run continued from: its tier-0 sessions (W numbering 0..T1-1) and the W numbering
    # of the base sessions it kept (T1 + rank among the survivors)
    if previous is not None:
        con.sql(
            f"""CREATE OR REPLACE TEMP TABLE _wsess AS
                SELECT DISTINCT session_idx AS widx, session_id,
                       CAST(last_ts AS TIMESTAMP) AS last_ts
                FROM read_parquet({previous.file("session_items.parquet")})"""
        )
        t1 = _count(con, "SELECT coalesce(max(widx) + 1, 0) FROM _wsess")
        con.sql(
            f"""CREATE OR REPLACE TEMP TABLE _wsurv AS
                SELECT bidx, CAST({t1} + row_number() OVER (ORDER BY bidx) - 1 AS BIGINT) AS widx
                FROM (SELECT range AS bidx FROM range({base.n_sessions})
                      WHERE range NOT IN (SELECT session_idx FROM
                          read_parquet({previous.file("session_removed.parquet")})))"""
        )
        w_is = previous.file("item_sessions.parquet")
        # W's lists of the items it holds, by tier
        w_lists = f"""
            SELECT i.item_idx, w.rank AS prank,
                   CASE WHEN w.session_idx < {t1} THEN 0 ELSE 1 END AS tier,
                   s.session_id, s.last_ts, v.bidx
            FROM read_parquet({w_is}) w JOIN _sidx i ON w.item_id = i.item_id
                 LEFT JOIN _wsess s ON w.session_idx = s.widx
                 LEFT JOIN _wsurv v ON w.session_idx = v.widx"""
        w_items = f"SELECT DISTINCT i.item_idx FROM read_parquet({w_is}) w JOIN _sidx i USING (item_id)"
    else:
        w_lists = (
            "SELECT NULL::BIGINT AS item_idx, NULL::INTEGER AS prank, NULL::INTEGER AS tier, "
            "NULL::VARCHAR AS session_id, NULL::TIMESTAMP AS last_ts, NULL::BIGINT AS bidx "
            "WHERE false"
        )
        w_items = "SELECT NULL::BIGINT AS item_idx WHERE false"
    # base sessions that today's sessions replace: only sessions with an event before the
    # base's as-of can be there, and their base last event is no earlier than that event
    strad_from = con.sql(
        f"SELECT min(first_ts) FROM _s2 WHERE first_ts < {sql_ts(base.as_of)}"
    ).fetchall()[0][0]
    if strad_from is not None:
        con.sql(
            f"""CREATE OR REPLACE TEMP TABLE _strad AS
                SELECT DISTINCT session_idx AS bidx FROM read_parquet({b_si})
                WHERE CAST(last_ts AS TIMESTAMP) >= {sql_ts(strad_from)}
                  AND session_id IN (SELECT session_id FROM _s2)"""
        )
    else:
        con.sql("CREATE OR REPLACE TEMP TABLE _strad AS SELECT NULL::INTEGER AS bidx WHERE false")
    # the previous lists (W's for the items W holds, the base's for the others) of the items
    # of the sessions W holds and of today's
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _plist AS
            WITH wi AS ({w_items})
            SELECT * FROM ({w_lists}) w
            UNION ALL
            SELECT i.item_idx, b.rank AS prank, 1 AS tier, NULL::VARCHAR AS session_id,
                   NULL::TIMESTAMP AS last_ts, CAST(b.session_idx AS BIGINT) AS bidx
            FROM read_parquet({b_is}) b JOIN _sidx i ON b.item_id = i.item_id
            WHERE i.item_idx IN (SELECT item_idx FROM _i2)
              AND i.item_idx NOT IN (SELECT item_idx FROM wi)"""
    )
    # today's items: today's sessions first, then the previous list without them; the other
    # items the delta holds keep W's list
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _lists AS
            SELECT item_idx, tier, session_id, last_ts, bidx, CAST(row_number() OVER (
                PARTITION BY item_idx ORDER BY tier, last_ts DESC, session_id, bidx) AS INTEGER)
                AS rank
            FROM (SELECT item_idx, 0 AS tier, session_id, last_ts, NULL::BIGINT AS bidx
                  FROM _s2items
                  UNION ALL
                  SELECT item_idx, tier, session_id, last_ts, bidx FROM _plist
                  WHERE item_idx IN (SELECT item_idx FROM _i2)
                    AND (tier = 1 OR session_id NOT IN (SELECT session_id FROM _s2))
                    AND (tier = 0 OR bidx NOT IN (SELECT bidx FROM _strad)))
            QUALIFY rank <= {int(sample)}
            UNION ALL
            SELECT item_idx, tier, session_id, last_ts, bidx, prank AS rank FROM _plist
            WHERE item_idx NOT IN (SELECT item_idx FROM _i2)"""
    )
    # the overlay's numbering: kept tier-0 sessions 0..T-1, then the surviving base sessions
    con.sql(
        """CREATE OR REPLACE TEMP TABLE _kept0 AS
           SELECT session_id, last_ts, CAST(row_number() OVER (
               ORDER BY last_ts DESC, session_id) - 1 AS INTEGER) AS session_idx
           FROM (SELECT DISTINCT session_id, last_ts FROM _lists WHERE tier = 0)"""
    )
    t = _count(con, "SELECT count(*) FROM _kept0")
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _surv AS
            SELECT bidx, CAST({t} + row_number() OVER (ORDER BY bidx) - 1 AS INTEGER)
                   AS session_idx
            FROM (SELECT DISTINCT bidx FROM (
                      SELECT bidx FROM _lists WHERE tier = 1
                      UNION ALL
                      SELECT CAST(b.session_idx AS BIGINT) FROM read_parquet({b_is}) b
                      WHERE b.item_id NOT IN (SELECT i.item_id FROM _sidx i
                                              JOIN _lists l ON i.item_idx = l.item_idx)))"""
    )
    # the sessions' items: today's from the events, the earlier kept ones from W's delta
    earlier = ""
    if previous is not None:
        earlier = f"""UNION ALL
            SELECT k.session_idx, k.session_id, k.last_ts, w.item_id
            FROM read_parquet({previous.file("session_items.parquet")}) w
                 JOIN _kept0 k ON w.session_id = k.session_id
            WHERE w.session_id NOT IN (SELECT session_id FROM _s2)"""
    _copy(
        con,
        f"""SELECT session_idx, session_id, CAST(last_ts AS TIMESTAMPTZ) AS last_ts, item_id
            FROM (SELECT k.session_idx, k.session_id, k.last_ts, s.item_id
                  FROM _s2items s JOIN _kept0 k ON s.session_id = k.session_id
                  {earlier})
            ORDER BY session_idx, item_id""",
        delta / "session_items.parquet",
    )
    _copy(
        con,
        f"""SELECT CAST(range AS INTEGER) AS session_idx FROM range({base.n_sessions})
            WHERE range NOT IN (SELECT bidx FROM _surv) ORDER BY session_idx""",
        delta / "session_removed.parquet",
    )
    idf = f"CAST(greatest(ln({int(n_sessions)} / greatest(n.events_total, 1)), 0) AS FLOAT)"
    _copy(
        con,
        f"""SELECT i.item_id, coalesce(k.session_idx, v.session_idx) AS session_idx, l.rank,
                   {idf} AS idf
            FROM _lists l JOIN _sidx i ON l.item_idx = i.item_idx
                 LEFT JOIN _kept0 k ON l.tier = 0 AND l.session_id = k.session_id
                 LEFT JOIN _surv v ON l.tier = 1 AND l.bidx = v.bidx
                 LEFT JOIN _item_events n ON i.item_id = n.item_id
            ORDER BY i.item_id, l.rank""",
        delta / "item_sessions.parquet",
    )
    _copy(
        con,
        f"""SELECT i.item_id, {idf} AS idf
            FROM _sidx i LEFT JOIN _item_events n ON i.item_id = n.item_id
            ORDER BY i.item_id""",
        delta / "item_idf.parquet",
    )
    # what a reader of the overlay sees
    survivors = _count(con, "SELECT count(*) FROM _surv")
    base_si_rows = _count(
        con,
        f"""SELECT count(*) FROM read_parquet({b_si})
            WHERE session_idx IN (SELECT bidx FROM _surv)""",
    )
    delta_si_rows = _count(
        con, f"SELECT count(*) FROM read_parquet({sql_str(str(delta / 'session_items.parquet'))})"
    )
    list_rows = _count(con, "SELECT count(*) FROM _lists")
    base_is_rows = _count(
        con,
        f"""SELECT count(*) FROM read_parquet({b_is}) b
            WHERE b.item_id NOT IN (SELECT i.item_id FROM _sidx i
                                    JOIN (SELECT DISTINCT item_idx FROM _lists) l
                                    ON i.item_idx = l.item_idx)""",
    )
    return t + survivors, delta_si_rows + base_si_rows, list_rows + base_is_rows


def _rules_delta(
    con: Any,
    delta: Path,
    base: ChainBase,
    previous: PreviousDelta | None,
    params: SessionParams,
    since: datetime,
) -> tuple[int, int]:
    """The rule counts added since the base and the rules of their source items; the
    overlay's rule pairs and rules.

    Counts only grow, so an item's new top ``rule_top`` lies among its base top ``rule_top``
    and the pairs with added counts: any other pair's count is the base's, at most the base's
    ``rule_top``-th, and loses to each of those (ties to the lower next_id, as before)."""
    steps, scale, top = int(params.rule_steps), rule_scale(params.rule_steps), int(params.rule_top)
    b_counts, b_rules = sql_str(str(base.rule_counts)), sql_str(str(base.rules))
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _fresh AS
            SELECT a.item_idx AS src, b.item_idx AS dst, sum({scale} // (b.pos - a.pos)) AS weight
            FROM _sev a JOIN _sev b ON a.s = b.s
                 AND b.pos > a.pos AND b.pos <= a.pos + {steps}
            WHERE b.ts >= {sql_ts(since)}
            GROUP BY a.item_idx, b.item_idx"""
    )
    earlier = ""
    if previous is not None:
        earlier = f"""UNION ALL
            SELECT a.item_idx, b.item_idx, c.weight
            FROM read_parquet({previous.file(RULE_FILE)}) c
                 JOIN _sidx a ON c.item_id = a.item_id JOIN _sidx b ON c.next_id = b.item_id"""
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _added AS
            SELECT a.item_id, b.item_id AS next_id, CAST(c.weight AS BIGINT) AS weight
            FROM (SELECT src, dst, sum(weight) AS weight FROM (
                      SELECT src, dst, weight FROM _fresh {earlier})
                  GROUP BY src, dst) c
                 JOIN _sidx a ON c.src = a.item_idx JOIN _sidx b ON c.dst = b.item_idx"""
    )
    _copy(con, "SELECT * FROM _added ORDER BY item_id, next_id", delta / RULE_FILE)
    # candidates: the base's rules of the touched items and the added pairs, at base + added
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _rcand AS
            SELECT p.item_id, p.next_id, coalesce(c.weight, 0) + coalesce(a.weight, 0) AS weight,
                   c.weight IS NULL AS new_pair
            FROM (SELECT item_id, next_id FROM _added
                  UNION
                  SELECT item_id, next_id FROM read_parquet({b_rules})
                  WHERE item_id IN (SELECT DISTINCT item_id FROM _added)) p
                 LEFT JOIN read_parquet({b_counts}) c
                      ON p.item_id = c.item_id AND p.next_id = c.next_id
                 LEFT JOIN _added a ON p.item_id = a.item_id AND p.next_id = a.next_id"""
    )
    _copy(
        con,
        f"""SELECT item_id, next_id, CAST(weight / {scale} AS FLOAT) AS score, rank FROM (
                SELECT item_id, next_id, weight, CAST(row_number() OVER (
                    PARTITION BY item_id ORDER BY weight DESC, next_id) AS INTEGER) AS rank
                FROM _rcand)
            WHERE rank <= {top}
            ORDER BY item_id, rank""",
        delta / "sequential_rules.parquet",
    )
    new_pairs = _count(con, "SELECT count(*) FROM _rcand WHERE new_pair")
    delta_rules = _count(
        con, f"SELECT count(*) FROM read_parquet({sql_str(str(delta / 'sequential_rules.parquet'))})"
    )
    base_rules_touched = _count(
        con,
        f"""SELECT count(*) FROM read_parquet({b_rules})
            WHERE item_id IN (SELECT DISTINCT item_id FROM _added)""",
    )
    pairs = int(base.rows["rule_pairs"]) + new_pairs
    return pairs, int(base.rows["sequential_rules"]) - base_rules_touched + delta_rules

