"""Check a Parquet file (or glob, or directory of partitions) against an rtml contract.

Every check is an SQL aggregation that DuckDB runs over the files — never a
Python loop over rows — so validating a large log costs a few column scans.
``validate`` returns a ``ValidationReport`` with a summary and the list of
every problem found; ``validate_events`` / ``validate_items`` /
``validate_bandit`` raise ``DataError`` listing them, for commands that want
to check their inputs before they start.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from rtml_cli import contracts
from rtml_cli.data.importers.common import DUCKDB_INTEGER_TYPES, lit, q
from rtml_cli.data.sessionize import gap_micros
from rtml_cli.duck import connect
from rtml_cli.errors import DataError, UsageError
from rtml_cli.fsutil import parquet_files, scratch_dir
from rtml_cli.timeutil import CLOCK_SKEW, format_duration, future_limit, utc_now

KINDS = ("events", "items", "bandit")
DEFAULT_GAP = timedelta(minutes=30)
_CONTRACTS = {"events": contracts.EVENTS, "items": contracts.ITEMS, "bandit": contracts.BANDIT}
_INTEGER = DUCKDB_INTEGER_TYPES
_FLOAT = {"FLOAT", "DOUBLE"}
_EXAMPLE_LEN = 60


@dataclass
class ValidationReport:
    """The outcome of validating one input: a summary and every problem found."""

    path: str
    kind: str
    kind_detected: bool  # True when the kind was inferred from the columns
    files: int
    rows: int
    columns: dict[str, str]
    summary: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def raise_for_problems(self) -> ValidationReport:
        """Raise ``DataError`` listing every problem; return ``self`` when there is none."""
        if self.problems:
            raise DataError(
                f"{self.path} is not a valid {self.kind} "
                f"{'catalogue' if self.kind == 'items' else 'log'}: "
                f"{len(self.problems)} problem(s) found",
                problems=self.problems,
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        # "kind" names the JSON document (rtml_cli.output.document): the contract is
        # "contract" there
        names = {"kind": "contract", "kind_detected": "contract_detected"}
        return {"valid": self.ok, **{names.get(k, k): v for k, v in asdict(self).items()}}


def _type_ok(kind: str, dtype: str, column: str) -> bool:
    if kind == "timestamp":
        return dtype.startswith("TIMESTAMP")
    if kind == "string":
        return dtype == "VARCHAR"
    if kind == "id":
        return dtype == "VARCHAR" or dtype in _INTEGER
    if kind == "integer":
        return dtype in _INTEGER
    if kind == "numeric":
        numeric = dtype in _INTEGER or dtype in _FLOAT or dtype.startswith("DECIMAL")
        # A 0/1 outcome stored as a boolean is a fine reward.
        return numeric or (column == "reward" and dtype == "BOOLEAN")
    if kind == "bool":
        return dtype == "BOOLEAN"
    return True


_KIND_WORDS = {
    "timestamp": "a timestamp",
    "string": "a string",
    "id": "a string or integer",
    "integer": "an integer",
    "numeric": "numeric",
    "bool": "a boolean",
}


def detect_kind(columns: list[str] | dict[str, str]) -> str | None:
    """events, items or bandit from the column names; None when they say nothing."""
    names = set(columns)
    if names & {"action", "propensity"}:
        return "bandit"
    if names & {"ts", "session_id", "event"}:
        return "events"
    if "item_id" in names:
        return "items"
    return None


def _example(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _EXAMPLE_LEN else text[: _EXAMPLE_LEN - 3] + "..."


class _Checker:
    """Runs aggregations over the view ``t`` and collects problems and summary figures."""

    def __init__(self, con, columns: dict[str, str]) -> None:
        self.con = con
        self.columns = columns
        self.problems: list[str] = []

    def one(self, sql: str) -> tuple:
        return self.con.execute(sql).fetchone()

    def values(self, exprs: dict[str, str]) -> dict[str, Any]:
        if not exprs:
            return {}
        row = self.one(f"SELECT {', '.join(exprs.values())} FROM t")
        return dict(zip(exprs, row, strict=True))

    def has(self, name: str) -> bool:
        return name in self.columns

    def text(self, name: str) -> bool:
        return self.columns.get(name) == "VARCHAR"

    def timestamp(self, name: str) -> bool:
        return self.columns.get(name, "").startswith("TIMESTAMP")

    def ts_expr(self, name: str) -> str | None:
        """The column as TIMESTAMPTZ, when it is a timestamp or a parseable string."""
        if self.timestamp(name):
            return f"CAST({q(name)} AS TIMESTAMPTZ)"
        if self.text(name):
            return f"TRY_CAST({q(name)} AS TIMESTAMPTZ)"
        return None


def _check_schema(ck: _Checker, kind: str) -> None:
    contract = _CONTRACTS[kind]
    for col in contract.required:
        if not ck.has(col.name):
            ck.problems.append(
                f"missing column {col.name!r} ({_KIND_WORDS[col.kind]}: {col.doc or col.name})"
            )
    for col in (*contract.required, *contract.optional):
        dtype = ck.columns.get(col.name)
        if dtype is not None and not _type_ok(col.kind, dtype, col.name):
            hint = ""
            if col.kind == "timestamp" and dtype in _INTEGER | _FLOAT:
                hint = "; epoch numbers: convert with rtml data import --format parquet --ts-unit s|ms|us"
            elif col.kind == "timestamp" and dtype == "VARCHAR":
                hint = "; convert with rtml data import --format parquet --ts-unit iso"
            ck.problems.append(
                f"column {col.name!r} is {dtype}, expected {_KIND_WORDS[col.kind]}{hint}"
            )


def _null_checks(ck: _Checker, names: list[str]) -> dict[str, str]:
    exprs = {}
    for name in names:
        if not ck.has(name):
            continue
        cond = f"{q(name)} IS NULL"
        if ck.text(name):
            cond += f" OR trim({q(name)}) = ''"
        elif ck.columns[name] in _FLOAT:
            cond += f" OR isnan({q(name)}) OR isinf({q(name)})"
        exprs[f"null:{name}"] = f"count(*) FILTER ({cond})"
    return exprs


def _report_nulls(ck: _Checker, found: dict[str, Any]) -> None:
    for key, count in found.items():
        if key.startswith("null:") and count:
            name = key[5:]
            what = "null or empty" if ck.text(name) else "null"
            if ck.columns.get(name) in _FLOAT:
                what = "null, NaN or infinite"
            ck.problems.append(f"{count:,} rows have a {what} {name}")


def _ts_checks(ck: _Checker, now: datetime, ts_sql: str | None = None) -> dict[str, str]:
    """Unparseable and future timestamps; ``ts_sql``: the caller's naive-UTC TIMESTAMP of ts."""
    exprs: dict[str, str] = {}
    if not ck.has("ts"):
        return exprs
    ts = ck.ts_expr("ts")
    limit = future_limit(now)
    limit_sql = f"{lit(limit.isoformat())}::TIMESTAMPTZ"
    if ck.text("ts"):
        bad = f"ts IS NOT NULL AND {ts} IS NULL"
        exprs["bad_ts"] = f"count(*) FILTER ({bad})"
        exprs["bad_ts_example"] = f"any_value(ts) FILTER ({bad})"
    if ts_sql is not None:
        naive = limit.astimezone(timezone.utc).replace(tzinfo=None)
        ts, limit_sql = ts_sql, f"TIMESTAMP {lit(naive.isoformat(sep=' '))}"
    if ts is not None:
        exprs["future_ts"] = f"count(*) FILTER ({ts} > {limit_sql})"
        exprs["ts_max"] = f"max({ts})"
        exprs["ts_min"] = f"min({ts})"
    return exprs


