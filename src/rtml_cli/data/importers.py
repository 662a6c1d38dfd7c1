"""Importers: convert real logs into rtml's event-log and bandit-log contracts.

Every format is turned into a DuckDB view, checked with one aggregation pass,
and written with ``COPY … TO … (FORMAT parquet)``: DuckDB streams the source
and spills sorts and windows to disk, so a log larger than memory imports
without ever becoming Python objects. The output is written under a temporary
name and renamed into place (``fsutil.atomic_path``): a failed import leaves
no file at the destination.

Formats:

- ``obd``: Open Bandit Dataset CSV (``.csv`` or ``.csv.gz``) → bandit log.
- ``recbole``: RecBole atomic ``.inter`` (+ optional ``.item``) → event log.
- ``session-rec``: ``SessionId<TAB>ItemId<TAB>Time`` → event log.
- ``csv`` / ``parquet``: any table plus a column mapping → event log.

Sources without session ids are sessionized per user at an inactivity gap
(``data.sessionize``).
"""

from __future__ import annotations

import contextlib
import glob
import gzip
import os
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb

from rtml_cli.data.sessionize import ROW_COLUMN, sessionize_sql
from rtml_cli.errors import DataError, InputMissing, UsageError
from rtml_cli.fsutil import PARQUET_OUTPUT, atomic_path, check_output, parquet_files, scratch_dir

FORMATS = ("obd", "recbole", "session-rec", "csv", "parquet")
TS_UNITS = ("s", "ms", "us", "iso")
EVENT_COLUMNS = ("ts", "user_id", "session_id", "item_id", "event")
DEFAULT_GAP = timedelta(minutes=30)
_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_INT_ID = r"-?(0|[1-9][0-9]{0,17})"
# A timestamp later than this after "now" is taken as a wrong --ts-unit.
_FUTURE_SLACK = timedelta(days=1)


