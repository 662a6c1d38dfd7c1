"""What every importer shares: the result, SQL quoting, DuckDB type tests, time parsing,
the contract-named source view, and writing a query to an atomic Parquet file."""

from __future__ import annotations

import contextlib
import glob
import gzip
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from rtml_cli.data.sessionize import ROW_COLUMN
from rtml_cli.duck import sql_str as lit  # quote a SQL string literal
from rtml_cli.errors import DataError, InputMissing, UsageError
from rtml_cli.fsutil import PARQUET_OUTPUT, atomic_path

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
    # source event value -> {"to": contract event, "rows": n} (--map-event; rows -1: a
    # source without an event column, every row) and value -> rows dropped (--ignore-events)
    events_mapped: dict[str, dict[str, Any]] = field(default_factory=dict)
    events_ignored: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        # "kind" names the JSON document (rtml_cli.output.document): the contract written
        # is "contract" there
        doc = asdict(self)
        return {("contract" if k == "kind" else k): v for k, v in doc.items()}


def q(name: str) -> str:
    """Quote a SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


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


def _problem_example(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class Written:
    """What :func:`write_parquet_outputs` wrote: the summary row, columns, items rows."""

    summary: tuple[Any, ...]
    columns: list[str]
    items_rows: int | None  # None: no items file was written


def _copy(con: Any, query: str, path: Path) -> None:
    con.execute(f"COPY ({query}) TO {lit(str(path))} (FORMAT parquet, COMPRESSION zstd)")


def write_parquet_outputs(
    con: Any,
    query: str,
    out: Path,
    *,
    source: str,
    summary: str,
    items: Callable[[], str] | None = None,
    items_out: Path | None = None,
) -> Written:
    """Copy ``query`` to the Parquet file ``out`` and summarise what was written.

    ``summary`` is a SELECT list run over the written file (e.g. ``count(*), …``).
    With ``items`` (a function giving the items query, run only once the outputs
    are claimed) and ``items_out``, the items are written beside it. Each file is
    published atomically (``fsutil.atomic_path``) only if every step succeeded; a
    DuckDB error is a ``DataError`` naming ``source``.
    """
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out, PARQUET_OUTPUT, option="--out"))
        items_tmp = None
        if items is not None and items_out is not None:
            items_tmp = stack.enter_context(
                atomic_path(items_out, PARQUET_OUTPUT, option="--items-out")
            )
        try:
            _copy(con, query, tmp)
            written = f"read_parquet({lit(str(tmp))})"
            row = con.execute(f"SELECT {summary} FROM {written}").fetchone()
            columns = list(_columns(con, f"SELECT * FROM {written}"))
            items_rows = None
            if items is not None and items_tmp is not None:
                _copy(con, items(), items_tmp)
                items_rows = con.execute(
                    f"SELECT count(*) FROM read_parquet({lit(str(items_tmp))})"
                ).fetchone()[0]
        except duckdb.Error as exc:
            raise _duck_error(source, exc) from exc
    return Written(tuple(row), columns, items_rows)