def _report_ts(ck: _Checker, found: dict[str, Any], now: datetime) -> None:
    if found.get("bad_ts"):
        ck.problems.append(
            f"{found['bad_ts']:,} values of ts cannot be parsed as timestamps "
            f"(e.g. {_example(found['bad_ts_example'])})"
        )
    if found.get("future_ts"):
        ck.problems.append(
            f"{found['future_ts']:,} timestamps lie in the future (more than "
            f"{format_duration(CLOCK_SKEW)} after now, {now:%Y-%m-%d %H:%M:%S}Z; latest "
            f"{found['ts_max']}): wrong epoch unit or time zone?"
        )


def _user_checks(ck: _Checker) -> dict[str, str]:
    if ck.text("user_id"):
        return {"empty_users": "count(*) FILTER (trim(user_id) = '')"}
    if ck.columns.get("user_id") in _FLOAT:
        return {"nan_users": "count(*) FILTER (isnan(user_id) OR isinf(user_id))"}
    return {}


def _report_users(ck: _Checker, found: dict[str, Any]) -> None:
    for key, what in (("empty_users", "an empty"), ("nan_users", "a NaN or infinite")):
        if found.get(key):
            ck.problems.append(
                f"{found[key]:,} rows have {what} user_id: use null for anonymous visitors"
            )


