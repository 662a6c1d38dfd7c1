"""Reading a published precompute run: the batch inputs Stages 1-3 serve from.

Layout (written by ``rtml precompute``; see CONTRIBUTING.md)::

    ROOT/latest -> runs/<run-id>/
      manifest.json, item_index.parquet, item_features.parquet, user_features.parquet,
      item_embeddings.npy, items.ann, item_neighbors.parquet, batch_recs.parquet,
      popular.parquet, session_items.parquet, item_sessions.parquet,
      sequential_rules.parquet, state/

A delta run (``precompute --warm-start``) holds the changed users' rows under ``delta/`` and
references its base run's files (``"run"`` in their manifest entry); :func:`load_artifacts`
overlays the two into one run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, InputMissing

FORMAT_VERSION = 1
RUN_FILES = (
    "manifest.json",
    "item_index.parquet",
    "item_features.parquet",
    "user_features.parquet",
    "item_embeddings.npy",
    "items.ann",
    "item_neighbors.parquet",
    "batch_recs.parquet",
    "popular.parquet",
)
OUTPUT_FILES = tuple(name for name in RUN_FILES if name != "manifest.json")
# the session-based strategies' tables (issue #11; ``batch.sessions``): verified and loaded
# when the manifest lists them — runs written before they existed serve everything else
SESSION_FILES = ("session_items.parquet", "item_sessions.parquet", "sequential_rules.parquet")
STATE_PREFIX = "state/"  # warm-start state files, checksummed in the manifest since #15
# A delta run (``precompute --warm-start``, issue #10) holds only what changed since its base
# run: ``delta/<table>`` has the rows of the users who changed since the base, and the
# manifest's entry for ``<table>`` names the base run that holds the rest (``"run"``).
# Readers overlay the delta rows on the base's by user_id (:func:`overlay_users`).
DELTA_PREFIX = "delta/"
USER_TABLES = (
    "batch_recs.parquet",
    "user_features.parquet",
    "state/user_totals.parquet",
    "state/user_items.parquet",
)
# A delta run's session tables (``batch.sessions_delta``): the changed sessions, items and
# rules under delta/, the base's four files referenced (:func:`overlay_session_tables`)
SESSION_RULE_COUNTS = "state/sequential_rule_counts.parquet"
DELTA_SESSION_FILES = (
    "delta/session_items.parquet",
    "delta/session_removed.parquet",
    "delta/item_sessions.parquet",
    "delta/item_idf.parquet",
    "delta/sequential_rules.parquet",
    f"delta/{SESSION_RULE_COUNTS}",
)


def _checked_names(outputs: dict[str, Any]) -> list[str]:
    """The files to verify: every serving output, the session tables, the warm-start state and
    a delta run's delta files the manifest lists (runs written before they existed list none)."""
    return [
        *OUTPUT_FILES,
        *(n for n in SESSION_FILES if n in outputs),
        *sorted(n for n in outputs if str(n).startswith((STATE_PREFIX, DELTA_PREFIX))),
    ]


def output_path(run_dir: Path, name: str, entry: Any) -> Path:
    """Where an output of the run in ``run_dir`` lives: in the run, or — for a file a delta
    run references instead of copying — in the run its manifest entry names (same runs/)."""
    ref = entry.get("run") if isinstance(entry, dict) else None
    return run_dir.parent / ref / name if isinstance(ref, str) else run_dir / name


def referenced_runs(manifest: dict[str, Any]) -> set[str]:
    """The runs a delta run reads files from (empty for a self-contained run): prune keeps them."""
    outputs = manifest.get("outputs") if isinstance(manifest, dict) else None
    if not isinstance(outputs, dict):
        return set()
    return {
        e["run"] for e in outputs.values() if isinstance(e, dict) and isinstance(e.get("run"), str)
    }


def is_delta(manifest: dict[str, Any]) -> bool:
    return isinstance(manifest.get("delta"), dict)


def overlay_users(base: Any, delta: Any) -> Any:
    """A user table of a delta run: the base's rows of users the delta does not hold, then the
    delta's rows (the users who changed since the base), in the base's columns."""
    import polars as pl

    kept = base.filter(~pl.col("user_id").is_in(delta["user_id"].unique().implode()))
    return pl.concat([kept, delta.select(base.columns).cast(base.schema)])


def has_session_delta(outputs: dict[str, Any]) -> bool:
    """Whether a run's manifest lists session deltas (a delta written before them holds its
    session tables whole, like a self-contained run)."""
    return all(name in outputs for name in DELTA_SESSION_FILES)


