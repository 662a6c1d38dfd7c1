"""``--format recbole``: RecBole atomic ``.inter`` files (and the ``.item`` file beside them)."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.data.importers.common import _header_line, _mapped_view, _Source, lit, q
from rtml_cli.errors import DataError

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