def _event_value_checks(ck: _Checker) -> dict[str, str]:
    if not ck.has("event"):
        return {}
    # null and empty events are reported as such (_null_checks)
    outside = (
        "event IS NOT NULL AND trim(CAST(event AS VARCHAR)) <> '' AND CAST(event AS VARCHAR) "
        f"NOT IN ({', '.join(repr(e) for e in contracts.KNOWN_EVENTS)})"
    )
    return {
        "unknown_events": f"count(*) FILTER ({outside})",
        "unknown_event_values": (
            f"string_agg(DISTINCT CAST(event AS VARCHAR), ', ' ORDER BY CAST(event AS VARCHAR)) "
            f"FILTER ({outside})"
        ),
    }


def _report_event_values(ck: _Checker, found: dict[str, Any]) -> None:
    # a cart logged as add_to_cart would otherwise count as nothing in every funnel figure
    if found.get("unknown_events"):
        values = str(found["unknown_event_values"])
        first = values.split(", ")[0]
        ck.problems.append(
            f"{found['unknown_events']:,} rows have event values outside the contract "
            f"({', '.join(contracts.KNOWN_EVENTS)}): {values}; import the log with "
            f"rtml data import --map-event {first}=cart (or --ignore-events {first})"
        )


def event_row_checks(
    columns: dict[str, str], now: datetime, *, ts_sql: str | None = None
) -> dict[str, str]:
    """The per-row checks of an event log as named SQL aggregates, for one pass over any relation.

    Null, empty, NaN or infinite ts / session_id / item_id / event, an empty or NaN
    user_id, timestamps later than ``future_limit(now)``, event values outside the
    contract. ``columns`` maps name ->
    DuckDB type; ``ts_sql`` is the caller's ts as a naive-UTC TIMESTAMP (default: ts
    as TIMESTAMPTZ, for a connection in UTC). Turn the values into problems with
    :func:`event_row_problems`; ``rtml precompute`` adds them to its own scan.
    """
    ck = _Checker(None, columns)
    exprs = _null_checks(ck, ["ts", "session_id", "item_id", "event"])
    exprs.update(_ts_checks(ck, now, ts_sql))
    exprs.update(_user_checks(ck))
    exprs.update(_event_value_checks(ck))
    return exprs


def event_row_problems(columns: dict[str, str], found: dict[str, Any], now: datetime) -> list[str]:
    """The problems (as `rtml data validate` words them) in the values of :func:`event_row_checks`."""
    ck = _Checker(None, columns)
    _report_nulls(ck, found)
    _report_ts(ck, found, now)
    _report_users(ck, found)
    _report_event_values(ck, found)
    return ck.problems


def _duplicates(ck: _Checker) -> None:
    keys = ", ".join(q(c) for c in ck.columns)
    dup = ck.one(
        f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM t GROUP BY {keys})"
    )[0]
    if dup:
        ck.problems.append(f"{int(dup):,} rows are exact duplicates of another row")


