"""Publishing a run directory safely: temp dir → atomic rename → ``latest`` switch → prune.

Readers only ever follow ``ROOT/latest``, which is switched by an atomic
rename of a fresh symlink after the run directory is complete and fsynced, so a
run killed at any point leaves the previous ``latest`` intact. Rebuilding an
existing run (``--force``) swaps the directories with ``renameat2(RENAME_EXCHANGE)``
so even the run ``latest`` points to is never missing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from rtml_cli.errors import OutputError, UsageError
from rtml_cli.fsutil import fsync_dir, switch_symlink

TMP_PREFIX = ".tmp-"
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def runs_dir(root: Path) -> Path:
    path = root / "runs"
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise OutputError(f"cannot write to {path}: permission denied")
    return path


def clean_stale(runs: Path) -> list[str]:
    """Remove temporaries left by killed runs (call under the root lock)."""
    removed = []
    for child in runs.iterdir():
        if child.name.startswith(TMP_PREFIX):
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child.name)
    return removed


def new_tmp_dir(runs: Path, run_id: str) -> Path:
    try:
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{run_id}-", dir=runs))
    except OSError as exc:
        raise OutputError(f"cannot write to {runs}: {exc.strerror}") from exc


def fsync_tree(path: Path) -> None:
    for child in sorted(path.rglob("*")):
        if child.is_file():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
    for child in sorted(p for p in path.rglob("*") if p.is_dir()):
        fsync_dir(child)
    fsync_dir(path)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False when unsupported."""
    libc_name = ctypes.util.find_library("c")
    if not libc_name:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        return False
    result = func(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a complete, fsynced ``tmp`` directory to ``target`` atomically."""
    fsync_tree(tmp)
    try:
        if target.exists():
            if not _exchange(tmp, target):
                old = target.with_name(f"{TMP_PREFIX}old-{target.name}-{os.getpid()}")
                os.rename(target, old)
                os.rename(tmp, target)
                tmp = old
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.rename(tmp, target)
        fsync_dir(target.parent)
    except OSError as exc:
        raise OutputError(f"cannot publish {target}: {exc.strerror or exc}") from exc


def switch_latest(root: Path, run_id: str) -> None:
    try:
        switch_symlink(root / "latest", f"runs/{run_id}")
    except OSError as exc:
        raise OutputError(f"cannot switch {root}/latest: {exc.strerror or exc}") from exc


def latest_run_id(root: Path) -> str | None:
    link = root / "latest"
    if not link.is_symlink():
        return None
    return Path(os.readlink(link)).name


def published_runs(runs: Path) -> list[str]:
    return sorted(
        p.name for p in runs.iterdir() if p.is_dir() and not p.name.startswith(TMP_PREFIX)
    )


def prune(root: Path, keep: int) -> list[str]:
    """Delete all but the ``keep`` newest runs; the run ``latest`` points to is always kept."""
    if keep < 1:
        raise UsageError(f"--keep {keep} must be at least 1")
    runs = root / "runs"
    names = published_runs(runs)
    current = latest_run_id(root)
    keep_set = set(names[-keep:]) | ({current} if current else set())
    removed = []
    for name in names:
        if name not in keep_set:
            # rename first so a kill mid-delete leaves a hidden temporary, not a half run
            doomed = runs / f"{TMP_PREFIX}prune-{name}"
            os.rename(runs / name, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(name)
    return removed


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(run_dir: Path, names: list[str]) -> dict[str, dict]:
    out = {}
    for name in names:
        path = run_dir / name
        out[name] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out
