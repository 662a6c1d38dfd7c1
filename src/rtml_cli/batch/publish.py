"""Publishing a run directory safely: temp dir → atomic rename → ``latest`` switch → prune.

Readers only ever follow ``ROOT/latest``, which is switched by an atomic rename of a
fresh symlink after the run directory is complete and fsynced, so a run killed at any
point leaves the previous ``latest`` intact. A published run directory is never
rewritten: rebuilding an as-of (``--force``) publishes a new directory
``<run-id>-rNNN`` and switches ``latest`` to it, so a reader that resolved ``latest``
moments ago keeps reading one complete run.

Only entries rtml made are ever deleted: run directories whose name is a run id and
whose manifest says so, and temporaries whose name rtml gives them. Symbolic links
planted inside ROOT (``runs/``, ``latest`` pointing elsewhere, ``.lock``) are refused,
never followed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from datetime import datetime
from pathlib import Path

from rtml_cli.errors import OutputError, UsageError
from rtml_cli.fsutil import fsync_dir, switch_symlink, writable_dir
from rtml_cli.timeutil import future_limit

TMP_PREFIX = ".tmp-"
_RUN_ID = r"\d{8}T\d{6}\.\d{6}Z(?:-r\d{3,})?"  # -r002 … -r999, -r1000 …
RUN_ID_RE = re.compile(rf"^{_RUN_ID}$")
# temporaries rtml leaves in runs/ when killed: a run being written, a run being pruned,
# DuckDB's spill directory; anything else under .tmp- is not ours and is left alone
_STALE_RE = re.compile(
    rf"^\.tmp-(?:{_RUN_ID}-[A-Za-z0-9_]+|prune-{_RUN_ID}|spill-\d+-[A-Za-z0-9_]+)$"
)
_STALE_LINK_RE = re.compile(r"^\.tmp-latest-\d+$")


def run_key(name: str) -> tuple[str, int]:
    """Sort key of a run id: its as-of, then the rebuild number (``-r002`` → 2)."""
    base, _, rebuild = name.partition("-r")
    return base, int(rebuild) if rebuild else 1


def rebuild_id(base: str, existing: list[str]) -> str:
    """The id of the next rebuild of as-of ``base`` given the runs that exist."""
    numbers = [run_key(name)[1] for name in existing if run_key(name)[0] == base]
    return f"{base}-r{max(numbers, default=1) + 1:03d}" if numbers else base


def run_as_of(name: str) -> datetime:
    from datetime import timezone

    return datetime.strptime(run_key(name)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=timezone.utc)


def check_root(root: Path) -> None:
    """Refuse a ROOT whose rtml entries are not what rtml made (planted links, a dir as latest)."""
    runs, latest, lock = root / "runs", root / "latest", root / ".lock"
    if runs.is_symlink():
        raise OutputError(
            f"{runs} is a symbolic link: rtml writes and deletes only inside a real runs/ "
            "directory; replace the link with a directory"
        )
    if latest.exists() or latest.is_symlink():
        if not latest.is_symlink():
            raise OutputError(
                f"{latest} is not rtml's link to a run (it is a "
                f"{'directory' if latest.is_dir() else 'file'}): move it away, then rerun"
            )
        target = os.readlink(latest)
        if not re.fullmatch(rf"runs/{_RUN_ID}", target):
            raise OutputError(
                f"{latest} points to {target}, not to a run under runs/: remove the link, then rerun"
            )
    if lock.is_symlink():
        raise OutputError(f"{lock} is a symbolic link: remove it, then rerun")


def check_root_output(root: Path) -> None:
    """ROOT must be a directory (or new). rtml only adds ``runs/``, ``latest`` and ``.lock``
    to it and deletes only what it made, so a ROOT shared with other files is safe."""
    if root.exists() and not root.is_dir():
        raise OutputError(f"--out {root} is a file: give a directory for the precompute runs")


def runs_dir(root: Path) -> Path:
    check_root(root)
    return writable_dir(root / "runs")


def _remove(path: Path) -> None:
    """Delete a directory rtml made, never through a link."""
    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def clean_stale(root: Path) -> list[str]:
    """Remove temporaries left by killed runs (call under the root lock); returns their names."""
    removed = []
    runs = root / "runs"
    for child in sorted(runs.iterdir()) if runs.is_dir() else []:
        if _STALE_RE.match(child.name):
            _remove(child)
            removed.append(child.name)
    for child in sorted(root.iterdir()):
        if (_STALE_LINK_RE.match(child.name) and child.is_symlink()) or _STALE_RE.match(child.name):
            _remove(child)
            removed.append(child.name)
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def new_tmp_dir(runs: Path, run_id: str) -> Path:
    """A private directory to write a run into; its mode follows the umask once published."""
    try:
        path = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{run_id}-", dir=runs))
        # mkdtemp makes 0700 whatever the umask: a serving account must read the run
        os.chmod(path, 0o777 & ~_umask())
    except OSError as exc:
        raise OutputError(f"cannot write to {runs}: {exc.strerror}") from exc
    return path


def spill_dir(root: Path) -> Path:
    """DuckDB's spill directory for a run under ROOT (removed after the run, or as stale)."""
    try:
        return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}spill-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise OutputError(f"cannot write to {root}: {exc.strerror}") from exc