def _events(ck: _Checker, now: datetime, gap: timedelta | None) -> dict[str, Any]:
    exprs = {"rows": "count(*)"}
    exprs.update(event_row_checks(ck.columns, now))
    if ck.has("user_id"):
        exprs["users"] = "count(DISTINCT user_id)"
        exprs["anonymous_events"] = "count(*) FILTER (user_id IS NULL)"
    if ck.has("item_id"):
        exprs["items"] = "count(DISTINCT item_id)"
    found = ck.values(exprs)
    ck.problems.extend(event_row_problems(ck.columns, found, now))
    _duplicates(ck)
    rows = found["rows"]
    summary: dict[str, Any] = {"rows": rows}
    if "users" in found:
        summary["users"] = found["users"]
        summary["anonymous_event_share"] = found["anonymous_events"] / rows if rows else None
    ts = ck.ts_expr("ts")
    if ck.has("session_id"):
        # One window (gaps between consecutive events) and one GROUP BY session for everything.
        has_user = ck.has("user_id")
        gap_expr = (
            f"epoch_us({ts}) - epoch_us(lag({ts}) OVER (PARTITION BY session_id ORDER BY {ts}))"
            if ts
            else "NULL::BIGINT"
        )
        limit = gap_micros(gap) if gap is not None else None
        over = f"g > {limit}" if limit is not None else "false"
        sess = ck.one(
            "SELECT count(*), avg(n), median(n), quantile_cont(n, 0.95), count(*) FILTER (anon), "
            "count(*) FILTER (users > 1), any_value(session_id) FILTER (users > 1), median(span), "
            f"count(*) FILTER ({over}), max(g) FILTER ({over}), arg_max(session_id, g) FILTER ({over}) "
            "FROM (SELECT session_id, count(*) AS n, "
            f"{'bool_and(user_id IS NULL)' if has_user else 'NULL'} AS anon, "
            f"{'count(DISTINCT user_id)' if has_user else '0'} AS users, "
            f"{f'epoch_us(max({ts})) - epoch_us(min({ts}))' if ts else 'NULL'} AS span, "
            "max(d) AS g "
            f"FROM (SELECT session_id{', user_id' if has_user else ''}"
            f"{', ' + q('ts') if ck.has('ts') else ''}, {gap_expr} AS d "
            "FROM t WHERE session_id IS NOT NULL) GROUP BY session_id)"
        )
        n_sessions = sess[0]
        summary["sessions"] = n_sessions
        if has_user:
            summary["anonymous_session_share"] = sess[4] / n_sessions if n_sessions else None
        summary["events_per_session"] = {"mean": sess[1], "median": sess[2], "p95": sess[3]}
        summary["median_session_seconds"] = sess[7] / 1e6 if sess[7] is not None else None
        if sess[5]:
            ck.problems.append(
                f"{sess[5]:,} sessions hold events of more than one user "
                f"(e.g. session {_example(sess[6])})"
            )
        if sess[8] and gap is not None:  # without a gap the count is 0 (FILTER (false))
            ck.problems.append(
                f"{sess[8]:,} sessions have consecutive events more than "
                f"{_fmt_gap(gap)} apart (longest gap {_fmt_gap(timedelta(microseconds=sess[9]))}, "
                f"in session {_example(sess[10])}); re-cut them or raise --session-gap"
            )
    if "items" in found:
        summary["items"] = found["items"]
    if found.get("ts_min") is not None:
        summary["time_range"] = [found["ts_min"], found["ts_max"]]
    if ck.has("event"):
        mix = ck.con.execute(
            "SELECT CAST(event AS VARCHAR), count(*) FROM t GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 20"
        ).fetchall()
        summary["event_mix"] = {str(name): n for name, n in mix}
    return summary


def _bandit(ck: _Checker, now: datetime) -> dict[str, Any]:
    found = ck.values(_bandit_exprs(ck, now))
    _report_nulls(ck, found)
    _report_ts(ck, found, now)
    _report_bandit(ck, found)
    _duplicates(ck)
    return _bandit_summary(ck, found)


