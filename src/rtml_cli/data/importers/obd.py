"""``--format obd``: Open Bandit Dataset CSV → the bandit-log contract."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import duckdb

from rtml_cli.data.importers.common import (
    ImportResult,
    _columns,
    _csv_relation,
    _duck_error,
    _problem_example,
    lit,
    q,
    ts_expression,
    write_parquet_outputs,
)
from rtml_cli.data.sessionize import ROW_COLUMN
from rtml_cli.errors import DataError

OBD_COLUMNS = ("timestamp", "item_id", "position", "click", "propensity_score")


def obd_policy_name(path: Path) -> str:
    """The logging policy an OBD file came from: ``bts`` for ``…/bts/men/men.csv.gz``."""
    stem = path.name
    for suffix in (".gz", ".csv"):
        stem = stem.removesuffix(suffix)
    if path.parent.name == stem and path.parent.parent.name not in ("", "."):
        return path.parent.parent.name
    return stem


def _import_obd(
    con: Any,
    path: Path,
    *,
    source: str,
    out: Path,
    policy: str | None,
    items_out: Path | None,
) -> ImportResult:
    """Check an OBD log (every problem at once) and write it as a bandit log."""
    started = time.perf_counter()
    try:
        header = _columns(con, f"SELECT * FROM {_csv_relation(path)}")
    except duckdb.Error as exc:
        raise _duck_error(source, exc) from exc
    missing = [c for c in OBD_COLUMNS if c not in header]
    if missing:
        raise DataError(
            f"{source} is not an Open Bandit Dataset log: missing column(s) "
            f"{', '.join(missing)} (has {', '.join(list(header)[:8])}…)"
        )
    relation = _csv_relation(path, types={"timestamp": "VARCHAR"})
    index_cols = [c for c in header if re.fullmatch(r"column0*|Unnamed: 0|", c)]
    context = [c for c in header if c not in OBD_COLUMNS and c not in index_cols]
    policy = policy or obd_policy_name(path)
    ts = ts_expression("timestamp", "VARCHAR", "iso")
    con.execute(
        f"CREATE OR REPLACE VIEW obd AS SELECT *, row_number() OVER () AS {ROW_COLUMN} FROM {relation}"
    )
    s = _check_obd(con, ts, source)

    select = [
        f"{ts} AS ts",
        "CAST(item_id AS BIGINT) AS action",
        "CAST(position AS INTEGER) AS position",
        "CAST(click AS DOUBLE) AS reward",
        "CAST(propensity_score AS DOUBLE) AS propensity",
        f"{lit(policy)} AS policy",
    ] + [q(c) for c in context]
    query = f"SELECT {', '.join(select)} FROM obd ORDER BY ts, {ROW_COLUMN}"
    item_file = path.parent / "item_context.csv"

    def items_sql() -> str:
        item_cols = _columns(con, f"SELECT * FROM {_csv_relation(item_file)}")
        keep = [q(c) for c in item_cols if c != "item_id" and not re.fullmatch(r"column0*", c)]
        return (
            f"SELECT CAST(item_id AS BIGINT) AS item_id, {', '.join(keep)} "
            f"FROM {_csv_relation(item_file)} ORDER BY item_id"
        )

    written = write_parquet_outputs(
        con,
        query,
        out,
        source=source,
        summary="count(*), count(DISTINCT action), avg(reward), min(propensity), max(propensity)",
        items=items_sql if item_file.exists() else None,
        items_out=items_out,
    )
    summary = written.summary
    return ImportResult(
        format="obd",
        source=source,
        out=str(out),
        kind="bandit",
        rows=summary[0],
        columns=written.columns,
        ts_min=s["ts_min"],
        ts_max=s["ts_max"],
        seconds=round(time.perf_counter() - started, 3),
        policy=policy,
        actions=summary[1],
        reward_mean=summary[2],
        propensity_min=summary[3],
        propensity_max=summary[4],
        items_out=str(items_out) if written.items_rows is not None else None,
        items_rows=written.items_rows,
    )


def _check_obd(con: Any, ts: str, source: str) -> dict[str, Any]:
    """One aggregation pass over the ``obd`` view: its statistics, or every problem."""
    checks = {
        "rows": "count(*)",
        "bad_ts": f"count(*) FILTER (({ts}) IS NULL)",
        "bad_ts_example": f"any_value(timestamp) FILTER (({ts}) IS NULL)",
        "bad_action": "count(*) FILTER (TRY_CAST(item_id AS BIGINT) IS NULL)",
        "bad_position": "count(*) FILTER (position IS NOT NULL AND TRY_CAST(position AS INTEGER) IS NULL)",
        "bad_reward": "count(*) FILTER (TRY_CAST(click AS DOUBLE) IS NULL OR isnan(TRY_CAST(click AS DOUBLE)))",
        "bad_propensity": (
            "count(*) FILTER (TRY_CAST(propensity_score AS DOUBLE) IS NULL "
            "OR NOT (TRY_CAST(propensity_score AS DOUBLE) > 0 AND TRY_CAST(propensity_score AS DOUBLE) <= 1))"
        ),
        "ts_min": f"min({ts})",
        "ts_max": f"max({ts})",
    }
    try:
        row = con.execute(f"SELECT {', '.join(checks.values())} FROM obd").fetchone()
    except duckdb.Error as exc:
        raise _duck_error(source, exc) from exc
    s = dict(zip(checks, row, strict=True))
    if s["rows"] == 0:
        raise DataError(f"{source} has no rows: nothing to import")
    problems = []
    if s["bad_ts"]:
        problems.append(
            f"{s['bad_ts']:,} timestamps cannot be parsed (e.g. {_problem_example(s['bad_ts_example'])})"
        )
    if s["bad_action"]:
        problems.append(f"{s['bad_action']:,} rows have a missing or non-integer item_id")
    if s["bad_position"]:
        problems.append(f"{s['bad_position']:,} rows have a non-integer position")
    if s["bad_reward"]:
        problems.append(f"{s['bad_reward']:,} rows have a missing or non-numeric click")
    if s["bad_propensity"]:
        problems.append(
            f"{s['bad_propensity']:,} rows have a propensity_score missing or outside (0, 1]"
        )
    if problems:
        raise DataError(f"cannot import {source}: {len(problems)} problem(s)", problems=problems)
    return s