def base_list_ranks(
    items: Any, sessions: np.ndarray, removed: np.ndarray, held: Any, sample: int
) -> np.ndarray:
    """The ranks a delta gives the base's ``item_sessions`` rows (``items``: their item_id
    Series, ordered by item then rank; ``sessions``: their base session_idx): 0 for a row
    that is gone, else the item's sessions the delta holds (``held``: item_id, k) plus the
    row's place among the item's base rows of sessions not ``removed`` (a mask by session)."""
    import polars as pl

    n = len(sessions)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    group = items.rle_id().to_numpy()
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    firsts = pl.DataFrame({"item_id": items.gather(starts)})
    held = held.select(pl.col("item_id").cast(items.dtype), pl.col("k").cast(pl.Int64))
    k = firsts.join(held, on="item_id", how="left", maintain_order="left")["k"]
    lead = k.fill_null(0).to_numpy()
    keep = ~removed[sessions]
    seen = np.cumsum(keep)
    before = seen[starts] - keep[starts]
    rank = lead[group] + seen - before[group]
    return np.where(keep & (rank <= sample), rank, 0)


def overlay_session_tables(
    base: dict[str, Any], delta: dict[str, Any], sample: int, *, ordered: bool = False
) -> dict[str, Any]:
    """A delta run's session tables from its base's (``session_items``, ``item_sessions``,
    ``rules`` frames, any subset of their columns with ``session_idx`` / ``item_id``) and its
    delta files' (the same names plus ``removed`` and ``idf``).

    The delta's sessions are the most recent (``0..T-1``); the base's sessions it does not
    remove follow in their order. An item's list is the delta's rows (its most recent
    sessions) then its base rows of sessions not removed, cut at ``sample``
    (:func:`base_list_ranks`), all with the delta's idf. The delta's rules replace their
    source items' rules. ``ordered``: rows in the self-contained files' order (readers that
    index them need not)."""
    import polars as pl

    b_si, b_is = base["session_items"], base["item_sessions"]
    d_si, d_is = delta["session_items"], delta["item_sessions"]
    n_base = int(b_si["session_idx"].max()) + 1 if b_si.height else 0
    n_delta = int(d_si["session_idx"].max()) + 1 if d_si.height else 0
    keep = np.ones(n_base, dtype=bool)
    keep[delta["removed"]["session_idx"].to_numpy()] = False
    new = np.full(n_base, -1, dtype=np.int64)
    new[keep] = n_delta + np.arange(int(keep.sum()))

    def renumber(frame: Any) -> Any:
        idx = new[frame["session_idx"].to_numpy()]
        return frame.with_columns(pl.Series("session_idx", idx).cast(pl.Int32)).filter(
            pl.col("session_idx") >= 0
        )

    # base rows are ordered by session_idx and the numbering is monotone: still ordered
    session_items = pl.concat([d_si.select(b_si.columns).cast(b_si.schema), renumber(b_si)])
    held = d_is.group_by("item_id").agg(pl.len().alias("k"))
    rank = base_list_ranks(
        b_is["item_id"], b_is["session_idx"].to_numpy().astype(np.int64), ~keep, held, sample
    )
    kept = renumber(b_is.with_columns(pl.Series("rank", rank).cast(pl.Int32)).filter(rank > 0))
    if "idf" in kept.columns:
        idf = delta["idf"].select("item_id", pl.col("idf").alias("_idf"))
        kept = (
            kept.join(idf, on="item_id", how="left", maintain_order="left")
            .with_columns(pl.col("_idf").alias("idf"))
            .drop("_idf")
        )
    item_sessions = pl.concat([kept, d_is.select(b_is.columns).cast(b_is.schema)])
    b_rules, d_rules = base["rules"], delta["rules"]
    rules = pl.concat(
        [
            b_rules.filter(~pl.col("item_id").is_in(d_rules["item_id"].unique().implode())),
            d_rules.select(b_rules.columns).cast(b_rules.schema),
        ]
    )
    if ordered:
        item_sessions = item_sessions.sort("item_id", "rank")
        rules = rules.sort("item_id", "rank")
    return {"session_items": session_items, "item_sessions": item_sessions, "rules": rules}


def recency_days(as_of: datetime) -> Any:
    """``recency_days`` of the user features at ``as_of`` (the same expression a full run uses)."""
    import polars as pl

    return ((pl.lit(as_of) - pl.col("last_seen")).dt.total_microseconds() / 86_400e6).alias(
        "recency_days"
    )


