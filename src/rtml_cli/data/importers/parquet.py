"""``--format parquet``: any Parquet table (file, glob or directory) plus a column mapping."""

from __future__ import annotations

from rtml_cli.data.importers.common import _mapped_view, _Source, lit
from rtml_cli.fsutil import parquet_files


def _parquet_source(con, source: str, mapping: dict[str, str]) -> _Source:
    files = parquet_files(source, what="input")
    relation = f"read_parquet([{', '.join(lit(str(f)) for f in files)}], union_by_name = true)"
    return _mapped_view(con, relation, mapping, source)
