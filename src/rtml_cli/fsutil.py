"""File-system safety: atomic outputs, a lock per output root, Parquet input discovery.

A reader must never mistake a half-written output for a good one, so every
output is written under a temporary name in the destination directory, flushed,
fsynced and then renamed into place (``os.replace`` is atomic on POSIX).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
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


def writable_dir(path: Path) -> Path:
    """Create ``path`` (and its parents) if needed; ``OutputError`` unless rtml can write there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create directory {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write to {path}: permission denied")
    return path


def _prepare_parent(target: Path) -> Path:
    return writable_dir(target.parent)


# ---------------------------------------------------------------------------- output paths
OUTPUT_MARKER = ".rtml-output.json"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class OutputKind:
    """What a command writes at an output path, and so what it may replace there.

    A file output replaces an existing file only when that file already holds this kind
    (Parquet, PNG, JSON: checked by content, not by name). A directory output replaces
    an empty directory, or one that carries rtml's marker (``.rtml-output.json``) from an
    earlier run of the same command. Everything else is refused before any work is done:
    an output option must never delete a user's directory or file.
    """

    what: str
    content: str = ""  # file outputs: "parquet", "png", "json", "html" or "markdown"
    directory: bool = False
    command: str = ""  # directory outputs: the command whose marker an existing dir must carry
    legacy_marker: str = ""  # a file that identified this command's directories before the marker

    def holds(self, path: Path) -> bool:
        """True when the existing ``path`` is an output of this kind that may be replaced."""
        if self.directory:
            if not path.is_dir():
                return False
            marker = read_output_marker(path)
            if marker is not None:
                return marker.get("command") == self.command
            if self.legacy_marker and (path / self.legacy_marker).exists():
                return True
            return not any(path.iterdir())
        if not path.is_file():
            return False
        if path.stat().st_size == 0:
            return True  # an empty file holds nothing to lose
        if self.content == "parquet":
            return is_parquet_file(path)
        if self.content == "png":
            with open(path, "rb") as handle:
                return handle.read(len(PNG_MAGIC)) == PNG_MAGIC
        if self.content == "json":
            try:
                json.loads(path.read_text())
            except (OSError, ValueError):
                return False
            return True
        if self.content == "html":
            return _head(path).lstrip().lower().startswith((b"<!doctype html", b"<html"))
        if self.content == "markdown":
            # any Markdown file may be a user's notes: only a report rtml wrote is replaced
            return _head(path).startswith(REPORT_MARKDOWN_MARKER.encode())
        return False


def _head(path: Path, size: int = 512) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(size)
    except OSError:
        return b""


#: The first line of every Markdown report rtml writes (so a later run may replace it).
REPORT_MARKDOWN_MARKER = "<!-- rtml report -->"
PARQUET_OUTPUT = OutputKind("a Parquet file", content="parquet")
PNG_OUTPUT = OutputKind("a PNG image", content="png")
JSON_OUTPUT = OutputKind("a JSON file", content="json")
HTML_OUTPUT = OutputKind("an HTML file", content="html")
MARKDOWN_REPORT_OUTPUT = OutputKind(
    "a Markdown report written by `rtml report`", content="markdown"
)


def directory_output(command: str, *, legacy_marker: str = "") -> OutputKind:
    """The kind of a directory written as a whole by ``rtml COMMAND``."""
    return OutputKind(
        f"an `rtml {command}` output directory",
        directory=True,
        command=command,
        legacy_marker=legacy_marker,
    )


def read_output_marker(directory: Path) -> dict | None:
    """The marker rtml leaves in a directory it wrote, or None (no marker, or unreadable)."""
    try:
        marker = json.loads((directory / OUTPUT_MARKER).read_text())
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def write_output_marker(directory: Path, command: str) -> None:
    """Mark ``directory`` as written by ``rtml COMMAND`` (so a later run may replace it)."""
    from rtml_cli import __version__

    (directory / OUTPUT_MARKER).write_text(
        json.dumps({"command": command, "rtml": __version__}, sort_keys=True) + "\n"
    )


def check_output(
    target: str | os.PathLike[str], kind: OutputKind, *, option: str = "output"
) -> Path:
    """Refuse an output path that would lose data; call before the work, not after.

    Raises ``OutputError`` (exit 73) with one line saying what to do. Nothing is touched.
    """
    target = Path(target)
    label = f"{option} {target}"
    if target.is_symlink():
        raise OutputError(
            f"{label} is a symbolic link: rtml never writes through a link; give the real path"
        )
    with contextlib.suppress(OSError):
        resolved, cwd = target.resolve(), Path.cwd().resolve()
        if resolved == cwd or resolved in cwd.parents:
            raise OutputError(
                f"{label} is the current directory or contains it: give a new path to write to"
            )
    if not target.exists():
        if target.parent.exists() and not target.parent.is_dir():
            raise OutputError(f"cannot create directory {target.parent} for {label}: it is a file")
        return target
    if kind.directory and not target.is_dir():
        raise OutputError(
            f"{label} is a file, not {kind.what}: give a new directory path or remove the file"
        )
    if not kind.directory and target.is_dir():
        raise OutputError(
            f"{label} is a directory: give the path of {kind.what} to write (it is never "
            "replaced by a file)"
        )
    if kind.holds(target):
        return target
    marker = read_output_marker(target) if kind.directory else None
    if marker is not None:
        raise OutputError(
            f"{label} holds the output of `rtml {marker.get('command')}`, not of "
            f"`rtml {kind.command}`: give another path; nothing was touched"
        )
    if kind.directory:
        raise OutputError(
            f"{label} is a non-empty directory rtml did not write (no {OUTPUT_MARKER} from "
            f"`rtml {kind.command}`): give a new or empty directory; nothing was touched"
        )
    raise OutputError(
        f"{label} exists and is not {kind.what}: rtml replaces only its own kind of file; "
        "give a new path or remove it yourself"
    )


def _swap_in(tmp: Path, target: Path) -> None:
    """Put the directory ``tmp`` at ``target``; an existing ``target`` ends up at ``tmp``."""
    if not target.exists():
        os.rename(tmp, target)
        return
    if exchange_paths(tmp, target):
        return
    aside = tmp.with_name(tmp.name + ".old")
    os.rename(target, aside)
    os.rename(tmp, target)
    os.rename(aside, tmp)


@contextlib.contextmanager
def atomic_path(
    target: str | os.PathLike[str],
    kind: OutputKind,
    *,
    option: str = "output",
    suffix: str = "",
) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; publish it atomically on success.

    ``kind`` says what is written and so what an existing ``target`` may be (see
    :class:`OutputKind`); anything else is refused up front and again at publish time.
    A directory is written at the yielded path (``tmp.mkdir()``); rtml's marker is
    added to it. On any exception (or a kill) the temporary is removed or left under a
    hidden ``.tmp-`` name that no reader looks for; ``target`` is untouched.
    """
    target = Path(target)
    check_output(target, kind, option=option)
    parent = _prepare_parent(target)
    try:
        holder = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=parent))
    except OSError as exc:
        raise OutputError(f"cannot write to {parent}: {exc.strerror or exc}") from exc
    tmp = holder / (target.name + suffix)
    try:
        yield tmp
        if not tmp.exists():
            raise OutputError(f"nothing was written for {target}")
        if kind.directory:
            if not tmp.is_dir():
                raise OutputError(f"{target} must be written as a directory")
            write_output_marker(tmp, kind.command)
        _fsync_tree(tmp)
        check_output(target, kind, option=option)  # nothing appeared there meanwhile
        if kind.directory:
            _swap_in(tmp, target)
        else:
            os.replace(tmp, target)
        fsync_dir(parent)
    except OSError as exc:
        raise OutputError(f"cannot write {target}: {exc.strerror or exc}") from exc
    finally:
        shutil.rmtree(holder, ignore_errors=True)


def write_json_atomic(target: str | os.PathLike[str], payload: object) -> None:
    """Write ``payload`` as indented JSON, atomically (replaces only a JSON file)."""
    with atomic_path(target, JSON_OUTPUT) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_json(path: str | os.PathLike[str], payload: object, *, default=None) -> None:
    """Write ``payload`` as indented JSON (keys in insertion order) at ``path``, plainly.

    For a file inside a directory that is itself published atomically as a whole
    (``atomic_path`` of a directory, a precompute run): the directory's rename is the
    atomic step, so a second temporary file per JSON file would buy nothing. Anywhere
    else use :func:`write_json_atomic`.
    """
    Path(path).write_text(json.dumps(payload, indent=2, default=default) + "\n")


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def exchange_paths(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux ``renameat2(RENAME_EXCHANGE)``); False if unsupported."""
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        return False
    result = func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def switch_symlink(link: Path, points_to: str) -> None:
    """Point ``link`` at ``points_to`` atomically (make a new link, rename over the old)."""
    tmp = link.parent / f".tmp-{link.name}-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    os.symlink(points_to, tmp)
    try:
        os.replace(tmp, link)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(link.parent)


@contextlib.contextmanager
def root_lock(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold an exclusive lock on an output root for the duration of a run.

    Uses ``flock`` so the kernel releases the lock when the holder dies, even
    by ``kill -9``: a stale lock file never blocks the next run. A second
    concurrent run fails at once with ``TemporaryFailure`` naming the holder.
    """
    root = Path(root)
    lock_path = root / ".lock"
    try:
        root.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link planted at ROOT/.lock must not make rtml truncate its target
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
        handle = os.fdopen(fd, "r+")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise OutputError(
                f"{lock_path} is a symbolic link: rtml will not write through it; remove it"
            ) from exc
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


_SCRATCH_PREFIX = ".rtml-scratch-"
_SCRATCH_RE = re.compile(r"^\.rtml-scratch-[a-z]+-(\d+)-[A-Za-z0-9_]+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_scratch(parent: Path) -> list[str]:
    """Remove scratch directories in ``parent`` whose rtml process is gone (killed runs)."""
    removed = []
    with contextlib.suppress(OSError):
        for child in sorted(parent.iterdir()):
            match = _SCRATCH_RE.match(child.name)
            if match and not child.is_symlink() and not _pid_alive(int(match.group(1))):
                shutil.rmtree(child, ignore_errors=True)
                removed.append(child.name)
    return removed


@contextlib.contextmanager
def scratch_dir(purpose: str, parent: Path | None = None) -> Iterator[Path]:
    """A private working directory (DuckDB spill, retrain work) removed when done.

    It lives in ``parent`` (default: ``$TMPDIR/rtml-UID``, a directory rtml owns) under a
    name carrying this process's id, so one left by a ``kill -9`` or SIGTERM is removed at
    the start of the next run that uses the same parent.
    """
    if parent is None:
        parent = Path(tempfile.gettempdir()) / f"rtml-{os.getuid()}"
        try:
            parent.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot create scratch directory {parent}: {exc.strerror}") from exc
    clean_stale_scratch(parent)
    try:
        path = Path(
            tempfile.mkdtemp(prefix=f"{_SCRATCH_PREFIX}{purpose}-{os.getpid()}-", dir=parent)
        )
    except OSError as exc:
        raise OutputError(f"cannot write scratch files to {parent}: {exc.strerror}") from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


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