VERIFIED_STAMP = ".verified.json"  # by precompute at publish and readers: files that matched


def run_id_for(as_of: datetime) -> str:
    """Directory name of the run for an as-of time (UTC, microsecond resolution)."""
    return as_of.strftime("%Y%m%dT%H%M%S.%fZ")


def resolve_run_dir(path: str | Path) -> Path:
    """ROOT (follows ``latest``) or a run directory → the run directory, symlinks resolved.

    ``latest`` is read exactly once (one ``realpath``); callers read every file from the
    returned path, so a ``latest`` switched (or a run pruned) meanwhile cannot mix two runs.
    """
    path = Path(path)
    try:
        real = path.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise InputMissing(f"artifacts {path} do not exist: run `rtml precompute` first") from None
    except (OSError, RuntimeError) as exc:
        raise InputMissing(f"artifacts {path} cannot be resolved: {exc}") from None
    if (real / "manifest.json").exists():
        return real
    latest = real / "latest"
    if latest.is_symlink() or latest.exists():
        try:
            return latest.resolve(strict=True)
        except (OSError, RuntimeError):
            raise InputMissing(
                f"{path}/latest points to a run that no longer exists: run `rtml precompute "
                f"EVENTS --out {path}` to publish a new one"
            ) from None
    raise InputMissing(
        f"{path} holds no published precompute run (no latest/ and no manifest.json): "
        "run `rtml precompute EVENTS --out ROOT` first"
    )


def _damaged(what: str, problems: list[str], manifest: Any, run_dir: Path) -> DataError:
    """One line naming the first problem (the rest in ``problems``) and how to rebuild."""
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    return DataError(
        f"{what} is damaged: {problems[0]}{more}; {_rerun(manifest, run_dir)}",
        problems=problems if len(problems) > 1 else None,
    )


def _rerun(manifest: dict[str, Any] | None = None, run_dir: Path | None = None) -> str:
    """What to do about a damaged run: rebuild it (the run's own as-of and root when known)."""
    as_of = manifest.get("as_of") if isinstance(manifest, dict) else None
    at = f" --as-of {as_of}" if isinstance(as_of, str) else ""
    root = run_dir.parent.parent if run_dir is not None and run_dir.parent.name == "runs" else None
    return f"rebuild it with `rtml precompute EVENTS --out {root or 'ROOT'}{at} --force`"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _manifest_problems(manifest: Any) -> list[str]:
    """Every missing or mistyped key a reader relies on (empty when the manifest is usable)."""
    if not isinstance(manifest, dict):
        return [f"the manifest must be a JSON object, not {type(manifest).__name__}"]
    problems = []
    as_of = manifest.get("as_of")
    if as_of is None:
        problems.append("'as_of' is missing")
    else:
        try:
            parsed = datetime.fromisoformat(as_of) if isinstance(as_of, str) else None
        except ValueError:
            parsed = None
        if parsed is None or parsed.tzinfo is None:
            problems.append(f"'as_of' must be an ISO 8601 time with a zone, got {as_of!r}")
    params = manifest.get("params")
    if not isinstance(params, dict):
        problems.append("'params' is missing" if params is None else "'params' must be an object")
    elif not _is_int(params.get("dim")) or params["dim"] < 1:
        problems.append(f"'params.dim' must be a positive integer, got {params.get('dim')!r}")
    outputs = manifest.get("outputs")
    if not isinstance(outputs, dict):
        problems.append(
            "'outputs' is missing"
            if outputs is None
            else f"'outputs' must be an object of file -> {{bytes, sha256}}, got "
            f"{type(outputs).__name__}"
        )
        return problems
    for name in _checked_names(outputs):
        entry = outputs.get(name)
        if not isinstance(entry, dict):
            problems.append(f"'outputs.{name}' is missing")
            continue
        if not _is_int(entry.get("bytes")) or entry["bytes"] < 0:
            problems.append(f"'outputs.{name}.bytes' must be a non-negative integer")
        digest = entry.get("sha256")
        if not (
            isinstance(digest, str)
            and len(digest) == 64
            and all(c in "0123456789abcdef" for c in digest)
        ):
            problems.append(f"'outputs.{name}.sha256' must be 64 hex digits")
        ref = entry.get("run")
        if ref is not None and not (isinstance(ref, str) and _is_run_id(ref)):
            problems.append(f"'outputs.{name}.run' must be a run id, got {ref!r}")
    return problems


