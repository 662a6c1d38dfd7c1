"""``import_log``: check the options, open the source in its format, write the contract."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import duckdb

from rtml_cli.data.importers.common import (
    DEFAULT_GAP,
    FORMATS,
    TS_UNITS,
    ImportResult,
    _check_source,
    _duck_error,
    _items_target,
)
from rtml_cli.data.importers.csvfile import _csv_source
from rtml_cli.data.importers.events import _import_events
from rtml_cli.data.importers.obd import _import_obd
from rtml_cli.data.importers.parquet import _parquet_source
from rtml_cli.data.importers.recbole import _recbole_source
from rtml_cli.data.importers.sessionrec import _session_rec_source
from rtml_cli.duck import connect
from rtml_cli.errors import DataError, InputMissing, UsageError
from rtml_cli.fsutil import PARQUET_OUTPUT, check_output, scratch_dir


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
    event_map: dict[str, str] | None = None,
    ignore_events: list[str] | None = None,
) -> ImportResult:
    """Convert ``source`` (in format ``fmt``) into a contract Parquet file at ``out``.

    ``obd`` writes a bandit log; every other format an event log. ``mapping``
    renames source columns to contract columns (``{"ts": "event_time"}``);
    ``ts_unit`` says how numeric or text times are encoded (default: seconds
    for numbers, ISO 8601 for text); ``event`` names the event of sources that
    have none. ``event_map`` turns source event values into contract events
    (``{"add_to_cart": "cart"}``) and ``ignore_events`` drops rows with these values; any
    other value outside the contract is a ``DataError`` listing them. Items that come with the source (RecBole ``.item``, OBD
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
    if fmt == "obd" and (mapping or event_map or ignore_events):
        raise UsageError(
            "--map, --map-event and --ignore-events do not apply to obd (its columns are fixed)"
        )
    check_output(out, PARQUET_OUTPUT, option="--out")  # before the work, not after
    items_target = _items_target(out, items_out)
    check_output(items_target, PARQUET_OUTPUT, option="--items-out")
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
                event_map=event_map,
                ignore_events=ignore_events,
            )
        finally:
            con.close()


def _spill_parent(out: Path) -> Path | None:
    """Spill next to the output when possible (same disk, cleaned up), else rtml's scratch."""
    parent = out.parent if str(out.parent) else Path(".")
    return parent if parent.is_dir() and os.access(parent, os.W_OK) else None
