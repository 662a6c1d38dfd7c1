"""File-system safety: atomic outputs, a lock per output root, Parquet input discovery.

A reader must never mistake a half-written output for a good one, so every
output is written under a temporary name in the destination directory, flushed,
fsynced and then renamed into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

from rtml_cli.errors import DataError, InputMissing, OutputError, TemporaryFailure
from rtml_cli.timeutil import utc_now

PARQUET_MAGIC = b"PAR1"


def fsync_dir(path: Path) -> None:
    """Flush a directory entry so a rename inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    if path.is_file():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
        return
    for child in path.rglob("*"):
        if child.is_file():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
    fsync_dir(path)


def _prepare_parent(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {parent}: {exc.strerror}") from exc
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write to {parent}: permission denied")
    return parent


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str], *, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path next to ``target``; publish it atomically on success.

    Works for a file or a directory written at the yielded path. On any
    exception (or a kill) the temporary is removed or left under a hidden
    ``.tmp-`` name that no reader looks for; ``target`` is untouched.
    """
    target = Path(target)
    parent = _prepare_parent(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=parent)) / (target.name + suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target}")
        _fsync_tree(tmp)
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
        fsync_dir(parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def write_json_atomic(target: str | os.PathLike[str], payload: object) -> None:
    """Write ``payload`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def switch_symlink(link: Path, points_to: str) -> None:
    """Point ``link`` at ``points_to`` atomically (make a new link, rename over the old)."""
    tmp = link.parent / f".tmp-{link.name}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(points_to, tmp)
    os.replace(tmp, link)
    fsync_dir(link.parent)


@contextlib.contextmanager
def root_lock(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on an output root for the duration of a run.

    Uses ``flock`` so the kernel releases the lock when the holder dies, even
    by ``kill -9``: a stale lock file never blocks the next run. A second
    concurrent run fails at once with ``TemporaryFailure`` naming the holder.
    """
    root = Path(root)
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock_path = root / ".lock"
        handle = open(lock_path, "a+")  # noqa: SIM115 - held open for the whole run
    except OSError as exc:
        raise OutputError(f"cannot write to {root}: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown process"
            raise TemporaryFailure(
                f"{root} is locked by another run ({holder}); retry when it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(
            f"pid {os.getpid()} on {socket.gethostname()} since {utc_now():%Y-%m-%dT%H:%M:%SZ}"
        )
        handle.flush()
        yield lock_path
    finally:
        handle.close()


def is_parquet_file(path: Path) -> bool:
    try:
        with open(path, "rb") as handle:
            head = handle.read(4)
            if head != PARQUET_MAGIC:
                return False
            handle.seek(-4, os.SEEK_END)
            return handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False


def parquet_files(source: str | os.PathLike[str], *, what: str = "input") -> list[Path]:
    """Resolve a Parquet file, a glob, or a directory of partitions into a sorted file list.

    Raises ``InputMissing`` when nothing matches and ``DataError`` when a
    matched file is empty or not Parquet.
    """
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
        if not files:
            raise InputMissing(f"{what} directory {text} contains no .parquet files")
    elif path.exists():  # an existing path is a path, even with [ ] * ? in its name
        files = [path]
    elif any(ch in text for ch in "*?["):
        files = sorted(Path(p) for p in glob.glob(text, recursive=True) if Path(p).is_file())
        if not files:
            raise InputMissing(f"{what} glob {text} matches no file")
    else:
        raise InputMissing(f"{what} {text} does not exist")
    for file in files:
        if file.stat().st_size == 0:
            raise DataError(f"{what} {file} is empty (0 bytes)")
        if not is_parquet_file(file):
            raise DataError(f"{what} {file} is not a Parquet file")
    return files