def _is_run_id(name: str) -> bool:
    from rtml_cli.batch.publish import RUN_ID_RE

    return bool(RUN_ID_RE.match(name))


def read_manifest(run_dir: Path) -> dict[str, Any]:
    """The run's manifest, validated: ``DataError`` naming the key when one is missing or wrong."""
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except FileNotFoundError:
        if any((run_dir / name).exists() for name in OUTPUT_FILES):
            # a run directory whose manifest was lost is a damaged run, not a missing input
            raise DataError(
                f"precompute run {run_dir} is damaged: its manifest.json is missing; "
                f"{_rerun(None, run_dir)}"
            ) from None
        raise InputMissing(f"{run_dir} has no manifest.json") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{run_dir}/manifest.json is unreadable: {exc}") from None
    version = manifest.get("format_version") if isinstance(manifest, dict) else None
    if version != FORMAT_VERSION:
        raise DataError(
            f"{run_dir} was written by an incompatible rtml (artifacts format {version!r}, "
            f"this rtml reads {FORMAT_VERSION}): rerun `rtml precompute`"
        )
    problems = _manifest_problems(manifest)
    if problems:
        raise _damaged(f"{run_dir}/manifest.json", problems, manifest, run_dir)
    return manifest


# --- verification against the manifest -------------------------------------------------------


