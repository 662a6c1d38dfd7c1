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
from datetime import date, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer


class OutputFormat(str, Enum):
    table = "table"
    json = "json"


FormatOption = Annotated[
    OutputFormat,
    typer.Option(
        "--format",
        "-f",
        help="table: Rich tables for people; json: one JSON document on stdout for scripts.",
        case_sensitive=False,
    ),
]
QuietOption = Annotated[
    bool,
    typer.Option("--quiet", "-q", help="Print nothing on success (errors still go to stderr)."),
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


def finish(
    doc: Any,
    fmt: OutputFormat,
    render: Callable[[], None],
    *,
    quiet: bool = False,
    quiet_json: bool = True,
) -> None:
    """End a reporting command, the one way: ``--format json`` prints ``doc`` (a JSON-ready
    value, or a function returning one) as one document on stdout; otherwise ``render()``
    prints the tables for people, unless ``quiet``.

    ``quiet_json``: whether ``--quiet --format json`` still prints the document. Commands
    answer that differently today (kept as they were by the #14 restructure; issue #13
    makes it one rule).
    """
    if fmt is OutputFormat.json:
        if quiet and not quiet_json:
            return
        emit_json(doc() if callable(doc) else doc)
        return
    if not quiet:
        render()


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
):
    """A Rich table; numbers are right-aligned and formatted with ``fmt_cell``."""
    from rich.table import Table

    rows = [list(r) for r in rows]
    table = Table(title=title, caption=caption, title_justify="left", caption_justify="left")
    for idx, name in enumerate(columns):
        numeric = bool(rows) and all(
            isinstance(r[idx], (int, float)) and not isinstance(r[idx], bool)
            for r in rows
            if r[idx] is not None
        )
        table.add_column(name, justify="right" if numeric else "left")
    for row in rows:
        table.add_row(*(fmt_cell(v, digits) for v in row))
    return table


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
