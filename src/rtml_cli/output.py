"""Rendering for people and for scripts.

Data goes to stdout (a Rich table, or JSON with ``--format json``); progress,
logs and errors go to stderr so stdout stays parseable. Rich honours
``NO_COLOR`` and plain output when stdout is not a terminal.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-f",
        help="table: Rich tables for people; json: one JSON document for scripts; "
        "csv or markdown: one row per strategy, segment or policy, as in the JSON.",
        case_sensitive=False,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        help="No tables or progress (errors still go to stderr); a --format json, csv or "
        "markdown document is printed all the same.",
    ),
]


def stdout_console():
    """A console on the *current* stdout (so CliRunner captures it)."""
    from rich.console import Console

    return Console(file=sys.stdout, soft_wrap=False)


def stderr_console(quiet: bool = False):
    """A console for progress and logs; silent when ``quiet``."""
    from rich.console import Console

    return Console(file=sys.stderr, quiet=quiet)


def info(message: str, *, quiet: bool = False) -> None:
    """A line for people on stderr."""
    if not quiet:
        stderr_console().print(message, highlight=False)


def warn(message: str) -> None:
    """A warning on stderr (always shown, even with --quiet)."""
    print(f"rtml: warning: {message}", file=sys.stderr)


# Every JSON document rtml prints says what it is: ``{"kind": …, "schema": N, …}``. A kind's
# schema number goes up when a key changes meaning or goes away (adding keys does not), so
# a script or `rtml report` can tell a document it understands from one it does not.
SCHEMAS: dict[str, int] = {
    "data contracts": 1,
    "data sample": 1,
    "data import": 1,
    "data validate": 1,
    "precompute": 1,
    "neighbors": 1,
    "simulate": 1,
    "evaluate bandits": 1,
    "evaluate ope": 1,
    "evaluate contextual": 1,
    "evaluate contextual log": 1,
    "retrain": 1,
    "drift compare": 1,
    "drift popularity": 1,
    "migrate": 1,
}


@dataclass(frozen=True)
class Rows:
    """How a JSON document becomes the rows of ``--format csv`` and ``markdown``.

    ``tables``: the document's keys whose lists of objects become rows (one row per
    strategy, segment, policy…); with more than one, a leading ``table`` column names the
    key a row came from. Without ``tables`` the document is one row. Nested objects become
    dotted columns (``latency.p50``); short lists of values are joined with ``;``; longer
    lists (curves) and lists of objects are left to the JSON.
    """

    tables: tuple[str, ...] = ()


# The command line of the running command (set by the CLI for the length of one run), so a
# document can say how it was made; and where ``rtml --save-json FILE`` wants it copied.
_RUN: dict[str, Any] = {"argv": None, "save_json": None, "saved": False}


def start_run(argv: Sequence[str] | None, save_json: Path | None = None) -> None:
    """Called by the CLI around each command (``end_run`` after it)."""
    _RUN.update(argv=list(argv) if argv is not None else None, save_json=save_json, saved=False)


def save_json_to(path: Path | None) -> None:
    _RUN.update(save_json=path, saved=False)


def end_run() -> tuple[Path | None, bool]:
    """Clear the run's state; returns (the --save-json path, whether it was written)."""
    result = (_RUN["save_json"], _RUN["saved"])
    _RUN.update(argv=None, save_json=None, saved=False)
    return result


def command_line() -> str | None:
    """``rtml …`` as the running command was called (None outside the CLI)."""
    import shlex

    return None if _RUN["argv"] is None else shlex.join(["rtml", *_RUN["argv"]])