def fsync_tree(path: Path) -> None:
    for child in sorted(path.rglob("*")):
        if child.is_file():
            with open(child, "rb") as handle:
                os.fsync(handle.fileno())
    for child in sorted(p for p in path.rglob("*") if p.is_dir()):
        fsync_dir(child)
    fsync_dir(path)


def publish_dir(tmp: Path, target: Path) -> None:
    """Move a complete, fsynced ``tmp`` directory to the new name ``target`` atomically."""
    fsync_tree(tmp)
    if target.exists() or target.is_symlink():
        raise OutputError(
            f"cannot publish {target}: it exists (a published run is never rewritten)"
        )
    try:
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
    name = Path(os.readlink(link)).name
    return name if RUN_ID_RE.match(name) else None


def is_rtml_run(path: Path) -> bool:
    """A real directory named as a run id whose manifest rtml wrote for that run."""
    if not RUN_ID_RE.match(path.name) or path.is_symlink() or not path.is_dir():
        return False
    try:
        st = os.lstat(path / "manifest.json")
        if not stat.S_ISREG(st.st_mode):
            return False
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and manifest.get("run_id") == path.name


def published_runs(runs: Path) -> list[str]:
    """rtml's runs in ``runs/``, oldest first (other entries are never touched)."""
    return sorted((p.name for p in runs.iterdir() if is_rtml_run(p)), key=run_key)


def newest_at_or_before(root: Path, when: datetime) -> Path | None:
    """The run of ROOT with the newest as-of at or before ``when`` (None: no such run; a
    path that is itself a run directory, or not a ROOT, is not looked into)."""
    runs = Path(root) / "runs"
    if (Path(root) / "manifest.json").exists() or not runs.is_dir():
        return None
    candidates = [n for n in published_runs(runs) if run_as_of(n) <= when]
    return runs / candidates[-1] if candidates else None


def newest_publishable(runs: Path, now: datetime) -> str | None:
    """The newest run whose as-of is not in the future: the one ``latest`` should show."""
    candidates = [n for n in published_runs(runs) if run_as_of(n) <= future_limit(now)]
    return candidates[-1] if candidates else None


def prune(root: Path, keep: int, *, protect: set[str] | None = None, now: datetime) -> list[str]:
    """Delete all but the ``keep`` newest runs; returns the names deleted.

    Never deleted: the run ``latest`` points to, the runs in ``protect`` (the run
    ``latest`` pointed to before this run switched it, which readers may still hold),
    runs with an as-of in the future (a person must look at those), the base runs any
    kept delta run reads files from, and anything that is not an rtml run.
    """
    if keep < 1:
        raise UsageError(f"--keep {keep} must be at least 1")
    runs = root / "runs"
    names = [n for n in published_runs(runs) if run_as_of(n) <= future_limit(now)]
    current = latest_run_id(root)
    keep_set = set(names[-keep:]) | ({current} if current else set()) | (protect or set())
    keep_set |= {n for n in future_runs(runs, now)}
    keep_set |= bases_of(runs, keep_set)
    removed = []
    for name in names:
        if name not in keep_set:
            # rename first so a kill mid-delete leaves a hidden temporary, not a half run
            doomed = runs / f"{TMP_PREFIX}prune-{name}"
            os.rename(runs / name, doomed)
            shutil.rmtree(doomed, ignore_errors=True)
            removed.append(name)
    return removed


def bases_of(runs: Path, names: set[str]) -> set[str]:
    """The runs the delta runs among ``names`` read files from (a delta names its base run
    and the run whose index it maps; both are self-contained or themselves kept)."""
    from rtml_cli.batch.artifacts import referenced_runs

    out: set[str] = set()
    todo = set(names)
    while todo:  # the closure: a delta's index run may itself be a delta of the base
        name = todo.pop()
        try:
            manifest = json.loads((runs / name / "manifest.json").read_text())
        except (OSError, ValueError):
            continue
        refs = {ref for ref in referenced_runs(manifest) if RUN_ID_RE.match(ref)}
        todo |= refs - out - set(names)
        out |= refs
    return out


def future_runs(runs: Path, now: datetime) -> list[str]:
    return [n for n in published_runs(runs) if run_as_of(n) > future_limit(now)]


def sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def checksums(
    run_dir: Path, names: list[str], *, stats: dict[str, os.stat_result] | None = None
) -> dict[str, dict]:
    """Each file's size and sha256; ``stats`` gets each file's ``os.stat`` taken before it
    was hashed (what a verified stamp may record, if the file still has it afterwards)."""
    out = {}
    for name in names:
        path = run_dir / name
        st = path.stat()
        out[name] = {"bytes": st.st_size, "sha256": sha256_file(path)}
        if stats is not None:
            stats[name] = st
    return out