def _bandit_exprs(ck: _Checker, now: datetime) -> dict[str, str]:
    """The aggregations one scan of a bandit log computes (checks and summary)."""
    exprs = {"rows": "count(*)"}
    exprs.update(_null_checks(ck, ["ts", "action"]))
    exprs.update(_ts_checks(ck, now))
    if ck.has("action"):
        exprs["actions"] = "count(DISTINCT action)"
    reward_ok = ck.has("reward") and _type_ok("numeric", ck.columns["reward"], "reward")
    if reward_ok:
        r = "CAST(reward AS DOUBLE)"
        exprs["bad_reward"] = f"count(*) FILTER ({r} IS NULL OR isnan({r}) OR isinf({r}))"
        exprs["reward_mean"] = f"avg({r}) FILTER (NOT isnan({r}))"
    elif ck.has("reward") and ck.text("reward"):
        exprs["text_reward"] = "count(*) FILTER (TRY_CAST(reward AS DOUBLE) IS NULL)"
        exprs["text_reward_example"] = (
            "any_value(reward) FILTER (TRY_CAST(reward AS DOUBLE) IS NULL)"
        )
    prop_ok = ck.has("propensity") and _type_ok("numeric", ck.columns["propensity"], "propensity")
    if prop_ok:
        p = "CAST(propensity AS DOUBLE)"
        exprs["null_propensity"] = f"count(*) FILTER ({p} IS NULL OR isnan({p}))"
        exprs["bad_propensity"] = f"count(*) FILTER (NOT ({p} > 0 AND {p} <= 1))"
        exprs["bad_propensity_example"] = f"any_value({p}) FILTER (NOT ({p} > 0 AND {p} <= 1))"
        exprs["propensity_min"] = f"min({p}) FILTER (NOT isnan({p}))"
        exprs["propensity_max"] = f"max({p}) FILTER (NOT isnan({p}))"
    if ck.has("position") and ck.columns["position"] in _INTEGER:
        exprs["bad_position"] = "count(*) FILTER (position < 1)"
    return exprs


def _report_bandit(ck: _Checker, found: dict[str, Any]) -> None:
    """The bandit contract's own problems: rewards, propensities, positions."""
    if found.get("bad_reward"):
        ck.problems.append(f"{found['bad_reward']:,} rewards are null, NaN or infinite")
    if found.get("text_reward"):
        ck.problems.append(
            f"{found['text_reward']:,} rewards are not numbers "
            f"(e.g. {_example(found['text_reward_example'])})"
        )
    if found.get("null_propensity"):
        ck.problems.append(f"{found['null_propensity']:,} propensities are missing (null or NaN)")
    if found.get("bad_propensity"):
        ck.problems.append(
            f"{found['bad_propensity']:,} propensities lie outside (0, 1] "
            f"(e.g. {_example(found['bad_propensity_example'])})"
        )
    if found.get("bad_position"):
        ck.problems.append(
            f"{found['bad_position']:,} positions are below 1 (positions are 1-based)"
        )


def _bandit_summary(ck: _Checker, found: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"rows": found["rows"]}
    for key in ("actions", "reward_mean", "propensity_min", "propensity_max"):
        if key in found:
            summary[key] = found[key]
    if ck.has("position"):
        summary["positions"] = [
            r[0]
            for r in ck.con.execute(
                "SELECT DISTINCT position FROM t WHERE position IS NOT NULL ORDER BY 1 LIMIT 50"
            ).fetchall()
        ]
    if ck.has("policy"):
        summary["policies"] = {
            str(name): n
            for name, n in ck.con.execute(
                "SELECT CAST(policy AS VARCHAR), count(*) FROM t GROUP BY 1 ORDER BY 2 DESC LIMIT 20"
            ).fetchall()
        }
    if found.get("ts_min") is not None:
        summary["time_range"] = [found["ts_min"], found["ts_max"]]
    known = {c.name for c in (*contracts.BANDIT.required, *contracts.BANDIT.optional)}
    summary["context_columns"] = len([c for c in ck.columns if c not in known])
    return summary


