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

from rtml_cli.data.importers.common import (
    DEFAULT_GAP,
    DUCKDB_INTEGER_TYPES,
    EVENT_COLUMNS,
    FORMATS,
    TS_UNITS,
    ImportResult,
    lit,
    parse_mapping,
    q,
    ts_expression,
    write_parquet_outputs,
)
from rtml_cli.data.importers.events import parse_event_map
from rtml_cli.data.importers.obd import OBD_COLUMNS, obd_policy_name
from rtml_cli.data.importers.run import import_log

__all__ = [
    "DEFAULT_GAP",
    "DUCKDB_INTEGER_TYPES",
    "EVENT_COLUMNS",
    "FORMATS",
    "OBD_COLUMNS",
    "TS_UNITS",
    "ImportResult",
    "import_log",
    "lit",
    "obd_policy_name",
    "parse_event_map",
    "parse_mapping",
    "q",
    "ts_expression",
    "write_parquet_outputs",
]
