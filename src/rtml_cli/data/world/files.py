"""Finding and reading a sample world's ``world.json`` (the one way every command does it)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def find_world(
    events: str | os.PathLike[str], world: str | os.PathLike[str] | None = None
) -> Path | None:
    """The ``world.json`` for an event log: ``world`` when given (a file or a world
    directory; missing is ``InputMissing``), else the one beside ``events`` (a file's
    directory, or the directory itself), else ``None`` (a real log has no ground truth)."""
    from rtml_cli.errors import InputMissing

    if world is not None:
        path = Path(world)
        path = path / "world.json" if path.is_dir() else path
        if not path.is_file():
            raise InputMissing(f"--world {world} does not exist (give a sample world's world.json)")
        return path
    base = Path(events)
    guess = (base if base.is_dir() else base.parent) / "world.json"
    return guess if guess.is_file() else None


def read_world(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sample world's ground truth (``world.json``, or the directory holding it).

    A missing file is ``InputMissing``; unreadable JSON or anything but an object is
    ``DataError``. Callers check the keys they need (e.g. ``bursts``, ``shift_time``)."""
    from rtml_cli.errors import DataError, InputMissing

    path = Path(path)
    path = path / "world.json" if path.is_dir() else path
    if not path.is_file():
        raise InputMissing(f"world file not found: {path} (give a sample world's world.json)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"cannot read {path}: not readable JSON ({exc}); give a sample world's world.json"
        ) from None
    if not isinstance(doc, dict):
        raise DataError(f"{path} is not a sample world's world.json (not a JSON object)")
    return doc