def _items(ck: _Checker) -> dict[str, Any]:
    exprs = {"rows": "count(*)"}
    exprs.update(_null_checks(ck, ["item_id"]))
    if ck.has("item_id"):
        exprs["items"] = "count(DISTINCT item_id)"
    if ck.has("category"):
        exprs["categories"] = "count(DISTINCT category)"
    price_ok = ck.has("price") and _type_ok("numeric", ck.columns["price"], "price")
    if price_ok:
        p = "CAST(price AS DOUBLE)"
        exprs["bad_price"] = f"count(*) FILTER ({p} < 0 OR isnan({p}) OR isinf({p}))"
        exprs["price_min"] = f"min({p})"
        exprs["price_max"] = f"max({p})"
    if ck.has("title"):
        exprs["titles"] = (
            "count(*) FILTER (title IS NOT NULL AND trim(CAST(title AS VARCHAR)) <> '')"
        )
    found = ck.values(exprs)
    _report_nulls(ck, found)
    if "items" in found:
        dup = ck.one(
            "SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM t "
            "WHERE item_id IS NOT NULL GROUP BY item_id)"
        )[0]
        if dup:
            ck.problems.append(f"{int(dup):,} rows repeat an item_id already in the catalogue")
    if found.get("bad_price"):
        ck.problems.append(f"{found['bad_price']:,} prices are negative, NaN or infinite")
    if "items" not in found:
        _duplicates(ck)
    summary: dict[str, Any] = {"rows": found["rows"]}
    for key in ("items", "categories", "price_min", "price_max"):
        if key in found:
            summary[key] = found[key]
    summary["titles_present"] = found.get("titles", 0)
    return summary


def _fmt_gap(delta: timedelta) -> str:
    return format_duration(delta)


def validate(
    path: str | Path,
    *,
    kind: str | None = None,
    session_gap: timedelta | None = DEFAULT_GAP,
    now: datetime | None = None,
) -> ValidationReport:
    """Check ``path`` against the ``kind`` contract (detected from the columns when None).

    ``session_gap`` bounds the silence allowed between consecutive events of
    one session (None: do not check); timestamps more than ``timeutil.CLOCK_SKEW``
    after ``now`` (default: the current time) lie in the future. Raises ``InputMissing`` when the
    path matches nothing, ``DataError`` when a file is empty or not Parquet.
    """
    if kind is not None and kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}: use one of {', '.join(KINDS)}")
    if session_gap is not None and session_gap <= timedelta(0):
        raise UsageError("--session-gap must be positive, e.g. 30m")
    now = now or utc_now()
    files = parquet_files(path, what="input")
    with scratch_dir("validate") as spill:
        return _validate(path, files, kind, session_gap, now, spill)


def _validate(
    path: str | Path,
    files: list[Path],
    kind: str | None,
    session_gap: timedelta | None,
    now: datetime,
    spill: Path,
) -> ValidationReport:
    con = connect(spill)
    try:
        file_list = ", ".join(lit(str(f)) for f in files)
        try:
            con.execute(
                f"CREATE VIEW t AS SELECT * FROM read_parquet([{file_list}], union_by_name = true)"
            )
            columns = {r[0]: r[1] for r in con.execute("DESCRIBE t").fetchall()}
        except duckdb.Error as exc:
            raise DataError(f"cannot read {path} as Parquet: {_first_line(exc)}") from exc
        detected = kind is None
        if kind is None:
            kind = detect_kind(columns)
            if kind is None:
                raise DataError(
                    f"cannot tell whether {path} is an events, items or bandit file from its "
                    f"columns ({', '.join(columns)}); pass --kind",
                )
        ck = _Checker(con, columns)
        _check_schema(ck, kind)
        try:
            if kind == "events":
                summary = _events(ck, now, session_gap)
            elif kind == "bandit":
                summary = _bandit(ck, now)
            else:
                summary = _items(ck)
        except duckdb.Error as exc:
            raise DataError(f"cannot read {path}: {_first_line(exc)}") from exc
        if summary["rows"] == 0:
            ck.problems.insert(0, "the file has no rows")
        return ValidationReport(
            path=str(path),
            kind=kind,
            kind_detected=detected,
            files=len(files),
            rows=summary["rows"],
            columns=columns,
            summary=summary,
            problems=ck.problems,
        )
    finally:
        con.close()


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def validate_events(path: str | Path, **options: Any) -> ValidationReport:
    """Validate an event log; raise ``DataError`` listing every problem."""
    return validate(path, kind="events", **options).raise_for_problems()


def validate_items(path: str | Path, **options: Any) -> ValidationReport:
    """Validate an item catalogue; raise ``DataError`` listing every problem."""
    return validate(path, kind="items", **options).raise_for_problems()


def validate_bandit(path: str | Path, **options: Any) -> ValidationReport:
    """Validate a bandit log; raise ``DataError`` listing every problem."""
    return validate(path, kind="bandit", **options).raise_for_problems()
