"""``--format session-rec``: ``SessionId<TAB>ItemId<TAB>Time`` files."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.data.importers.common import _header_line, _mapped_view, _Source, lit
from rtml_cli.errors import DataError


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