@dataclass
class ImportResult:
    """What an import wrote; ``to_dict`` is the JSON the CLI prints."""

    format: str
    source: str
    out: str
    kind: str  # "events" | "bandit"
    rows: int
    columns: list[str]
    ts_min: datetime | None
    ts_max: datetime | None
    seconds: float
    sessions: int | None = None
    users: int | None = None
    items: int | None = None
    sessionized: bool = False
    session_gap: timedelta | None = None
    policy: str | None = None
    actions: int | None = None
    reward_mean: float | None = None
    propensity_min: float | None = None
    propensity_max: float | None = None
    items_out: str | None = None
    items_rows: int | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def q(name: str) -> str:
    """Quote a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def lit(value: str) -> str:
    """Quote a SQL string literal."""
    return "'" + str(value).replace("'", "''") + "'"


def parse_mapping(specs: list[str] | str | None) -> dict[str, str]:
    """``["ts=event_time,user_id=uid", "item_id=sku"]`` → ``{"ts": "event_time", …}``.

    Keys are contract columns (ts, user_id, session_id, item_id, event); values
    are source column names.
    """
    if specs is None:
        return {}
    if isinstance(specs, str):
        specs = [specs]
    mapping: dict[str, str] = {}
    for spec in specs:
        for part in spec.split(","):
            if not part.strip():
                continue
            target, sep, source = part.partition("=")
            target, source = target.strip(), source.strip()
            if not sep or not target or not source:
                raise UsageError(
                    f"invalid --map entry {part!r}: use CONTRACT_COLUMN=SOURCE_COLUMN, e.g. ts=event_time"
                )
            if target not in EVENT_COLUMNS:
                raise UsageError(
                    f"invalid --map target {target!r}: map one of {', '.join(EVENT_COLUMNS)}"
                )
            if target in mapping and mapping[target] != source:
                raise UsageError(f"--map gives {target} twice ({mapping[target]!r}, {source!r})")
            mapping[target] = source
    return mapping


def connect(spill_dir: Path | None = None):
    """A DuckDB connection (``rtml_cli.duck.connect``) that spills to ``spill_dir``."""
    from rtml_cli.duck import connect as duck_connect

    return duck_connect(spill_dir)


def _duck_error(source: str, exc: Exception) -> DataError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"cannot read {source}: {first}")


def _columns(con, relation_sql: str) -> dict[str, str]:
    return {row[0]: row[1] for row in con.execute(f"DESCRIBE {relation_sql}").fetchall()}


def _is_temporal(dtype: str) -> bool:
    return dtype.startswith(("TIMESTAMP", "DATE"))


# DuckDB's integer type names (shared with data.validate).
DUCKDB_INTEGER_TYPES = frozenset(
    {
        "TINYINT",
        "SMALLINT",
        "INTEGER",
        "BIGINT",
        "HUGEINT",
        "UTINYINT",
        "USMALLINT",
        "UINTEGER",
        "UBIGINT",
    }
)


def _is_integer(dtype: str) -> bool:
    return dtype in DUCKDB_INTEGER_TYPES


def _is_numeric(dtype: str) -> bool:
    return _is_integer(dtype) or dtype in {"FLOAT", "DOUBLE"} or dtype.startswith("DECIMAL")


def ts_expression(column: str, dtype: str, unit: str | None) -> str:
    """SQL turning a source time column into ``TIMESTAMPTZ`` (NULL where it cannot be parsed).

    Native timestamps and dates are taken as they are (naive ones as UTC);
    numbers are epoch times in ``unit`` (default seconds); strings are ISO 8601
    unless ``unit`` says they hold epoch numbers.
    """
    c = q(column)
    if _is_temporal(dtype):
        return f"CAST({c} AS TIMESTAMPTZ)"
    if unit == "iso" and not _is_numeric(dtype):
        return f"TRY_CAST({c} AS TIMESTAMPTZ)"
    factor = _MICROS.get(unit or "s")
    if factor is None:
        raise UsageError(f"--ts-unit iso needs a text column, but {column} is {dtype}")
    if _is_integer(dtype):
        micros = f"try(CAST({c} AS BIGINT) * {factor})"
    elif _is_numeric(dtype):
        micros = f"try(CAST(round(CAST({c} AS DOUBLE) * {factor}) AS BIGINT))"
    else:
        text = f"trim(CAST({c} AS VARCHAR))"
        micros = (
            f"CASE WHEN regexp_full_match({text}, '-?[0-9]+') "
            f"THEN try(TRY_CAST({text} AS BIGINT) * {factor}) "
            f"ELSE try(CAST(round(TRY_CAST({text} AS DOUBLE) * {factor}) AS BIGINT)) END"
        )
        if unit is None:
            # Text without a unit: numbers are epoch seconds (as for numeric columns), the rest ISO.
            return (
                f"CASE WHEN regexp_full_match({text}, '-?[0-9]+(\\.[0-9]*)?') "
                f"THEN CAST(try(make_timestamp({micros})) AS TIMESTAMPTZ) "
                f"ELSE TRY_CAST({c} AS TIMESTAMPTZ) END"
            )
    return f"CAST(try(make_timestamp({micros})) AS TIMESTAMPTZ)"


def _check_source(source: str | Path, fmt: str) -> Path:
    path = Path(source)
    if any(ch in str(source) for ch in "*?["):
        if fmt != "csv":
            raise UsageError(f"--format {fmt} reads one file; globs only work with csv and parquet")
        if not glob.glob(str(source)):
            raise InputMissing(f"input glob {source} matches no file")
        return path
    if not path.exists():
        raise InputMissing(f"input {source} does not exist")
    if path.is_dir():
        raise UsageError(f"input {source} is a directory; give the file to import")
    if path.stat().st_size == 0:
        raise DataError(f"input {source} is empty (0 bytes)")
    return path


def _header_line(path: Path) -> str:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            return handle.readline().rstrip("\r\n")
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from exc


def _items_target(out: Path, items_out: str | Path | None) -> Path:
    if items_out is not None:
        return Path(items_out)
    name = out.name[: -len(".parquet")] if out.name.endswith(".parquet") else out.name
    return out.with_name(f"{name}.items.parquet")


# --------------------------------------------------------------------------- sources


@dataclass
class _Source:
    """A DuckDB view ``src`` with contract-named columns, extras and a row number."""

    columns: dict[str, str]  # name -> DuckDB type, as seen in the view (without the row column)
    ts_dtype: str
    ts_unit: str | None
    items_sql: str | None = None  # a SELECT producing the items table, if the source has one


def _row_view(con, relation: str, select: str) -> None:
    con.execute(
        f"CREATE OR REPLACE VIEW src AS SELECT {select}, "
        f"row_number() OVER () AS {ROW_COLUMN} FROM {relation}"
    )


def _mapped_view(con, relation: str, mapping: dict[str, str], source: str) -> _Source:
    """Rename mapped columns to contract names; keep the rest as extras."""
    cols = _columns(con, f"SELECT * FROM {relation}")
    mapping = dict(mapping)
    for name in EVENT_COLUMNS:  # identity mapping for columns already named by the contract
        if name not in mapping and name in cols and name not in mapping.values():
            mapping[name] = name
    missing = [f"{target}={src}" for target, src in mapping.items() if src not in cols]
    if missing:
        raise DataError(
            f"{source} has no column(s) named in --map: {', '.join(missing)}; "
            f"its columns are {', '.join(cols)}"
        )
    for need in ("ts", "item_id"):
        if need not in mapping:
            raise UsageError(
                f"{source} has no {need!r} column: map one with --map {need}=COLUMN "
                f"(columns: {', '.join(cols)})"
            )
    if "session_id" not in mapping and "user_id" not in mapping:
        raise UsageError(
            f"{source} has neither session_id nor user_id: map one with --map "
            "session_id=COLUMN or --map user_id=COLUMN so sessions can be formed"
        )
    mapped_sources = set(mapping.values())
    extras = [c for c in cols if c not in mapped_sources]
    clash = [c for c in extras if c in EVENT_COLUMNS]
    if clash:
        raise UsageError(
            f"{source} column(s) {', '.join(clash)} would clash with the contract columns "
            "mapped from other columns; map them too or rename them"
        )
    select = [f"{q(src)} AS {q(target)}" for target, src in mapping.items()]
    select += [q(c) for c in extras]
    _row_view(con, relation, ", ".join(select))
    view_cols = {target: cols[src] for target, src in mapping.items()}
    view_cols.update({c: cols[c] for c in extras})
    return _Source(columns=view_cols, ts_dtype=view_cols["ts"], ts_unit=None)


def _csv_relation(path: Path, *, delim: str | None = None, types: dict[str, str] | None = None):
    opts = ["header = true"]
    if delim is not None:
        opts.append(f"delim = {lit(delim)}")
    if types:
        inner = ", ".join(f"{lit(k)}: {lit(v)}" for k, v in types.items())
        opts.append(f"types = {{{inner}}}")
    return f"read_csv({lit(str(path))}, {', '.join(opts)})"


def _check_csv_header(con, path: Path) -> None:
    """Refuse a header that names a column twice: DuckDB would rename one (``item_id_1``).

    Reads the first line with the delimiter and quote DuckDB's sniffer found.
    DuckDB's names are case-insensitive, so ``Item_ID`` repeats ``item_id``.
    """
    import csv
    from collections import Counter

    files = [path] if path.exists() else sorted(Path(f) for f in glob.glob(str(path)))
    for file in files:
        try:
            delim, quote = con.execute(
                f"SELECT Delimiter, Quote FROM sniff_csv({lit(str(file))})"
            ).fetchone()
        except duckdb.Error as exc:
            raise _duck_error(str(file), exc) from exc
        quote = quote if quote and len(quote) == 1 else '"'
        line = _header_line(file)
        names = next(csv.reader([line], delimiter=delim or ",", quotechar=quote), [])
        counts = Counter(name.strip().casefold() for name in names)
        first = {}  # casefolded name -> its first spelling
        for name in names:
            first.setdefault(name.strip().casefold(), name.strip())
        repeated = [spelling for key, spelling in first.items() if counts[key] > 1]
        if repeated:
            raise DataError(
                f"{file} names a column more than once in its header "
                f"({', '.join(repr(n) for n in repeated)}): rename the duplicates so each "
                "column has one name"
            )


def _csv_source(con, path: Path, mapping: dict[str, str]) -> _Source:
    _check_csv_header(con, path)
    header = _columns(con, f"SELECT * FROM {_csv_relation(path)}")
    # Read identifiers and the time column as text: lossless (no "007" -> 7), parsed below.
    keys = {**{c: c for c in EVENT_COLUMNS}, **mapping}
    text = {src: "VARCHAR" for src in keys.values() if src in header}
    return _mapped_view(con, _csv_relation(path, types=text), mapping, str(path))


def _parquet_source(con, source: str, mapping: dict[str, str]) -> _Source:
    files = parquet_files(source, what="input")
    relation = f"read_parquet([{', '.join(lit(str(f)) for f in files)}], union_by_name = true)"
    return _mapped_view(con, relation, mapping, source)


_RECBOLE_TYPES = {
    "token": "VARCHAR",
    "float": "DOUBLE",
    "token_seq": "VARCHAR",
    "float_seq": "VARCHAR",
}


def _recbole_fields(path: Path) -> list[tuple[str, str, str]]:
    """(raw header name, bare name, DuckDB type) per column of a RecBole atomic file."""
    fields = []
    for raw in _header_line(path).split("\t"):
        name, sep, kind = raw.partition(":")
        if not sep or kind not in _RECBOLE_TYPES:
            raise DataError(
                f"{path} is not a RecBole atomic file: header field {raw!r} is not "
                "NAME:TYPE with TYPE token, float, token_seq or float_seq"
            )
        fields.append((raw, name, _RECBOLE_TYPES[kind]))
    return fields


def _recbole_select(fields: list[tuple[str, str, str]], rename: dict[str, str]) -> str:
    parts = []
    for raw, name, dtype in fields:
        target = rename.get(name, name)
        expr = q(raw) if dtype == "VARCHAR" else f"TRY_CAST({q(raw)} AS {dtype})"
        parts.append(f"{expr} AS {q(target)}")
    return ", ".join(parts)


def _recbole_source(con, path: Path, mapping: dict[str, str]) -> _Source:
    fields = _recbole_fields(path)
    relation = f"read_csv({lit(str(path))}, header = true, delim = '\\t', all_varchar = true)"
    # RecBole's own names; --map overrides (e.g. --map user_id=uid for a custom header).
    rename = {"timestamp": "ts"}
    defaults = {"ts": "timestamp", "user_id": "user_id", "item_id": "item_id"}
    if any(name == "session_id" for _, name, _ in fields):
        defaults["session_id"] = "session_id"
    merged = {**defaults, **mapping}
    bare = {name for _, name, _ in fields}
    rename = {src: target for target, src in merged.items() if src in bare}
    con.execute(
        f"CREATE OR REPLACE VIEW recbole_raw AS SELECT {_recbole_select(fields, rename)} FROM {relation}"
    )
    src = _mapped_view(con, "recbole_raw", {}, str(path))
    src.ts_unit = "s"
    item_file = path.with_suffix(".item")
    if item_file.exists() and item_file.stat().st_size > 0:
        src.items_sql = _recbole_items_sql(item_file)
    return src


def _recbole_items_sql(path: Path) -> str:
    fields = _recbole_fields(path)
    names = [name for _, name, _ in fields]
    if "item_id" not in names:
        raise DataError(f"{path} has no item_id column; its header is {', '.join(names)}")
    rename: dict[str, str] = {}
    title = next((n for n in names if n == "title"), None) or next(
        (n for n in names if n.endswith("_title") or n.endswith("_name")), None
    )
    if title:
        rename[title] = "title"
    category = next((n for n in names if n in ("category", "categories", "class", "genre")), None)
    if category and category != "category":
        rename[category] = "category"
    relation = f"read_csv({lit(str(path))}, header = true, delim = '\\t', all_varchar = true)"
    return f"SELECT {_recbole_select(fields, rename)} FROM {relation}"


def _session_rec_source(con, path: Path, mapping: dict[str, str]) -> _Source:
    header = _header_line(path).split("\t")
    need = ["SessionId", "ItemId", "Time"]
    missing = [c for c in need if c not in header]
    if missing:
        raise DataError(
            f"{path} is not a session-rec file: missing column(s) {', '.join(missing)} "
            f"(header: {', '.join(header)}); expected SessionId<TAB>ItemId<TAB>Time"
        )
    relation = (
        f"read_csv({lit(str(path))}, header = true, delim = '\\t', "
        "types = {'SessionId': 'VARCHAR', 'ItemId': 'VARCHAR', 'Time': 'VARCHAR'})"
    )
    base = {"session_id": "SessionId", "item_id": "ItemId", "ts": "Time"}
    src = _mapped_view(con, relation, {**base, **mapping}, str(path))
    src.ts_unit = "s"
    return src


# --------------------------------------------------------------------------- events


def _problem_example(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _import_events(
    con,
    src: _Source,
    *,
    fmt: str,
    source: str,
    out: Path,
    ts_unit: str | None,
    session_gap: timedelta,
    event: str,
    items_out: Path | None,
) -> ImportResult:
    started = time.perf_counter()
    cols = src.columns
    unit = ts_unit or src.ts_unit
    ts = ts_expression("ts", src.ts_dtype, unit)
    item_text = not _is_numeric(cols["item_id"])
    has_session = "session_id" in cols
    has_user = "user_id" in cols

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

    item_expr = "item_id"
    if item_text and s.get("item_int"):
        item_expr = "CAST(item_id AS BIGINT)"  # integer ids stay integers, as in the source
    elif item_text:
        item_expr = "CAST(item_id AS VARCHAR)"
    extras = [c for c in cols if c not in EVENT_COLUMNS]
    user_expr = "CAST(user_id AS VARCHAR)" if has_user else "CAST(NULL AS VARCHAR)"
    event_expr = "CAST(event AS VARCHAR)" if "event" in cols else lit(event)
    base = [f"{ts} AS ts", f"{user_expr} AS user_id", f"{item_expr} AS item_id"]
    base.append(f"{event_expr} AS event")
    if has_session:
        base.append("CAST(session_id AS VARCHAR) AS session_id")
    base += [q(c) for c in extras] + [ROW_COLUMN]
    relation = f"(SELECT {', '.join(base)} FROM src)"
    if not has_session:
        relation = f"({sessionize_sql(relation, key='user_id', ts='ts', gap=session_gap)})"
    final = ["ts", "user_id", "session_id", "item_id", "event"] + [q(c) for c in extras]
    query = f"SELECT {', '.join(final)} FROM {relation} ORDER BY ts, {ROW_COLUMN}"

    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out, PARQUET_OUTPUT, option="--out"))
        items_tmp = None
        if src.items_sql is not None and items_out is not None:
            items_tmp = stack.enter_context(
                atomic_path(items_out, PARQUET_OUTPUT, option="--items-out")
            )
        try:
            con.execute(f"COPY ({query}) TO {lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
            summary = con.execute(
                "SELECT count(*), count(DISTINCT session_id), count(DISTINCT user_id), "
                f"count(DISTINCT item_id) FROM read_parquet({lit(str(tmp))})"
            ).fetchone()
            out_cols = list(_columns(con, f"SELECT * FROM read_parquet({lit(str(tmp))})"))
            items_rows = None
            if items_tmp is not None:
                items_sql = src.items_sql
                if item_expr.startswith("CAST(item_id AS BIGINT)"):
                    # Same id type as the events, so the two join: integer only if all ids are.
                    all_int = con.execute(
                        f"SELECT coalesce(bool_and(regexp_full_match(item_id, '{_INT_ID}')), false) "
                        f"FROM ({items_sql})"
                    ).fetchone()[0]
                    if all_int:
                        items_sql = (
                            "SELECT * REPLACE (CAST(item_id AS BIGINT) AS item_id) "
                            f"FROM ({items_sql})"
                        )
                con.execute(
                    f"COPY ({items_sql}) TO {lit(str(items_tmp))} (FORMAT parquet, COMPRESSION zstd)"
                )
                items_rows = con.execute(
                    f"SELECT count(*) FROM read_parquet({lit(str(items_tmp))})"
                ).fetchone()[0]
        except duckdb.Error as exc:
            raise _duck_error(source, exc) from exc
    return ImportResult(
        format=fmt,
        source=source,
        out=str(out),
        kind="events",
        rows=summary[0],
        columns=out_cols,
        ts_min=s["ts_min"],
        ts_max=s["ts_max"],
        seconds=round(time.perf_counter() - started, 3),
        sessions=summary[1],
        users=summary[2],
        items=summary[3],
        sessionized=not has_session,
        session_gap=None if has_session else session_gap,
        items_out=str(items_out) if items_tmp is not None else None,
        items_rows=items_rows,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- bandit (OBD)

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
    con, path: Path, *, source: str, out: Path, policy: str | None, items_out: Path | None
) -> ImportResult:
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
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out, PARQUET_OUTPUT, option="--out"))
        items_tmp = None
        if items_out is not None and item_file.exists():
            items_tmp = stack.enter_context(
                atomic_path(items_out, PARQUET_OUTPUT, option="--items-out")
            )
        try:
            con.execute(f"COPY ({query}) TO {lit(str(tmp))} (FORMAT parquet, COMPRESSION zstd)")
            summary = con.execute(
                "SELECT count(*), count(DISTINCT action), avg(reward), min(propensity), "
                f"max(propensity) FROM read_parquet({lit(str(tmp))})"
            ).fetchone()
            out_cols = list(_columns(con, f"SELECT * FROM read_parquet({lit(str(tmp))})"))
            items_rows = None
            if items_tmp is not None:
                item_cols = _columns(con, f"SELECT * FROM {_csv_relation(item_file)}")
                keep = [
                    q(c) for c in item_cols if c != "item_id" and not re.fullmatch(r"column0*", c)
                ]
                con.execute(
                    f"COPY (SELECT CAST(item_id AS BIGINT) AS item_id, {', '.join(keep)} "
                    f"FROM {_csv_relation(item_file)} ORDER BY item_id) TO {lit(str(items_tmp))} "
                    "(FORMAT parquet, COMPRESSION zstd)"
                )
                items_rows = con.execute(
                    f"SELECT count(*) FROM read_parquet({lit(str(items_tmp))})"
                ).fetchone()[0]
        except duckdb.Error as exc:
            raise _duck_error(source, exc) from exc
    return ImportResult(
        format="obd",
        source=source,
        out=str(out),
        kind="bandit",
        rows=summary[0],
        columns=out_cols,
        ts_min=s["ts_min"],
        ts_max=s["ts_max"],
        seconds=round(time.perf_counter() - started, 3),
        policy=policy,
        actions=summary[1],
        reward_mean=summary[2],
        propensity_min=summary[3],
        propensity_max=summary[4],
        items_out=str(items_out) if items_tmp is not None else None,
        items_rows=items_rows,
    )


# --------------------------------------------------------------------------- entry point


def import_log(
    fmt: str,
    source: str | Path,
    out: str | Path,
    *,
    mapping: dict[str, str] | None = None,
    ts_unit: str | None = None,
    session_gap: timedelta = DEFAULT_GAP,
    items_out: str | Path | None = None,
    policy: str | None = None,
    event: str = "view",
) -> ImportResult:
    """Convert ``source`` (in format ``fmt``) into a contract Parquet file at ``out``.

    ``obd`` writes a bandit log; every other format an event log. ``mapping``
    renames source columns to contract columns (``{"ts": "event_time"}``);
    ``ts_unit`` says how numeric or text times are encoded (default: seconds
    for numbers, ISO 8601 for text); ``event`` names the event of sources that
    have none. Items that come with the source (RecBole ``.item``, OBD
    ``item_context.csv``) are written to ``items_out`` (default: next to
    ``out`` as ``NAME.items.parquet``). Raises ``InputMissing``, ``DataError``
    (every problem found) or ``UsageError``; nothing is left at ``out`` on failure.
    """
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if ts_unit is not None and ts_unit not in TS_UNITS:
        raise UsageError(f"unknown --ts-unit {ts_unit!r}: use one of {', '.join(TS_UNITS)}")
    if session_gap <= timedelta(0):
        raise UsageError("--session-gap must be positive, e.g. 30m")
    if not str(event).strip():
        raise UsageError("--event must not be empty")
    out = Path(out)
    mapping = dict(mapping or {})
    text = str(source)
    path = Path(text) if fmt == "parquet" else _check_source(text, fmt)
    if fmt == "obd" and mapping:
        raise UsageError("--map does not apply to --format obd (its columns are fixed)")
    items_target = _items_target(out, items_out)
    for target, option in ((out, "--out"), (items_target, "--items-out")):
        check_output(target, PARQUET_OUTPUT, option=option)  # before the work, not after
    # spill next to the output (same disk); a killed import's spill is removed by the next one
    with scratch_dir("import", _spill_parent(out)) as spill:
        con = connect(spill)
        try:
            if fmt == "obd":
                return _import_obd(
                    con, path, source=text, out=out, policy=policy, items_out=items_target
                )
            try:
                if fmt == "recbole":
                    src = _recbole_source(con, path, mapping)
                elif fmt == "session-rec":
                    src = _session_rec_source(con, path, mapping)
                elif fmt == "csv":
                    src = _csv_source(con, path, mapping)
                else:
                    src = _parquet_source(con, text, mapping)
            except (DataError, UsageError, InputMissing):
                raise
            except duckdb.Error as exc:
                raise _duck_error(text, exc) from exc
            return _import_events(
                con,
                src,
                fmt=fmt,
                source=text,
                out=out,
                ts_unit=ts_unit,
                session_gap=session_gap,
                event=event,
                items_out=items_target,
            )
        finally:
            con.close()


def _spill_parent(out: Path) -> Path | None:
    """Spill next to the output when possible (same disk, cleaned up), else rtml's scratch."""
    parent = out.parent if str(out.parent) else Path(".")
    return parent if parent.is_dir() and os.access(parent, os.W_OK) else None