def document(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` with the ``kind`` and ``schema`` keys every rtml JSON document carries, and
    (last) the ``command`` line that made it when it runs from the CLI."""
    clash = {"kind", "schema", "command"} & set(payload)
    if clash:
        raise ValueError(f"a {kind} document may not use the reserved keys {sorted(clash)}")
    doc = {"kind": kind, "schema": SCHEMAS[kind], **payload}
    command = command_line()
    if command is not None:
        doc["command"] = command
    return doc


def save_document(path: str | Path, kind: str, doc: Any) -> Path:
    """Write ``doc`` as an rtml JSON document of ``kind`` at ``path`` (atomically): what
    ``rtml --save-json`` writes, for a command that runs others (``rtml migrate``)."""
    payload = document(kind, _jsonable(doc() if callable(doc) else doc))
    _write_document(Path(path), payload, option="--out")
    return Path(path)


def _write_document(path: Path, payload: dict[str, Any], *, option: str) -> None:
    """One JSON document at ``path``, atomically (replacing only a JSON file)."""
    from rtml_cli.fsutil import JSON_OUTPUT, atomic_path

    with atomic_path(path, JSON_OUTPUT, option=option) as tmp:
        tmp.write_text(json.dumps(_jsonable(payload), indent=2) + "\n")


def finish(
    doc: Any,
    fmt: OutputFormat,
    render: Callable[[], None],
    *,
    kind: str,
    rows: Rows | Callable[[dict[str, Any]], list[dict[str, Any]]] = Rows(),  # noqa: B008
    quiet: bool = False,
) -> None:
    """End a reporting command, the one way.

    ``doc`` is the command's JSON-ready result (or a function returning it). ``--format
    json`` prints it as one document (with ``kind`` and ``schema``); ``csv`` and
    ``markdown`` print its rows (see :class:`Rows`, or a function of the document that
    returns them); ``table`` calls ``render()`` to print
    the tables for people. ``--quiet`` silences only the tables: a document asked for with
    ``--format`` is always printed.
    """
    if fmt is OutputFormat.table and _RUN["save_json"] is None:
        if not quiet:
            render()
        return
    payload = document(kind, _jsonable(doc() if callable(doc) else doc))
    if _RUN["save_json"] is not None:
        _write_document(_RUN["save_json"], payload, option="--save-json")
        _RUN["saved"] = True
    if fmt is OutputFormat.table:
        if not quiet:
            render()
        return
    if fmt is OutputFormat.json:
        emit_json(payload)
        return
    flat = records(payload, rows) if isinstance(rows, Rows) else [_flat(r) for r in rows(payload)]
    if fmt is OutputFormat.csv:
        emit_csv(flat)
    else:
        emit_markdown(flat, title=kind)


def records(doc: dict[str, Any], rows: Rows) -> list[dict[str, Any]]:
    """The flat rows of a JSON-ready document (see :class:`Rows`)."""
    if not rows.tables:
        return [_flat({k: v for k, v in doc.items() if k not in ("kind", "schema", "command")})]
    out: list[dict[str, Any]] = []
    for key in rows.tables:
        for item in doc.get(key) or []:
            row = _flat(item if isinstance(item, dict) else {key: item})
            out.append({"table": key, **row} if len(rows.tables) > 1 else row)
    return out


_MAX_JOINED = 10


def _flat(obj: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat(value, f"{name}."))
        elif isinstance(value, list):
            if len(value) <= _MAX_JOINED and not any(isinstance(v, (dict, list)) for v in value):
                out[name] = ";".join(_csv_value(v) for v in value)
        else:
            out[name] = value
    return out


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(dict.fromkeys(key for row in rows for key in row))


def _csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def emit_csv(rows: list[dict[str, Any]]) -> None:
    """Rows as CSV on stdout: a header, then one line per row (empty cell = no value)."""
    import csv

    columns = _columns(rows)
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_csv_value(row.get(c)) for c in columns])
    sys.stdout.flush()


def emit_markdown(rows: list[dict[str, Any]], *, title: str) -> None:
    """Rows as GitHub-flavoured Markdown tables on stdout, one per ``table`` group."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row.get("table"), []).append(
            {k: v for k, v in row.items() if k != "table"}
        )
    lines: list[str] = []
    if not groups:
        lines = [f"### {title}", "", "(no rows)"]
    for name, group in groups.items():
        if lines:
            lines.append("")
        lines += [f"### {title}" + (f": {name}" if name else ""), ""]
        columns = _columns(group)
        lines.append("| " + " | ".join(_md(c) for c in columns) + " |")
        lines.append("|" + "|".join(_md_rule(group, c) for c in columns) + "|")
        lines += ["| " + " | ".join(_md(fmt_cell(r.get(c))) for c in columns) + " |" for r in group]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_rule(group: list[dict[str, Any]], column: str) -> str:
    values = [r.get(column) for r in group if r.get(column) is not None]
    numeric = bool(values) and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    )
    return "---:" if numeric else "---"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return _jsonable(value.tolist())
    return value


def emit_json(payload: Any) -> None:
    """Write one JSON document to stdout (NaN/inf become null)."""
    sys.stdout.write(json.dumps(_jsonable(payload), indent=2) + "\n")
    sys.stdout.flush()


def fmt_cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        if value != 0 and (abs(value) >= 1e6 or abs(value) < 10**-digits):
            return f"{value:.{digits - 1}e}"
        return (
            f"{value:,.{digits}f}".rstrip("0").rstrip(".")
            if "." in f"{value:.{digits}f}"
            else f"{value}"
        )
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def make_table(
    title: str | None,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    caption: str | None = None,
    digits: int = 4,
    key_columns: int = 1,
):
    """A Rich table that fits the console; numbers are right-aligned, formatted with
    ``fmt_cell``, and never cut.

    The first ``key_columns`` columns name the row (strategy, policy, schedule…) and are
    never wrapped. See :class:`FitTable` for what happens when the console is narrow.
    """
    rows = [list(r) for r in rows]
    table = FitTable(
        title=title,
        caption=caption,
        title_justify="left",
        caption_justify="left",
        key_columns=min(key_columns, max(len(columns) - 1, 0)),
    )
    for idx, name in enumerate(columns):
        numeric = bool(rows) and all(
            isinstance(r[idx], (int, float)) and not isinstance(r[idx], bool)
            for r in rows
            if r[idx] is not None
        )
        table.add_column(
            name,
            justify="right" if numeric else "left",
            no_wrap=idx < table.key_columns,
            overflow="fold",
        )
    for row in rows:
        table.add_row(*(fmt_cell(v, digits) for v in row))
    return table


def _cell_text(value: Any) -> Any:
    from rich.text import Text

    return value if isinstance(value, Text) else Text.from_markup(str(value))


def _widths(column: Any) -> tuple[int, int]:
    """(minimum, maximum) content width of a column: a cell is only ever broken between
    words, so the minimum is its longest word (its longest line when ``no_wrap``)."""
    from rich.cells import cell_len

    lo = hi = 1
    for cell in (column.header, *column._cells):
        for line in _cell_text(cell).plain.splitlines() or [""]:
            width = cell_len(line)
            hi = max(hi, width)
            words = [width] if column.no_wrap else [cell_len(w) for w in line.split()]
            lo = max(lo, *words, 1)
    lo = max(lo, column.min_width or 0)
    return lo, max(hi, lo)


def _table_class():
    from rich.table import Table

    class _FitTable(Table):
        """A table that never cuts a number: see :func:`_layout`."""

        def __init__(self, *args: Any, key_columns: int = 1, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.key_columns = key_columns
            self.vertical = True

        def __rich_console__(self, console: Any, options: Any) -> Any:
            parts = _layout(self, options.max_width)
            if parts == [self]:
                yield from super().__rich_console__(console, options)
                return
            for index, part in enumerate(parts):
                if index:
                    yield ""
                yield part

    return _FitTable


def _overhead(table: Any, n_columns: int) -> int:
    """The cells a table's borders and padding take beside its content."""
    pad = table.padding[1] + table.padding[3]
    edges = 2 if table.box and table.show_edge else 0
    seps = n_columns - 1 if table.box else 0
    return edges + seps + pad * n_columns


def _layout(table: Any, width: int) -> list[Any]:
    """The renderables that show ``table`` within ``width`` cells, numbers whole.

    When the table is too wide, text columns wrap between words (never below their longest
    word); when even that is too wide, the columns are split over several tables that each
    repeat the key columns; when a single column does not fit beside the keys, every row
    becomes a small two-column table (a vertical layout)."""
    n = len(table.columns)
    spans = [_widths(c) for c in table.columns]
    if n == 0 or sum(hi for _, hi in spans) + _overhead(table, n) <= width:
        return [table]
    every = list(range(n))
    texts = {"title": table.title, "caption": table.caption}
    if sum(lo for lo, _ in spans) + _overhead(table, n) <= width:
        return [_part(table, every, _share(spans, width - _overhead(table, n)), **texts)]
    keys = every[: table.key_columns]
    rest = every[table.key_columns :]

    def fits(indexes: list[int], limit: int) -> bool:
        return sum(spans[i][0] for i in indexes) + _overhead(table, len(indexes)) <= limit

    if not all(fits(keys + [idx], width) for idx in rest):
        if table.vertical:
            return _vertical(table)
        return [_part(table, every, [lo for lo, _ in spans], **texts)]

    def split(limit: int) -> list[list[int]]:
        groups: list[list[int]] = []
        for idx in rest:
            if groups and fits(keys + groups[-1] + [idx], limit):
                groups[-1].append(idx)
            else:
                groups.append([idx])
        return groups

    groups = split(width)
    # As few tables as the width allows, as evenly filled as possible: the narrowest limit
    # that still needs no more tables.
    low, high = 0, width
    while low < high:
        mid = (low + high) // 2
        if all(fits(keys + [idx], mid) for idx in rest) and len(split(mid)) <= len(groups):
            high = mid
        else:
            low = mid + 1
    groups = split(high)
    parts = []
    for number, group in enumerate(groups):
        indexes = keys + group
        title = table.title
        if len(groups) > 1:
            title = f"{title or ''} ({number + 1}/{len(groups)})".lstrip()
        caption = table.caption if number == len(groups) - 1 else None
        room = width - _overhead(table, len(indexes))
        widths = _share([spans[i] for i in indexes], room)
        parts.append(_part(table, indexes, widths, title=title, caption=caption))
    return parts


def _part(table: Any, indexes: list[int], widths: list[int], **texts: Any) -> Any:
    """A plain Rich table of some of ``table``'s columns, at fixed widths."""
    from rich.table import Table

    part = Table(
        title=texts.get("title"),
        caption=texts.get("caption"),
        title_justify=table.title_justify,
        caption_justify=table.caption_justify,
        box=table.box,
        show_edge=table.show_edge,
        padding=table.padding,
        show_header=table.show_header,
    )
    for idx, width in zip(indexes, widths, strict=True):
        column = table.columns[idx]
        part.add_column(
            column.header,
            justify=column.justify,
            no_wrap=column.no_wrap,
            overflow=column.overflow,
            width=width,
        )
    for row in range(table.row_count):
        part.add_row(*(table.columns[idx]._cells[row] for idx in indexes))
    return part


def _vertical(table: Any) -> list[Any]:
    """One two-column table (column name, value) per row, titled by the row's keys."""
    out: list[Any] = []
    if table.title:
        out.append(_cell_text(table.title))
    keys = table.columns[: table.key_columns]
    for row in range(table.row_count):
        name = " / ".join(_cell_text(c._cells[row]).plain for c in keys)
        small = make_table(name, ["", ""], [], key_columns=0)
        small.vertical = False
        small.show_header = False
        small.columns[1].justify = "right"
        for column in table.columns[table.key_columns :]:
            small.add_row(column.header, column._cells[row])
        out.append(small)
    if table.caption:
        out.append(_cell_text(table.caption))
    return out


def _share(spans: list[tuple[int, int]], room: int) -> list[int]:
    """Column widths within ``room`` cells: each column its minimum, then the spare cells to
    the columns that need fewest to show whole (so as few cells as possible wrap), the rest
    shared out in proportion to how much wider each would like to be."""
    widths = [lo for lo, _ in spans]
    spare = room - sum(widths)
    for index in sorted(range(len(spans)), key=lambda i: spans[i][1] - spans[i][0]):
        want = spans[index][1] - widths[index]
        if 0 < want <= spare:
            widths[index] += want
            spare -= want
    wants = [hi - w for w, (_, hi) in zip(widths, spans, strict=True)]
    total = sum(wants)
    if spare <= 0 or total == 0:
        return widths
    given = [spare * want // total for want in wants]
    leftover = spare - sum(given)
    for index in sorted(range(len(spans)), key=lambda i: wants[i] - given[i], reverse=True):
        if leftover and wants[index] > given[index]:
            given[index] += 1
            leftover -= 1
    return [w + g for w, g in zip(widths, given, strict=True)]


def FitTable(*args: Any, **kwargs: Any) -> Any:  # noqa: N802 - a lazy class
    """A Rich table that fits the console width (rich is imported lazily)."""
    global _FIT_TABLE
    if _FIT_TABLE is None:
        _FIT_TABLE = _table_class()
    return _FIT_TABLE(*args, **kwargs)


_FIT_TABLE: Any = None


def print_tables(*renderables: Any) -> None:
    """Print Rich renderables (tables, text) to stdout, separated by blank lines."""
    console = stdout_console()
    for idx, item in enumerate(renderables):
        if idx:
            console.print()
        console.print(item)


def progress(quiet: bool = False, *, transient: bool = True):
    """A Rich progress display on stderr (disabled when quiet or not a terminal)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(quiet),
        transient=transient,
        disable=quiet,
    )