def _identity(st: os.stat_result) -> list[int]:
    """What changes whenever a file's bytes can have changed (ctime cannot be set by users)."""
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def read_stamp(run_dir: Path) -> dict[str, Any]:
    try:
        stamp = json.loads((run_dir / VERIFIED_STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def write_stamp(run_dir: Path, stamp: dict[str, Any]) -> None:
    """Record the verified files; a read-only run directory just gets verified every time."""
    tmp = run_dir / f".tmp{VERIFIED_STAMP}-{os.getpid()}-{threading.get_ident()}"
    try:
        tmp.write_text(json.dumps(stamp, sort_keys=True) + "\n")
        os.replace(tmp, run_dir / VERIFIED_STAMP)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink()


def writer_stamp(
    run_dir: Path,
    manifest: dict[str, Any],
    hashed: dict[str, os.stat_result],
    inherited: dict[str, Any],
) -> dict[str, Any]:
    """The stamp a writer may record for the run it is about to publish: each file it
    hashed itself whose stat is still the one it had when hashed (``hashed``), and each
    file it references from another run whose entry in that run's stamp (``inherited``,
    written when the reader verified it) has this manifest's digest. A reader re-checks
    every entry's stat against the file, so a file damaged later is hashed again."""
    outputs = manifest["outputs"]
    stamp: dict[str, Any] = {}
    for name in _checked_names(outputs):
        entry = outputs.get(name)
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("run"), str):
            known = inherited.get(name)
            if isinstance(known, dict) and known.get("sha256") == entry["sha256"]:
                stamp[name] = known
            continue
        before = hashed.get(name)
        try:
            now = os.stat(run_dir / name)
        except OSError:
            continue
        if before is not None and _identity(before) == _identity(now):
            stamp[name] = {"sha256": entry["sha256"], "stat": _identity(now)}
    return stamp


def verify_outputs(run_dir: Path, manifest: dict[str, Any], *, checksums: bool = True) -> None:
    """Check every output file against the manifest's size and sha256.

    Sizes are always checked. With ``checksums`` each file's sha256 is recomputed unless
    ``.verified.json`` records that this exact file (device, inode, size, mtime, ctime)
    already matched this manifest's digest; the stamp is (re)written after a check.
    Raises ``DataError`` naming the first bad file (``problems`` lists them all).
    """
    from rtml_cli.batch.publish import sha256_file

    outputs = manifest["outputs"]
    names = _checked_names(outputs)
    problems: list[str] = []
    stats: dict[str, os.stat_result] = {}
    for name in names:
        try:
            st = os.stat(output_path(run_dir, name, outputs[name]))
        except FileNotFoundError:
            ref = outputs[name].get("run")
            problems.append(
                f"{name} is missing"
                + (f" from run {ref}, which this delta run reads it from" if ref else "")
            )
            continue
        except OSError as exc:
            problems.append(f"{name} is unreadable: {exc.strerror}")
            continue
        expected = outputs[name]["bytes"]
        if st.st_size != expected:
            problems.append(
                f"{name} is {st.st_size:,} bytes, the manifest says {expected:,} "
                "(truncated or replaced)"
            )
        stats[name] = st
    if not problems and checksums:
        stamp = read_stamp(run_dir)
        fresh: dict[str, Any] = {}
        for name in names:
            digest = outputs[name]["sha256"]
            identity = _identity(stats[name])
            if stamp.get(name) == {"sha256": digest, "stat": identity}:
                fresh[name] = stamp[name]
                continue
            try:
                actual = sha256_file(output_path(run_dir, name, outputs[name]))
            except OSError as exc:
                problems.append(f"{name} is unreadable: {exc.strerror}")
                continue
            if actual != digest:
                problems.append(f"{name} does not match its sha256 in the manifest (corrupted)")
                continue
            fresh[name] = {"sha256": digest, "stat": identity}
        if not problems and fresh != stamp:
            write_stamp(run_dir, fresh)
    if problems:
        raise _damaged(f"precompute run {run_dir}", problems, manifest, run_dir)


def annoy_node_bytes(dim: int) -> int:
    """Bytes per node of an angular Annoy index (int32 n_descendants + 2 children, float32 v)."""
    return 12 + 4 * dim


def load_annoy(path: Path, n_items: int, dim: int, manifest: dict[str, Any] | None = None):
    """Memory-map ``items.ann``, checking its size and item count against ``n_items``/``dim``.

    The size check runs before ``AnnoyIndex.load``: Annoy trusts the file and a truncated
    one or one built for another dimension crashes the process or answers nonsense.
    """
    from annoy import AnnoyIndex

    size = path.stat().st_size
    node = annoy_node_bytes(dim)
    if size % node or size // node <= n_items:
        raise DataError(
            f"{path} is not an Annoy index of {n_items:,} items x {dim} dims ({size:,} bytes is "
            f"not a whole number of more than {n_items:,} {node}-byte nodes); {_rerun(manifest, path.parent)}"
        )
    index = AnnoyIndex(dim, "angular")
    try:
        index.load(str(path))
    except OSError as exc:
        raise DataError(f"{path} is unreadable: {exc}; {_rerun(manifest, path.parent)}") from None
    if index.get_n_items() != n_items:
        found = index.get_n_items()
        index.unload()
        raise DataError(
            f"{path} indexes {found:,} items but the run has {n_items:,} embeddings; "
            f"{_rerun(manifest, path.parent)}"
        )
    return index


@dataclass(frozen=True, eq=False)  # holds arrays: compared by identity
class SessionIndex:
    """V-SKNN's tables as CSR arrays: the kept sessions' items and each item's recent sessions.

    ``session_idx`` 0 is the most recent session, so "the N most recent" of any set of
    sessions are its N smallest indices. ``sample``: how many recent sessions per item the
    run kept (the largest useful V-SKNN ``sample_size``)."""

    session_indptr: np.ndarray  # (n_sessions + 1,) into session_items
    session_items: np.ndarray  # item_idx, ascending within a session
    item_indptr: np.ndarray  # (n_items + 1,) into item_sessions
    item_sessions: np.ndarray  # session_idx, ascending (most recent first) within an item
    idf: np.ndarray  # float32 per item_idx
    sample: int
    last_us: np.ndarray  # each session's last event, µs since the epoch (descending)

    def ended_since(self, time_us: int) -> int:
        """How many sessions ended at or after ``time_us``: they lead (0 = most recent)."""
        return len(self.last_us) - int(np.searchsorted(self._ascending_last_us, time_us))

    @cached_property
    def _ascending_last_us(self) -> np.ndarray:
        return np.ascontiguousarray(self.last_us[::-1])

    @property
    def n_sessions(self) -> int:
        return len(self.session_indptr) - 1


def _csr_indptr(rows: np.ndarray, n: int) -> np.ndarray:
    """Row pointers of a CSR matrix with ``n`` rows from its entries' sorted row numbers."""
    return np.searchsorted(rows, np.arange(n + 1), side="left").astype(np.int64)


def build_session_index(
    session_items: Any, item_sessions: Any, idx_of: Any, n_items: int, sample: int
) -> SessionIndex:
    """``SessionIndex`` from the frames of ``session_items.parquet`` (``session_idx``,
    ``last_ts``, ``item_id``) and ``item_sessions.parquet`` (``item_id``, ``session_idx``,
    ``idf``); ``idx_of`` maps an item id column to item_idx (-1: unknown, dropped)."""
    sess = session_items["session_idx"].to_numpy().astype(np.int64)
    item = idx_of(session_items["item_id"])
    n_sessions = int(sess.max()) + 1 if len(sess) else 0
    order = np.lexsort((item, sess))  # by session, then item_idx
    order = order[item[order] >= 0]
    owner = idx_of(item_sessions["item_id"])
    recent = item_sessions["session_idx"].to_numpy().astype(np.int64)
    by_item = np.lexsort((recent, owner))  # by item, most recent session first
    by_item = by_item[owner[by_item] >= 0]
    idf = np.zeros(n_items, dtype=np.float32)
    idf[owner[by_item]] = item_sessions["idf"].to_numpy()[by_item]
    last_us = np.zeros(n_sessions, dtype=np.int64)
    stamps = session_items["last_ts"].dt.epoch("us").to_numpy().astype(np.int64)
    last_us[sess] = stamps  # every row of a session holds its last event
    return SessionIndex(
        session_indptr=_csr_indptr(sess[order], n_sessions),
        session_items=item[order],
        item_indptr=_csr_indptr(owner[by_item], n_items),
        item_sessions=recent[by_item],
        idf=idf,
        sample=sample,
        last_us=last_us,
    )


def build_rule_lists(
    rules: Any, idx_of: Any, n_items: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR arrays (indptr, next item_idx, score) by item_idx, best rule first, from the frame
    of ``sequential_rules.parquet``; ``idx_of`` as in :func:`build_session_index`."""
    src, dst = idx_of(rules["item_id"]), idx_of(rules["next_id"])
    order = np.lexsort((rules["rank"].to_numpy(), src))
    order = order[(src[order] >= 0) & (dst[order] >= 0)]
    return (
        _csr_indptr(src[order], n_items),
        dst[order],
        rules["score"].to_numpy()[order].astype(np.float32),
    )


@dataclass
class Artifacts:
    """A loaded precompute run. Item rows are addressed by dense ``item_idx``."""

    run_dir: Path
    manifest: dict[str, Any]
    item_ids: np.ndarray  # original item ids; position = item_idx
    embeddings: np.ndarray  # float32 (n_items, dim)
    item_features: Any  # polars.DataFrame
    user_features: Any
    neighbors: Any  # polars.DataFrame: item_id, neighbor_id, score, rank
    batch_recs: Any  # polars.DataFrame: user_id, item_id, rank, score
    popular: Any  # polars.DataFrame: item_id, rank, score
    _index: Any = field(default=None, repr=False)
    # the Annoy index's file and how many items it holds: a delta run maps its base run's
    # index, built before the items that arrived since (they are found by vector only)
    index_path: Path | None = None
    n_indexed: int | None = None
    # the session tables (``batch.sessions``); None for runs written before they existed
    session_items: Any = None  # polars.DataFrame: session_idx, last_ts, item_id
    item_sessions: Any = None  # polars.DataFrame: item_id, session_idx, rank, idf
    rules: Any = None  # polars.DataFrame: item_id, next_id, score, rank

    @property
    def as_of(self) -> datetime:
        return datetime.fromisoformat(self.manifest["as_of"])

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def n_items(self) -> int:
        return int(self.embeddings.shape[0])

    @property
    def index(self):
        """The Annoy index, memory-mapped from ``items.ann`` by ``load_artifacts``."""
        if self._index is None:
            self._index = load_annoy(
                self.index_path or self.run_dir / "items.ann",
                self.n_indexed if self.n_indexed is not None else self.n_items,
                self.dim,
                self.manifest,
            )
        return self._index

    @cached_property
    def id_to_idx(self) -> dict[Any, int]:
        return {item_id: idx for idx, item_id in enumerate(self.item_ids.tolist())}

    def to_idx(self, item_ids) -> np.ndarray:
        """Map original ids to item_idx; unknown ids become -1."""
        lookup = self.id_to_idx
        return np.fromiter((lookup.get(i, -1) for i in item_ids), dtype=np.int64)

    @cached_property
    def popular_idx(self) -> np.ndarray:
        ordered = self.popular.sort("rank")["item_id"].to_list()
        return self.to_idx(ordered)

    @cached_property
    def neighbor_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR arrays (indptr, neighbor item_idx, score) of item-item neighbours by item_idx."""
        import polars as pl

        frame = self.neighbors.with_columns(
            pl.Series("src", self.idx_of(self.neighbors["item_id"])),
            pl.Series("dst", self.idx_of(self.neighbors["neighbor_id"])),
        ).filter((pl.col("src") >= 0) & (pl.col("dst") >= 0))
        frame = frame.sort(["src", "rank"])
        src = frame["src"].to_numpy()
        indptr = np.zeros(self.n_items + 1, dtype=np.int64)
        np.add.at(indptr, src + 1, 1)
        return (
            np.cumsum(indptr),
            frame["dst"].to_numpy().astype(np.int64),
            frame["score"].to_numpy().astype(np.float32),
        )

    def idx_of(self, ids: Any) -> np.ndarray:
        """Map a column of original ids (a polars Series) to item_idx by a join; unknown → -1.

        The vectorised form of :meth:`to_idx` for tables of millions of rows."""
        import polars as pl

        index = self._index_frame
        frame = pl.DataFrame({"item_id": ids.cast(index["item_id"].dtype, strict=False)})
        joined = frame.join(index, on="item_id", how="left", maintain_order="left")
        return joined["item_idx"].fill_null(-1).to_numpy().astype(np.int64)

    @cached_property
    def _index_frame(self) -> Any:
        import polars as pl

        return pl.DataFrame(
            {"item_id": self.item_ids, "item_idx": np.arange(self.n_items, dtype=np.int64)}
        )

    def _session_table(self, frame: Any, what: str) -> Any:
        if frame is None:
            raise DataError(
                f"precompute run {self.run_dir} has no {what} (it was written by an rtml "
                "before session-vsknn and session-rules existed): rerun `rtml precompute`"
            )
        return frame

    @cached_property
    def session_index(self) -> SessionIndex:
        """V-SKNN's tables by item_idx / session_idx (``DataError`` when the run has none)."""
        return build_session_index(
            self._session_table(self.session_items, "session tables"),
            self._session_table(self.item_sessions, "session tables"),
            self.idx_of,
            self.n_items,
            int(self.manifest["params"].get("session_sample", 0) or 0),
        )

    @cached_property
    def rule_lists(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR arrays (indptr, next item_idx, score) of the sequential rules by item_idx."""
        return build_rule_lists(
            self._session_table(self.rules, "sequential rules"), self.idx_of, self.n_items
        )

    @cached_property
    def user_recs(self) -> dict[Any, np.ndarray]:
        """user_id → item_idx of the Stage-1 list, best first."""
        frame = self.batch_recs.sort(["user_id", "rank"])
        out: dict[Any, np.ndarray] = {}
        for user_id, items in (
            frame.group_by("user_id", maintain_order=True).agg("item_id").iter_rows()
        ):
            out[user_id] = self.to_idx(items)
        return out


def load_artifacts(path: str | Path, *, checksums: bool = True) -> Artifacts:
    """Load ROOT (its ``latest`` run) or one run directory, verified; errors say what to rerun.

    Everything is read from the one directory ``resolve_run_dir`` returns, after every
    output matched the manifest (``verify_outputs``); the Annoy index is mapped here, not on
    first use, so a run pruned after loading keeps answering.
    """
    import polars as pl

    run_dir = resolve_run_dir(path)
    manifest = read_manifest(run_dir)
    verify_outputs(run_dir, manifest, checksums=checksums)
    outputs = manifest["outputs"]

    def file(name: str) -> Path:
        return output_path(run_dir, name, outputs[name])

    try:
        index_frame = pl.read_parquet(file("item_index.parquet")).sort("item_idx")
        embeddings = np.load(file("item_embeddings.npy"), allow_pickle=False)
        frames = {
            name: pl.read_parquet(file(f"{name}.parquet"))
            for name in (
                "item_features",
                "user_features",
                "item_neighbors",
                "batch_recs",
                "popular",
            )
        }
        if is_delta(manifest):
            # one consistent run: the base's user rows with the delta's on top
            for name in ("user_features", "batch_recs"):
                delta = pl.read_parquet(file(f"{DELTA_PREFIX}{name}.parquet"))
                frames[name] = overlay_users(frames[name], delta)
            as_of = datetime.fromisoformat(manifest["as_of"])
            frames["user_features"] = (
                frames["user_features"].with_columns(recency_days(as_of)).sort("user_id")
            )
        sessions = _read_session_tables(run_dir, manifest)
    except (OSError, ValueError, pl.exceptions.PolarsError) as exc:
        raise DataError(
            f"precompute run {run_dir} is unreadable: {exc}; {_rerun(manifest, run_dir)}"
        ) from None
    dim = manifest["params"]["dim"]
    n_items = index_frame.height
    problem = None
    if embeddings.ndim != 2 or embeddings.dtype.kind != "f":
        problem = f"item_embeddings.npy holds {embeddings.dtype} {embeddings.shape}, not a matrix"
    elif embeddings.shape[0] != n_items:
        problem = (
            f"{embeddings.shape[0]:,} embeddings in item_embeddings.npy for {n_items:,} items "
            "in item_index.parquet"
        )
    elif embeddings.shape[1] != dim:
        problem = f"item_embeddings.npy has {embeddings.shape[1]} dims, the manifest says {dim}"
    elif index_frame["item_idx"].to_list() != list(range(n_items)):
        problem = "item_index.parquet's item_idx is not 0..n-1"
    elif frames["item_features"].height != n_items:
        problem = (
            f"item_features.parquet has {frames['item_features'].height:,} rows for "
            f"{n_items:,} items"
        )
    if problem is not None:
        raise DataError(
            f"precompute run {run_dir} is inconsistent: {problem}; {_rerun(manifest, run_dir)}"
        )
    embeddings = embeddings.astype(np.float32, copy=False)
    n_indexed = manifest.get("index", {}).get("items", n_items)
    if not _is_int(n_indexed) or not 0 < n_indexed <= n_items:
        raise DataError(
            f"precompute run {run_dir} is inconsistent: its index holds {n_indexed!r} items "
            f"of {n_items:,}; {_rerun(manifest, run_dir)}"
        )
    return Artifacts(
        run_dir=run_dir,
        manifest=manifest,
        item_ids=index_frame["item_id"].to_numpy(),
        embeddings=embeddings,
        item_features=frames["item_features"],
        user_features=frames["user_features"],
        neighbors=frames["item_neighbors"],
        batch_recs=frames["batch_recs"],
        popular=frames["popular"],
        _index=load_annoy(file("items.ann"), n_indexed, dim, manifest),
        index_path=file("items.ann"),
        n_indexed=n_indexed,
        **sessions,
    )


def _read_session_tables(run_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """The session tables' serving columns, read now (a run pruned later keeps serving);
    none for a run whose manifest does not list them."""
    if not all(name in manifest["outputs"] for name in SESSION_FILES):
        return {}
    return session_tables(
        run_dir,
        manifest,
        columns={
            "session_items": ["session_idx", "last_ts", "item_id"],
            "item_sessions": ["item_id", "session_idx", "rank", "idf"],
            "rules": ["item_id", "next_id", "score", "rank"],
        },
    )


_SESSION_TABLES = {
    "session_items": "session_items.parquet",
    "item_sessions": "item_sessions.parquet",
    "rules": "sequential_rules.parquet",
}


def session_tables(
    run_dir: Path,
    manifest: dict[str, Any],
    *,
    columns: dict[str, list[str]] | None = None,
    ordered: bool = False,
) -> dict[str, Any]:
    """A run's session tables (``session_items``, ``item_sessions``, ``rules``) as the run
    serves them — a delta's overlaid on its base's — read without verifying (callers verify
    first); ``columns``: only these per table."""
    import polars as pl

    outputs = manifest["outputs"]
    cols = columns or {}

    def read(name: str, path: Path) -> Any:
        return pl.read_parquet(path, columns=cols.get(name))

    base = {
        key: read(key, output_path(run_dir, name, outputs[name]))
        for key, name in _SESSION_TABLES.items()
    }
    if not has_session_delta(outputs):
        return base
    delta = {key: read(key, run_dir / DELTA_PREFIX / name) for key, name in _SESSION_TABLES.items()}
    delta["removed"] = pl.read_parquet(run_dir / DELTA_PREFIX / "session_removed.parquet")
    delta["idf"] = pl.read_parquet(run_dir / DELTA_PREFIX / "item_idf.parquet")
    sample = int(manifest["params"].get("session_sample", 0) or 0)
    return overlay_session_tables(base, delta, sample, ordered=ordered)


def session_rule_counts(run_dir: Path, manifest: dict[str, Any]) -> Any:
    """A run's rule counts (``item_id, next_id, weight``, ordered): a delta's are its base's
    plus the counts added since (integers: exactly a self-contained run's)."""
    import polars as pl

    outputs = manifest["outputs"]
    counts = pl.read_parquet(
        output_path(run_dir, SESSION_RULE_COUNTS, outputs[SESSION_RULE_COUNTS])
    )
    if not has_session_delta(outputs):
        return counts
    added = pl.read_parquet(run_dir / DELTA_PREFIX / SESSION_RULE_COUNTS)
    return (
        pl.concat([counts, added.select(counts.columns).cast(counts.schema)])
        .group_by("item_id", "next_id")
        .agg(pl.col("weight").sum())
        .sort("item_id", "next_id")
    )
