"""What ``rtml migrate`` was asked to do, and where the log splits into history and holdout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from rtml_cli.errors import DataError, InputMissing, UsageError
from rtml_cli.timeutil import format_duration

#: The steps, in order. Each writes its outputs under DIR and can be skipped (--skip).
STEPS = ("import", "validate", "precompute", "simulate", "drift", "evaluate", "report")
DEFAULT_HOLDOUT = timedelta(days=7)
#: Suffixes read as CSV (a team's export); anything else is read as Parquet.
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt")


@dataclass(frozen=True)
class MigrateOptions:
    """Everything ``rtml migrate`` takes (the CLI's options, parsed)."""

    events: str
    out: Path
    items: Path | None = None
    holdout: timedelta | None = None  # default DEFAULT_HOLDOUT when as_of is None
    as_of: datetime | None = None
    baseline_recs: Path | None = None
    mapping: dict[str, str] = field(default_factory=dict)
    event_map: dict[str, str] = field(default_factory=dict)
    ignore_events: tuple[str, ...] = ()
    session_gap: timedelta = timedelta(minutes=30)
    strategies: tuple[str, ...] = ()  # empty: the default strategies (+ baseline)
    k: int = 20
    sample: str | None = None
    hit_to_click: float | None = None
    seeds: int = 100
    bootstrap: int = 1000
    seed: int = 0
    skip: frozenset[str] = frozenset()
    force: bool = False

    def check(self) -> None:
        """Refuse contradictory or out-of-range options before any work (exit 2)."""
        if self.holdout is not None and self.as_of is not None:
            raise UsageError("give --holdout or --as-of, not both")
        if self.holdout is not None and self.holdout <= timedelta(0):
            raise UsageError("--holdout must be positive, e.g. 7d")
        unknown = sorted(set(self.skip) - set(STEPS))
        if unknown:
            raise UsageError(
                f"--skip {', '.join(unknown)}: no such step; the steps are {', '.join(STEPS)}"
            )
        if self.hit_to_click is not None and not 0 < self.hit_to_click <= 1:
            raise UsageError("--hit-to-click must be in (0, 1], e.g. 0.12")
        if self.k < 1:
            raise UsageError("-k must be at least 1")
        from rtml_cli.online.engine import check_bootstrap
        from rtml_cli.online.replay import parse_sample

        check_bootstrap(self.bootstrap)
        from rtml_cli.online.strategies import expand_names

        parse_sample(self.sample)
        if self.strategies:
            from rtml_cli.online.plugins import load_strategies

            load_strategies(expand_names(",".join(self.strategies)), [])  # unknown: exit 2
        if self.baseline_recs is not None:
            from rtml_cli.online.baseline import check_baseline_file

            check_baseline_file(self.baseline_recs)  # missing (66) or lacks columns (65)

    @property
    def is_csv(self) -> bool:
        return str(self.events).lower().endswith(CSV_SUFFIXES)

    @property
    def needs_import(self) -> bool:
        """A CSV export, or a Parquet file whose columns or event values need mapping."""
        return self.is_csv or bool(self.mapping or self.event_map or self.ignore_events)


@dataclass(frozen=True)
class Split:
    """History (before ``as_of``, for precompute) and holdout (``[as_of, end)``, replayed)."""

    first_event: datetime
    last_event: datetime
    as_of: datetime
    end: datetime  # just after the last event
    history_events: int
    holdout_events: int
    how: str  # "--holdout 7d" or "--as-of …"
    holdout: str  # the holdout's length, e.g. "7d" (to the second for --as-of)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_split(
    first: datetime,
    last: datetime,
    count_before: Any,
    *,
    holdout: timedelta | None,
    as_of: datetime | None,
) -> Split:
    """Where the log splits. ``count_before(ts)`` counts the events strictly before ``ts``.

    With ``holdout`` the split is the last event minus the holdout, to the second below;
    with ``as_of`` it is that time. Raises ``UsageError`` (exit 2) when either leaves no
    history or nothing to replay, saying what the log spans."""
    span = last - first
    spans = f"the log spans {_span_text(span)}, {_when(first)} … {_when(last)}"
    if as_of is None:
        length = format_duration(holdout) if holdout else "7d"
        asked = f"--holdout {length}" if holdout else "the default holdout of 7d"
        holdout = holdout or DEFAULT_HOLDOUT
        if holdout >= span:
            raise UsageError(
                f"{asked} is as long as the log or longer ({spans}): give a shorter "
                "--holdout or an --as-of inside the log"
            )
        split = (last - holdout).replace(microsecond=0)
        how = f"--holdout {length}"
    else:
        if as_of <= first:
            raise UsageError(
                f"--as-of {_when(as_of)} is at or before the first event ({spans}): there is "
                "no history to precompute from; give a time inside the log"
            )
        if as_of > last:
            raise UsageError(
                f"--as-of {_when(as_of)} is after the last event ({spans}): there is nothing "
                "to replay; give a time inside the log"
            )
        split = as_of
        how = f"--as-of {_when(as_of)}"
        length = _span_text(last - as_of)
    end = last + timedelta(microseconds=1)
    total = count_before(end)
    before = count_before(split)
    if before == 0:  # pragma: no cover - guarded by the checks above
        raise UsageError(f"no event before {_when(split)} ({spans})")
    return Split(first, last, split, end, before, total - before, how, length)


def events_span(files: list[Path]) -> tuple[datetime, datetime, Any]:
    """First and last event time of the event files, and a ``count_before(ts)`` function
    (DuckDB, reading only the ts column)."""
    from rtml_cli.batch.source import sql_files, sql_ts
    from rtml_cli.duck import connect

    con = connect()
    source = f"read_parquet({sql_files(files)}, union_by_name = true)"
    try:
        row = con.execute(f"SELECT min(ts), max(ts) FROM {source}").fetchone()
    except Exception as exc:  # duckdb.Error: a missing ts column or unreadable file
        con.close()
        raise DataError(f"cannot read event times: {str(exc).splitlines()[0]}") from exc
    if row is None or row[0] is None:
        con.close()
        raise DataError("the event log has no rows")

    def count_before(ts: datetime) -> int:
        found = con.execute(f"SELECT count(*) FROM {source} WHERE ts < {sql_ts(ts)}").fetchone()
        return int(found[0]) if found else 0

    return _utc(row[0]), _utc(row[1]), count_before


def input_stamp(path: str | Path | None) -> list[Any] | None:
    """What identifies an input for resuming: each file's path, size and modification time
    (content hashes would read a 100 GB log on every rerun)."""
    if path is None:
        return None
    from rtml_cli.fsutil import parquet_files

    given = Path(path)
    if given.is_file() and str(given).lower().endswith(CSV_SUFFIXES):
        files = [given]
    elif given.exists() or any(ch in str(path) for ch in "*?["):
        files = parquet_files(path, what="input") if not given.is_file() else [given]
    else:
        raise InputMissing(f"input {path} does not exist")
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def fingerprint(*parts: Any) -> str:
    """A short digest of a step's parameters and its upstream fingerprints."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _utc(value: datetime) -> datetime:
    from datetime import timezone

    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value


def _when(value: datetime) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S} UTC"


def _span_text(span: timedelta) -> str:
    """``26d 3h``, ``5.5h`` or ``12m``: a span as people read it."""
    days, rest = divmod(span.total_seconds(), 86400)
    hours = rest / 3600
    if days:
        return f"{int(days)}d {hours:.0f}h"
    return f"{hours:.1f}h" if hours >= 1 else f"{rest / 60:.0f}m"
