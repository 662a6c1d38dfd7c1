"""``--format csv``: any delimited table (or glob of them) plus a column mapping."""

from __future__ import annotations

import glob
from pathlib import Path

import duckdb

from rtml_cli.data.importers.common import (
    EVENT_COLUMNS,
    _columns,
    _csv_relation,
    _duck_error,
    _header_line,
    _mapped_view,
    _Source,
    lit,
)
from rtml_cli.errors import DataError


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
        first: dict[str, str] = {}  # casefolded name -> its first spelling
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
