"""`rtml precompute`: the nightly batch job, safe to run from cron.

See :func:`run_precompute`. Steps, each timed with its peak memory in the
manifest: scan → features → cooccurrence → embeddings → index → neighbors →
recs → sessions → write → publish → switch → prune.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import signal
import time
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rtml_cli import __version__
from rtml_cli.batch.artifacts import (
    DELTA_PREFIX,
    DELTA_SESSION_FILES,
    FORMAT_VERSION,
    RUN_FILES,
    USER_TABLES,
    has_session_delta,
    is_delta,
    output_path,
    overlay_users,
    read_manifest,
    read_stamp,
    resolve_run_dir,
    verify_outputs,
    write_stamp,
    writer_stamp,
)
from rtml_cli.batch.sessions import (
    MAX_RULE_STEPS,
    RULE_COUNTS,
    SESSION_FILES,
    PreviousSessions,
    SessionParams,
    SessionTablesResult,
)
from rtml_cli.batch.source import CheckedFiles
from rtml_cli.errors import DataError, InputMissing, OutputError, RtmlError, UsageError
from rtml_cli.fsutil import parquet_files, root_lock, write_json

STEPS = (
    "scan",
    "features",
    "cooccurrence",
    "embeddings",
    "index",
    "neighbors",
    "recs",
    "sessions",
    "write",
    "publish",
    "switch",
    "prune",
)
DEFAULT_DIM = 64
DEFAULT_TREES = 50
DEFAULT_WINDOW = 5
DEFAULT_MAX_SESSION_LEN = 50
DEFAULT_HALF_LIFE = timedelta(days=30)
POPULAR_N = 1000
# A warm start publishes a delta run (only what changed since its base run; readers overlay
# it) and, every DEFAULT_FULL_EVERY runs counting the base, a compacted self-contained run:
# a nightly job compacts once a week, a delta chain never outgrows a week of active users.
DEFAULT_FULL_EVERY = 7
# A delta run keeps its base's Annoy index while the embeddings moved less than this: the
# mean cosine distance between each item's embedding folded into the index's basis and
# the embedding the index was built from (one day of the large world moves them ~0.01).
DEFAULT_REBUILD_THRESHOLD = 0.05
MOVE_SAMPLE = 200  # items whose exact kNN@10 before/after the move is compared
# the index run's own PPMI folded into its embeddings' basis (``embeddings.fold_in``): a
# delta's embeddings are the index's plus fold(new PPMI) - this, exact when nothing moved
INDEX_FOLD = "state/index_fold.npy"
RECALL_SAMPLE = 1000
REC_NEIGHBORS = 10  # neighbours per history item that vote in Stage-1 recs
STATE_FILES = (
    "state.json",
    "cooc.npz",
    "item_totals.parquet",
    "user_totals.parquet",
    "user_items.parquet",
)
# Test hook: SIGKILL (or with ":TERM", SIGTERM) this process when the named step starts.
KILL_AT_ENV = "RTML_TEST_KILL_AT"

ProgressCallback = Callable[[str, int, int], None]
_T = TypeVar("_T")


@dataclass
class PrecomputeResult:
    """What a run did. ``skipped`` is True when an identical run already existed."""

    run_id: str
    run_dir: Path
    as_of: datetime
    mode: str
    skipped: bool
    published: bool
    manifest: dict[str, Any]
    seconds: float
    pruned: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def rows(self) -> dict[str, int]:
        return self.manifest.get("rows", {})

    @property
    def steps(self) -> list[dict[str, Any]]:
        return self.manifest.get("steps", [])

    def summary(self) -> dict[str, Any]:
        """The manifest summary printed by ``--format json``."""
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "as_of": self.as_of.isoformat(),
            "mode": self.mode,
            "skipped": self.skipped,
            "published": self.published,
            "seconds": round(self.seconds, 3),
            "rows": self.rows,
            "index": self.manifest.get("index", {}),
            "steps": self.steps,
            "params": self.manifest.get("params", {}),
            "delta": self.manifest.get("delta"),
            "pruned": self.pruned,
            "warnings": self.warnings,
        }


class _Steps:
    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress
        self.records: list[dict[str, Any]] = []
        self._name: str | None = None
        self._start = 0.0
        self._cpu = 0.0

    def start(self, name: str) -> None:
        self._finish()
        hook = os.environ.get(KILL_AT_ENV, "")
        if hook.partition(":")[0] == name:  # "STEP" sends SIGKILL, "STEP:TERM" SIGTERM
            os.kill(os.getpid(), signal.SIGTERM if hook.endswith(":TERM") else signal.SIGKILL)
        if self.progress is not None:
            self.progress(name, STEPS.index(name), len(STEPS))
        self._name, self._start, self._cpu = name, time.perf_counter(), time.process_time()

    def _finish(self) -> None:
        if self._name is not None:
            self.records.append(
                {
                    "step": self._name,
                    "seconds": round(time.perf_counter() - self._start, 4),
                    "cpu_seconds": round(time.process_time() - self._cpu, 4),
                    "peak_rss_mb": round(peak_rss_mb(), 1),
                }
            )
            self._name = None

    def done(self) -> list[dict[str, Any]]:
        self._finish()
        if self.progress is not None:
            self.progress("done", len(STEPS), len(STEPS))
        return self.records


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _versions() -> dict[str, str]:
    from importlib.metadata import version

    import annoy  # noqa: F401
    import duckdb
    import polars
    import scipy

    return {
        "rtml": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "polars": polars.__version__,
        "duckdb": duckdb.__version__,
        "annoy": version("annoy"),
    }


@dataclass(eq=False)
class _WarmState:
    run_dir: Path
    run_id: str
    as_of: datetime
    params: dict[str, Any]
    index: Any
    cooc: Any  # the decayed counts at the run's as-of (a delta's base counts + its own)
    item_totals: Any
    item_windows: Any  # item_id + the 1d/7d/30d window counts at the run's as-of
    manifest: dict[str, Any] = field(default_factory=dict)
    # the run's session tables to continue from; None: it has none (an older rtml) or
    # they were built with other parameters, and this run builds them from every event
    sessions: PreviousSessions | None = None
    session_params: SessionParams | None = None
    # the delta chain: the self-contained run this run is a delta of (None: it is one), its
    # as-of, the counts added since it (decayed to this run's as-of) and the chain's length
    base_id: str | None = None
    base_as_of: datetime | None = None
    added: Any = None
    chain: int = 0

    def file(self, name: str) -> Path:
        return output_path(self.run_dir, name, self.manifest["outputs"][name])

    @property
    def chain_base(self) -> str:
        """The base a delta continuing from this run refers to."""
        return self.base_id or self.run_id

    @property
    def index_run(self) -> str:
        """The run whose Annoy index (and the embeddings it was built from) this run serves."""
        return self.manifest["outputs"]["items.ann"].get("run") or self.run_id

    def user_table(self, name: str, users: Any = None) -> Any:
        """The run's user table ``name`` as one table (a delta overlaid on its base, history
        weights decayed to this run's as-of); only ``users``' rows when given."""
        import polars as pl

        frame = _read_users(self.file(name), users)
        if self.base_id is not None:
            if name == "state/user_items.parquet" and self.base_as_of is not None:
                factor = _decay(self.base_as_of, self.as_of, self.params["half_life_s"])
                frame = frame.with_columns(pl.col("weight") * factor)
            frame = overlay_users(frame, _read_users(self.run_dir / (DELTA_PREFIX + name), users))
        keys = ["user_id", "item_id"] if name == "state/user_items.parquet" else ["user_id"]
        return frame.sort(keys) if users is not None or self.base_id is not None else frame

    def delta_table(self, name: str) -> Any:
        """The rows of the users who changed since the chain's base (none for a base run)."""
        import polars as pl

        if self.base_id is None:
            return pl.DataFrame(schema=pl.read_parquet_schema(self.file(name)))
        return pl.read_parquet(self.run_dir / (DELTA_PREFIX + name))

    @cached_property
    def user_totals(self) -> Any:
        return self.user_table("state/user_totals.parquet")

    @cached_property
    def user_items(self) -> Any:
        return self.user_table("state/user_items.parquet")

    @cached_property
    def batch_recs(self) -> Any:
        return self.user_table("batch_recs.parquet")

    @cached_property
    def user_features(self) -> Any:
        return self.user_table("user_features.parquet")


def _read_users(path: Path, users: Any) -> Any:
    import polars as pl

    if users is None:
        return pl.read_parquet(path)
    return pl.scan_parquet(path).filter(pl.col("user_id").is_in(users.implode())).collect()


def _decay(since: datetime, until: datetime, half_life_s: float) -> float:
    return 0.5 ** ((until - since).total_seconds() / half_life_s)


def load_warm_state(path: str | Path) -> _WarmState:
    """The previous run's state; a missing run is 66, a corrupt one 65."""
    import polars as pl

    from rtml_cli.batch.features import WINDOW_COLUMNS

    path = Path(path)
    if not path.exists():
        raise InputMissing(f"--warm-start run {path} does not exist")
    run_dir = resolve_run_dir(path)
    problem = None
    try:
        manifest = read_manifest(run_dir)
        # the same verification readers apply (sizes, checksums incl. state/): a corrupt
        # run must not be carried into a new run that looks valid
        verify_outputs(run_dir, manifest)
        state = run_dir / "state"
        outputs = manifest["outputs"]
        delta = manifest.get("delta") if is_delta(manifest) else None
        needed = [f"state/{n}" for n in STATE_FILES] + [
            "item_index.parquet",
            "item_features.parquet",
            "batch_recs.parquet",
            "user_features.parquet",
        ]
        if delta is not None:
            needed += [DELTA_PREFIX + n for n in (*USER_TABLES, "state/cooc.npz")]
        missing = [n for n in needed if n not in outputs and n != "state/state.json"]
        missing += [
            n for n in needed if n in outputs and not output_path(run_dir, n, outputs[n]).exists()
        ]
        missing += [] if (state / "state.json").exists() else ["state/state.json"]
        if missing:
            problem = f"missing {', '.join(missing)}"
        elif (problem := _state_json_problem(state / "state.json")) is None:
            meta = json.loads((state / "state.json").read_text())
            index = pl.read_parquet(run_dir / "item_index.parquet").sort("item_idx")
            cooc = _load_counts(output_path(run_dir, "state/cooc.npz", outputs["state/cooc.npz"]))
            added, base_as_of = None, None
            if delta is not None:
                # the base's counts decayed to this run's as-of, plus what was added since
                base_as_of = datetime.fromisoformat(delta["base_as_of"])
                added = _load_counts(run_dir / DELTA_PREFIX / "state" / "cooc.npz")
                factor = _decay(
                    base_as_of,
                    datetime.fromisoformat(manifest["as_of"]),
                    meta["params"]["half_life_s"],
                )
                if cooc.shape[0] > added.shape[0]:
                    problem = "the delta's counts do not cover its base's items"
                else:
                    cooc.resize(added.shape)
                    cooc = (cooc * factor + added).tocsr()
                    cooc.sort_indices()
            if problem is None and cooc.shape != (index.height, index.height):
                problem = "state does not match its item index"
            elif problem is None:
                return _WarmState(
                    manifest=manifest,
                    base_id=delta["base"] if delta is not None else None,
                    base_as_of=base_as_of,
                    added=added,
                    chain=int(delta["chain"]) if delta is not None else 0,
                    sessions=_previous_sessions(run_dir, manifest, meta),
                    session_params=SessionParams.from_params(manifest["params"]),
                    run_dir=run_dir,
                    run_id=run_dir.name,
                    as_of=datetime.fromisoformat(manifest["as_of"]),
                    params=meta["params"],
                    index=index,
                    cooc=cooc,
                    item_totals=pl.read_parquet(state / "item_totals.parquet"),
                    item_windows=pl.read_parquet(
                        run_dir / "item_features.parquet", columns=["item_id", *WINDOW_COLUMNS]
                    ),
                )
    except RtmlError as exc:
        problem = str(exc)
    except (
        OSError,
        ValueError,
        KeyError,
        TypeError,
        EOFError,
        zipfile.BadZipFile,
        pl.exceptions.PolarsError,
    ) as exc:
        text = str(exc).strip().splitlines()
        problem = f"{type(exc).__name__}: {text[0] if text else ''}"
    raise DataError(
        f"cannot warm-start from {run_dir}: {problem}; rerun without --warm-start for a full run"
    )


_STATE_PARAMS = ("dim", "window", "max_session_len", "half_life_s")


def _load_counts(path: Path) -> Any:
    import scipy.sparse as sp

    try:
        # our own handle: np.load leaks the one it opens when the zip is corrupt
        with open(path, "rb") as handle:
            return sp.load_npz(handle).tocsr()
    except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as exc:
        name = (
            "/".join(path.parts[-3:])
            if path.parent.parent.name == "delta"
            else f"state/{path.name}"
        )
        raise DataError(f"{name} is unreadable ({type(exc).__name__}: {exc})") from exc


def _previous_sessions(
    run_dir: Path, manifest: dict[str, Any], meta: dict[str, Any]
) -> PreviousSessions | None:
    """The session tables a warm start can continue from (verified with the run's outputs),
    or None when the run has none: written by an rtml before the tables existed."""
    outputs = manifest.get("outputs", {})
    listed = all(n in outputs for n in SESSION_FILES) and f"state/{RULE_COUNTS}" in outputs
    n_sessions = meta.get("training_sessions")
    if not listed or not isinstance(n_sessions, int) or isinstance(n_sessions, bool):
        return None
    return PreviousSessions(run_dir=run_dir, n_sessions=n_sessions)


def _state_json_problem(path: Path) -> str | None:
    """What is wrong with a run's ``state/state.json`` (None: nothing)."""
    try:
        meta = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return f"state/state.json is not JSON ({type(exc).__name__}: {exc})"
    params = meta.get("params") if isinstance(meta, dict) else None
    if not isinstance(params, dict):
        return "state/state.json has no params"
    lacking = [name for name in _STATE_PARAMS if not isinstance(params.get(name), int | float)]
    if lacking:
        return f"state/state.json params lack {', '.join(lacking)}"
    return None


def _check_params(**values: int | None) -> None:
    for name, value in values.items():
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} {value} must be at least 1")


def _require(value: _T | None, name: str, step: str) -> _T:
    """``value``, which the ``step`` step sets; still None means the steps ran out of order."""
    if value is None:
        raise RuntimeError(f"precompute: {name} is used before the {step} step set it")
    return value


@dataclass
class _Run:
    """One precompute run in progress: its settings, then what each step adds.

    The step functions below (``_scan`` … ``_prune``) each start their step (timing,
    progress, the ``RTML_TEST_KILL_AT`` hook) and read and fill this object, so the
    data flow between steps is visible in one place. What a step sets and a later
    step needs is read through a property (``as_of``, ``tmp_dir``) that fails loudly
    when the steps ran out of order.
    """

    # settings, resolved before the lock is taken
    root: Path
    event_files: list[Path]
    item_files: list[Path] | None
    warm: _WarmState | None
    requested_as_of: datetime | None  # --as-of; None: the last event + 1 µs
    dim: int
    window: int
    max_session_len: int
    half_life_s: float
    n_trees: int
    top_k: int
    n_neighbors: int
    seed: int
    keep: int | None
    force: bool
    steps: _Steps
    t0: float
    max_staleness: timedelta | None = None  # refuse a log whose newest event is older
    full_every: int = DEFAULT_FULL_EVERY
    rebuild_threshold: float = DEFAULT_REBUILD_THRESHOLD
    delta: bool = False  # publish a delta of the warm-start run's chain base
    # scan: the connection, the events source, the run's identity
    runs: Path = Path()
    spill: Path | None = None
    con: Any = None
    tmp: Path | None = None  # the run being written; removed at once if the run fails
    src: Any = None
    mode: str = "full"
    params: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    target: Path = Path()
    resolved_as_of: datetime | None = None  # the as-of the events were cut at
    catalogue: Any = None
    since: datetime | None = None
    # features
    index: Any = None
    n_items: int = 0
    aggregates: Any = None
    item_frame: Any = None
    user_totals: Any = None
    user_frame: Any = None
    active: Any = None
    is_active: Any = None
    # cooccurrence, embeddings, index, neighbors, recs
    counts: Any = None
    added: Any = None  # a delta: the counts added since the chain's base, at this as-of
    move: dict[str, Any] | None = None  # a delta: how far the embeddings moved
    rebuilt: bool = True  # the Annoy index was built by this run
    index_fold: Any = None  # INDEX_FOLD computed by this run (else referenced, or none)
    delta_users: int = 0  # a delta: users whose rows it holds (changed since the base)
    delta_user_ids: Any = None
    pairs_events: int = 0
    factors: Any = None
    build_s: float = 0.0
    recall: dict[str, Any] = field(default_factory=dict)
    neighbors: Any = None
    sim_top: Any = None
    popular: Any = None
    n_recs: int = 0  # Stage-1 rows, written by the recs step
    # sessions (V-SKNN tables, sequential rules)
    session_params: SessionParams = field(default_factory=SessionParams)
    sessions: SessionTablesResult | None = None
    session_delta: bool = False  # a delta's session tables as deltas of its base's
    # a delta's session tables are built in a thread on a second DuckDB connection while the
    # counts, embeddings, neighbours and Stage-1 lists are computed (they share no input but
    # the item index); the sessions step waits for them
    session_job: Future[SessionTablesResult] | None = None
    session_con: Any = None
    overlap_job: Future[float] | None = None  # a delta's kNN overlap of the move check
    # write, publish, switch
    manifest: dict[str, Any] = field(default_factory=dict)
    hashed: dict[str, Any] = field(default_factory=dict)  # os.stat of each file as hashed
    previous: str | None = None
    published: bool = False

    @property
    def as_of(self) -> datetime:
        """The run's as-of (set by ``_scan``)."""
        return _require(self.resolved_as_of, "as_of", "scan")

    @property
    def tmp_dir(self) -> Path:
        """The run directory being written (``_index`` creates it, ``_publish`` renames it)."""
        return _require(self.tmp, "the temporary run directory", "index")


@contextmanager
def small_pages() -> Iterator[None]:
    """NumPy's transparent huge pages off for the duration (restored after).

    NumPy asks the kernel for huge pages (``madvise(MADV_HUGEPAGE)``) on every array of
    4 MiB or more. With the common ``defrag=madvise`` setting the kernel then compacts
    memory synchronously at the first touch of such an array whenever free memory is
    fragmented (a host whose RAM is mostly page cache): on the benchmark box 1.2 s for one
    fresh 112 MB array against 0.05 s with small pages. Precompute allocates its large
    arrays once each (the counts, their PPMI, the fold-in), so it gains nothing from huge
    pages and lost ~5 s of a 19 s delta run to these stalls."""
    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1.x
        from numpy.core import multiarray  # type: ignore[no-redef]

    switch = getattr(multiarray, "_set_madvise_hugepage", None)
    if switch is None:  # a NumPy without the switch: leave the allocator as it is
        yield
        return
    previous = switch(False)
    try:
        yield
    finally:
        switch(previous)


def run_precompute(
    events: str | Path,
    root: str | Path,
    *,
    items: str | Path | None = None,
    as_of: datetime | None = None,
    dim: int | None = None,
    n_trees: int = DEFAULT_TREES,
    top_k: int = 50,
    n_neighbors: int = 50,
    window: int | None = None,
    max_session_len: int | None = None,
    half_life: timedelta | None = None,
    warm_start: str | Path | None = None,
    keep: int | None = None,
    seed: int = 0,
    force: bool = False,
    progress: ProgressCallback | None = None,
    sessions: SessionParams | None = None,
    max_staleness: timedelta | None = None,
    full_every: int = DEFAULT_FULL_EVERY,
    rebuild_threshold: float = DEFAULT_REBUILD_THRESHOLD,
) -> PrecomputeResult:
    """Run the batch job on ``events`` (Parquet file, glob or directory) into ``root``.

    Writes ``root/runs/<run-id>/`` (the layout in CONTRIBUTING.md, readable with
    :func:`rtml_cli.batch.artifacts.load_artifacts`), then switches
    ``root/latest`` to it. Only events strictly before ``as_of`` (default: last
    event + 1 µs) are used.

    - ``items``: optional catalogue (item_id, category, title) joined into features.
    - ``dim`` (default 64), ``window`` (5), ``max_session_len`` (50), ``half_life``
      (30 days): the co-occurrence embedding model; pairs are weighted by
      ``0.5 ** (age / half_life)``. A warm start inherits them from its run.
    - ``n_trees``: Annoy trees; the job measures recall@10 against exact cosine kNN.
    - ``top_k``: Stage-1 list length per user; ``n_neighbors``: CF neighbours per item.
    - ``warm_start``: a previous run (or ROOT): continue from its state using only
      events since its as-of (plus the slices leaving the 1d/7d/30d windows).
    - ``full_every`` (default 7): a warm start from a run of the same ROOT publishes a
      *delta run* — only the changed users' Stage-1 lists and state, the item tables, and
      references (by run id and sha256) to the rest of its chain's base run — except
      every ``full_every``-th run counting the base, which is compacted into a
      self-contained run (1: every warm start is self-contained).
    - ``rebuild_threshold`` (default 0.05): a delta run keeps the base's Annoy index unless
      the embeddings moved more than this (mean cosine distance; measured by folding the
      new counts into the index's basis and recorded under ``index.move``).
    - ``keep``: prune to the ``keep`` newest runs (never the one ``latest`` points to).
    - ``force``: rebuild even when an identical run exists (otherwise a no-op).
    - ``progress(step, done, total)``: called as each step starts.
    - ``sessions``: how the session tables of V-SKNN and the sequential rules are built
      (``batch.sessions.SessionParams``: recent sessions kept per item, rule steps, rules
      kept per item); a warm start inherits its run's, a full run uses the defaults.
    - ``max_staleness``: refuse (``StaleData``, exit 76, nothing written) when the newest
      event is older than this, so a stopped feed is noticed instead of republished.

    Returns a :class:`PrecomputeResult` with the manifest (timings and peak
    memory per step, rows processed, index recall, output checksums).
    Raises ``InputMissing`` (66), ``DataError`` (65), ``UsageError`` (2),
    ``OutputError`` (73), ``TemporaryFailure`` (75, ROOT locked) or ``StaleData`` (76).
    """
    with small_pages():
        return _run_precompute(
            events, root, items=items, as_of=as_of, dim=dim, n_trees=n_trees, top_k=top_k,
            n_neighbors=n_neighbors, window=window, max_session_len=max_session_len,
            half_life=half_life, warm_start=warm_start, keep=keep, seed=seed, force=force,
            progress=progress, sessions=sessions, max_staleness=max_staleness,
            full_every=full_every, rebuild_threshold=rebuild_threshold,
        )  # fmt: skip


def _run_precompute(
    events: str | Path,
    root: str | Path,
    *,
    items: str | Path | None,
    as_of: datetime | None,
    dim: int | None,
    n_trees: int,
    top_k: int,
    n_neighbors: int,
    window: int | None,
    max_session_len: int | None,
    half_life: timedelta | None,
    warm_start: str | Path | None,
    keep: int | None,
    seed: int,
    force: bool,
    progress: ProgressCallback | None,
    sessions: SessionParams | None,
    max_staleness: timedelta | None,
    full_every: int,
    rebuild_threshold: float,
) -> PrecomputeResult:
    from threadpoolctl import threadpool_limits

    from rtml_cli.batch import publish

    t0 = time.perf_counter()
    _check_params(dim=dim, trees=n_trees, top_k=top_k, neighbors=n_neighbors, window=window)
    _check_params(max_session_len=max_session_len, keep=keep, full_every=full_every)
    if not 0 <= rebuild_threshold <= 2:
        raise UsageError(f"--rebuild-threshold {rebuild_threshold} must be between 0 and 2")
    if half_life is not None and half_life.total_seconds() <= 0:
        raise UsageError("--half-life must be positive, e.g. 30d")
    if max_staleness is not None and max_staleness.total_seconds() <= 0:
        raise UsageError("--max-staleness must be positive, e.g. 26h")
    event_files = parquet_files(events, what="events")
    item_files = parquet_files(items, what="items") if items is not None else None
    warm = load_warm_state(warm_start) if warm_start is not None else None
    dim, window, max_session_len, half_life_s = _model_params(
        warm, dim, window, max_session_len, half_life
    )
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    root = Path(root)
    publish.check_root_output(root)
    run = _Run(
        root=root,
        event_files=event_files,
        item_files=item_files,
        warm=warm,
        requested_as_of=as_of,
        dim=dim,
        window=window,
        max_session_len=max_session_len,
        half_life_s=half_life_s,
        n_trees=n_trees,
        top_k=top_k,
        n_neighbors=n_neighbors,
        seed=seed,
        keep=keep,
        force=force,
        steps=_Steps(progress),
        t0=t0,
        session_params=_session_params(warm, sessions),
        max_staleness=max_staleness,
        full_every=full_every,
        rebuild_threshold=rebuild_threshold,
        delta=warm is not None and warm.chain + 1 < full_every and _same_runs(warm, root),
    )
    # One BLAS thread: OpenBLAS threads spin-wait, and on a busy shared box (cron hosts
    # usually are) that made the small QR/SVD calls 100x slower; it also keeps sums
    # in a fixed order, so the output is reproducible.
    with threadpool_limits(limits=1, user_api="blas"), root_lock(root):
        run.runs = publish.runs_dir(root)
        publish.clean_stale(root)
        try:
            skipped = _scan(run)
            if skipped is not None:
                return skipped
            for step in (
                _features,
                _cooccurrence,
                _embeddings,
                _index,
                _neighbors,
                _recs,
                _sessions,
            ):
                step(run)
            _write(run)
            _publish(run)
            _switch(run)
            pruned = _prune(run)
            run.manifest["steps"] = run.steps.done()
            return PrecomputeResult(
                run_id=run.run_id,
                run_dir=run.target,
                as_of=run.as_of,
                mode=run.mode,
                skipped=False,
                published=run.published,
                manifest=run.manifest,
                seconds=time.perf_counter() - t0,
                pruned=pruned,
                warnings=_future_warnings(run.runs),
            )
        finally:
            _clean_up(run)


def _same_runs(warm: _WarmState, root: Path) -> bool:
    """A delta refers to its base by run id in the same runs/: a warm start from another
    ROOT (``rtml retrain`` keeps one per model) writes a self-contained run."""
    try:
        return os.path.samefile(warm.run_dir.parent, root / "runs")
    except OSError:
        return False


def _clean_up(run: _Run) -> None:
    """Free what a run holds; the directories go first so that a second Ctrl-C arriving
    while DuckDB closes cannot leave them (the next run would remove them anyway)."""
    pending: BaseException | None = None  # a Ctrl-C or SIGTERM arriving while threads stop
    try:
        try:
            _stop_session_delta(run)  # before its directory goes
        except BaseException as exc:  # noqa: BLE001 - raised below, once the space is freed
            pending = exc
        if run.overlap_job is not None:  # (a second or so: not worth interrupting)
            with suppress(BaseException):
                run.overlap_job.exception()
        if run.tmp is not None:  # failed (disk full, bad data, Ctrl-C): free the space now
            shutil.rmtree(run.tmp, ignore_errors=True)
        if run.spill is not None:
            shutil.rmtree(run.spill, ignore_errors=True)
    finally:
        if run.con is not None:
            run.con.close()
    if pending is not None:
        raise pending


def _model_params(
    warm: _WarmState | None,
    dim: int | None,
    window: int | None,
    max_session_len: int | None,
    half_life: timedelta | None,
) -> tuple[int, int, int, float]:
    """The embedding model's parameters: a warm start inherits its run's, else defaults."""
    if warm is None:
        return (
            dim or DEFAULT_DIM,
            window or DEFAULT_WINDOW,
            max_session_len or DEFAULT_MAX_SESSION_LEN,
            (half_life or DEFAULT_HALF_LIFE).total_seconds(),
        )
    inherited = warm.params
    if dim is not None and dim != inherited["dim"]:
        raise UsageError(
            f"--dim {dim} differs from the warm-start run's dim {inherited['dim']}: "
            "drop --dim or run without --warm-start"
        )
    return (
        inherited["dim"],
        inherited["window"],
        inherited["max_session_len"],
        float(inherited["half_life_s"]),
    )


def _session_params(warm: _WarmState | None, given: SessionParams | None) -> SessionParams:
    """The session tables' parameters: as given, else the warm-start run's, else defaults."""
    if given is not None:
        if min(given.session_sample, given.rule_top, given.rule_steps) < 1 or (
            given.rule_steps > MAX_RULE_STEPS
        ):
            raise UsageError(
                "session tables need session_sample >= 1, rule_top >= 1 and "
                f"1 <= rule_steps <= {MAX_RULE_STEPS}"
            )
        return given
    if warm is not None and warm.session_params is not None:
        return warm.session_params
    return SessionParams()


def _check_staleness(last: datetime, limit: timedelta | None) -> None:
    if limit is None:
        return
    from rtml_cli.errors import StaleData
    from rtml_cli.timeutil import format_duration

    age = datetime.now(timezone.utc) - last
    if age > limit:
        hours = age.total_seconds() / 3600
        old = f"{hours:.1f} hours" if hours < 72 else f"{hours / 24:,.1f} days"
        raise StaleData(
            f"the newest event is {old} old ({last.isoformat()}), more than "
            f"--max-staleness {format_duration(limit)}: has the event feed stopped? Nothing "
            "was published"
        )


def _scan(run: _Run) -> PrecomputeResult | None:
    """Open the events up to as-of and name the run; a result when there is nothing to do."""
    from rtml_cli.batch import publish
    from rtml_cli.batch.artifacts import run_id_for
    from rtml_cli.batch.source import connect, open_events, open_items

    run.steps.start("scan")
    run.spill = publish.spill_dir(run.root)
    run.con = connect(run.spill)
    src = run.src = open_events(
        run.con, run.event_files, run.requested_as_of, checked=_checked_files(run.warm)
    )
    _check_staleness(src.last_ts, run.max_staleness)
    as_of: datetime = src.as_of
    run.resolved_as_of = as_of
    warm = run.warm
    if warm is not None and warm.as_of == as_of:
        # nothing new since the run we continue from (e.g. a cron retry): a no-op
        return PrecomputeResult(
            run_id=warm.run_id,
            run_dir=warm.run_dir,
            as_of=as_of,
            mode=str(warm.manifest.get("mode", "warm-start")),
            skipped=True,
            published=False,
            manifest=read_manifest(warm.run_dir),
            seconds=time.perf_counter() - run.t0,
        )
    if warm is not None and warm.as_of > as_of:
        raise UsageError(
            f"--warm-start run {warm.run_id} is not older than as-of {as_of.isoformat()}: "
            "warm-start from an earlier run"
        )
    base_id = run_id_for(as_of)
    run.mode = "warm-delta" if run.delta else "warm-start" if warm is not None else "full"
    run.params = {
        "dim": run.dim,
        "n_trees": run.n_trees,
        "top_k": run.top_k,
        "n_neighbors": run.n_neighbors,
        "window": run.window,
        "max_session_len": run.max_session_len,
        "half_life_s": run.half_life_s,
        "seed": run.seed,
        "popular_n": POPULAR_N,
        **run.session_params.as_params(),
        "mode": run.mode,
        "warm_start": warm.run_id if warm is not None else None,
    }
    run.inputs = {
        "events": src.inputs,
        "items": [f["sha256"] for f in map(_fingerprint, run.item_files or [])],
    }
    same_as_of = [n for n in publish.published_runs(run.runs) if publish.run_key(n)[0] == base_id]
    if same_as_of and not run.force:
        return _existing(
            run.root, same_as_of[-1], as_of, run.mode, run.inputs, run.params, run.keep, run.t0
        )
    # a rebuild is a new directory: a published run is never rewritten under a reader
    run.run_id = publish.rebuild_id(base_id, [p.name for p in run.runs.iterdir()])
    run.target = run.runs / run.run_id

    if run.item_files is not None:
        open_items(run.con, run.item_files)
        run.catalogue = run.con.sql("SELECT * FROM catalogue").pl()
    run.since = warm.as_of if warm is not None else None
    if src.rows_used == 0:
        raise DataError("no events before as-of: nothing to precompute")
    return None


def _checked_files(warm: _WarmState | None) -> CheckedFiles | None:
    """The event files (by content hash) whose rows the warm-start run checked against the
    events contract, with the digest of those checks (``source.checks_digest``): a file is
    skipped only under the same checks and column types. None for a run of another rtml
    version or one written before the digest was recorded."""
    if warm is None or warm.manifest.get("versions", {}).get("rtml") != __version__:
        return None
    checks = warm.manifest.get("event_checks")
    if not isinstance(checks, str):
        return None
    files = warm.manifest.get("inputs", {}).get("events", [])
    digests = frozenset(f["sha256"] for f in files if isinstance(f, dict) and "sha256" in f)
    return CheckedFiles(checks=checks, files=digests)


def _features(run: _Run) -> None:
    """Item index, item features and per-user totals, history and features."""
    import polars as pl

    from rtml_cli.batch import features as feat

    run.steps.start("features")
    warm, as_of = run.warm, run.as_of
    # one scan gives the aggregates and the item ids (sorted ids -> dense item_idx)
    fresh_aggs = feat.item_aggregates(
        run.con, as_of, run.since, warm.item_windows if warm is not None else None
    )
    run.index = _item_index(fresh_aggs, warm)
    run.n_items = run.index.height
    if run.dim >= run.n_items:
        raise UsageError(
            f"--dim {run.dim} must be smaller than the number of items ({run.n_items}): lower --dim"
        )
    run.aggregates = feat.merge_item_totals(
        fresh_aggs, warm.item_totals if warm is not None else None
    )
    run.item_frame = feat.item_features(run.index, run.aggregates, run.catalogue)
    fresh_users = feat.user_aggregates(run.con, run.since)
    run.active = fresh_users.select("user_id")
    # a hash-set membership test is ~4x cheaper than a semi/anti join on
    # millions of rows (the carried-over recs and features)
    run.is_active = pl.col("user_id").is_in(run.active["user_id"].implode())
    old_totals, old_items = None, None
    if warm is not None and run.delta:
        # a delta reads back only the state of the users with new events
        old_totals = warm.user_table("state/user_totals.parquet", run.active["user_id"])
        old_items = warm.user_table("state/user_items.parquet", run.active["user_id"])
    elif warm is not None:
        old_totals, old_items = warm.user_totals, warm.user_items
    run.user_totals = feat.merge_user_totals(fresh_users, old_totals)
    # per (user, item): stays in DuckDB (table _history) for the user features and the recs
    feat.user_items_table(run.con, as_of, run.half_life_s, run.since, old_items)
    run.user_frame = _user_frame(run)
    _start_session_delta(run)


def _item_index(fresh_aggs: Any, warm: _WarmState | None) -> Any:
    """item_idx -> item_id: sorted ids for a full run; a warm start appends new items."""
    import polars as pl

    if warm is None:
        index = (
            fresh_aggs.select("item_id")
            .sort("item_id")
            .with_columns(pl.int_range(0, pl.len(), dtype=pl.Int64).alias("item_idx"))
        )
    else:
        old = warm.index.select("item_id", "item_idx")
        fresh = (
            fresh_aggs.filter(pl.col("events_total") > 0)
            .select("item_id")
            .sort("item_id")
            .join(old, on="item_id", how="anti", maintain_order="left")
        )
        fresh = fresh.with_columns(
            (pl.int_range(0, pl.len(), dtype=pl.Int64) + old.height).alias("item_idx")
        )
        index = pl.concat([old, fresh.select(old.columns)])
    return index.select("item_idx", "item_id")


def _user_frame(run: _Run) -> Any:
    """Per-user features; a warm start refreshes only the users with new events."""
    import polars as pl

    from rtml_cli.batch import features as feat

    categories = run.item_frame.select("item_id", "category") if run.catalogue is not None else None
    active = run.active if run.warm is not None else None
    top = feat.user_top_categories(run.con, categories, active) if categories is not None else None
    if run.warm is None or run.delta:  # a delta's totals are the active users' only
        return feat.user_features(run.user_totals, top, run.as_of)
    # users without new events keep their features (uniform decay keeps their
    # top categories); only recency moves with the as-of
    refreshed = feat.user_features(
        run.user_totals.join(run.active, on="user_id", how="semi"), top, run.as_of
    )
    kept = run.warm.user_features.filter(~run.is_active).with_columns(
        ((pl.lit(run.as_of) - pl.col("last_seen")).dt.total_microseconds() / 86_400e6).alias(
            "recency_days"
        )
    )
    return pl.concat([kept, refreshed.select(kept.columns)]).sort("user_id")


def _cooccurrence(run: _Run) -> None:
    """Time-decayed session co-occurrence counts (a warm start decays and adds its own)."""
    from rtml_cli.batch import features as feat

    run.steps.start("cooccurrence")
    run.con.register("idx", run.index)
    try:
        counts, run.pairs_events = feat.cooccurrence_sql(
            run.con,
            run.as_of,
            run.half_life_s,
            run.since,
            run.n_items,
            window=run.window,
            max_session_len=run.max_session_len,
        )
    finally:
        run.con.unregister("idx")
    warm = run.warm
    if warm is not None and run.delta:
        factor = _decay(warm.as_of, run.as_of, run.half_life_s)
        added = counts
        if warm.added is not None:  # the previous run is a delta of the same base
            previous = warm.added
            previous.resize((run.n_items, run.n_items))
            previous.data *= factor  # in place: no second copy of the counts to fault in
            added = (previous + counts).tocsr()
            added.sort_indices()
        run.added = added
    if warm is not None:
        factor = 0.5 ** ((run.as_of - warm.as_of).total_seconds() / run.half_life_s)
        old = warm.cooc
        old.resize((run.n_items, run.n_items))
        old.data *= factor  # (the same products as old * factor, without a 14M-entry copy)
        counts = (old + counts).tocsr()
        counts.sort_indices()
    if counts.nnz == 0:
        raise DataError(
            "no session has two different items before as-of: cannot learn item "
            "embeddings (are session_ids unique per event?)"
        )
    run.counts = counts


def _embeddings(run: _Run) -> None:
    from rtml_cli.batch import embeddings as emb

    run.steps.start("embeddings")
    if run.delta and _fold_in(run):
        return
    # A warm start refactorises the decayed counts from the same random start as a
    # full run (cost O(nnz), independent of history length): seeding the range finder
    # with the previous basis converges further at every update, and the more
    # converged top-`dim` PPMI subspace ranks worse (sample world, dim 16: HR@20 0.35
    # vs 0.41; medium world, 30 chained daily updates: below never retraining).
    matrix = emb.ppmi(run.counts)
    run.factors = emb.truncated_svd(matrix, run.dim, seed=run.seed, power_iterations=2)
    # the next delta measures its move against this run's index: its counts folded into
    # its own basis, saved so that the delta does not recompute PPMI over them (a full run
    # too — 1 s of a delta's 4 s embeddings step on the large world)
    run.index_fold = emb.fold_in(matrix, run.factors.embeddings)


def _fold_in(run: _Run) -> bool:
    """A delta's embeddings: the new counts folded into the basis of the embeddings its
    Annoy index was built from. True when they moved less than the rebuild threshold
    (the index is kept and these are the run's embeddings); False: factorise afresh."""
    from rtml_cli.batch import embeddings as emb

    warm = _require(run.warm, "the warm-start run", "features")
    index_run = warm.index_run
    basis = np.load(run.runs / index_run / "item_embeddings.npy", allow_pickle=False)
    entry = warm.manifest["outputs"].get(INDEX_FOLD)
    if entry is not None:
        # copied on (30 MB on the large world), so that a delta depends on its base and its
        # index's run only, not on the delta that first folded the counts
        then = np.load(output_path(warm.run_dir, INDEX_FOLD, entry), allow_pickle=False)
        run.index_fold = then
    elif warm.base_id is None:  # the run we continue from built the index: fold its counts
        # (scaled in place by the cooccurrence step: PPMI does not change with the scale)
        then = run.index_fold = emb.fold_in(emb.ppmi(warm.cooc), basis)
    else:
        return False  # nothing to measure the move against: rebuild
    moved = emb.fold_in(emb.ppmi(run.counts), basis)
    moved[: basis.shape[0]] += basis
    moved[: then.shape[0]] -= then
    move = emb.embedding_distance(moved, basis)
    kept = move["mean_cosine_distance"] <= run.rebuild_threshold
    run.move = {"against_run": index_run, "threshold": run.rebuild_threshold, **move}
    # the kNN overlap is reported only (the distance decides): computed in a thread while
    # the neighbours and Stage-1 lists are, and added to run.move before the manifest
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtml-move")
    try:
        run.overlap_job = pool.submit(
            emb.knn_overlap, moved, basis, sample=MOVE_SAMPLE, seed=run.seed
        )
    finally:
        pool.shutdown(wait=False)
    if kept:
        run.factors = emb.Factorisation(embeddings=moved, singular_values=np.zeros(0))
        run.rebuilt = False
    else:
        run.index_fold = None
    return kept


def move_line(index: dict[str, Any]) -> str:
    """One line on how far a delta's embeddings moved and what that did to the index."""
    move = index["move"]
    verdict = (
        f"kept the index of run {index['built_by']}"
        if not index.get("rebuilt")
        else "rebuilt the index"
    )
    return (
        f"embeddings moved {move['mean_cosine_distance']:.4f} (mean cosine distance; p99 "
        f"{move['p99_cosine_distance']:.4f}, kNN@10 overlap {move['knn_overlap_at_10']:.3f}) "
        f"since the index of run {move['against_run']}, threshold {move['threshold']}: {verdict}"
    )


def _index(run: _Run) -> None:
    """The Annoy index, written straight into the run's temporary directory (a delta whose
    embeddings moved less than the threshold keeps its base's: nothing is built)."""
    from rtml_cli.batch import embeddings as emb
    from rtml_cli.batch import publish

    run.steps.start("index")
    if run.tmp is None:  # (a delta's session thread made it)
        run.tmp = publish.new_tmp_dir(run.runs, run.run_id)
    if not run.rebuilt:
        index_run = _require(run.warm, "the warm-start run", "features").index_run
        built = read_manifest(run.runs / index_run)["index"]
        run.recall = {
            "recall_at_k": built["recall_at_10"],
            "queries": built["recall_queries"],
            "search_k": built["search_k"],
        }
        return
    ann = str(run.tmp / "items.ann")
    build_start = time.perf_counter()
    emb.build_annoy(run.factors.embeddings, run.n_trees, ann, seed=run.seed)
    run.build_s = time.perf_counter() - build_start
    run.recall = emb.annoy_recall(run.factors.embeddings, ann, sample=RECALL_SAMPLE, seed=run.seed)


def _neighbors(run: _Run) -> None:
    """Item-item CF neighbours, and the top ``REC_NEIGHBORS`` of each as the recs' voters."""
    import polars as pl

    from rtml_cli.batch import embeddings as emb

    run.steps.start("neighbors")
    sim = emb.cf_similarity(run.counts)
    src_i, dst_i, score = emb.top_n_per_row(sim, run.n_neighbors)
    ids = run.index["item_id"]
    rank = np.arange(src_i.size) - np.searchsorted(src_i, src_i, side="left") + 1
    run.neighbors = pl.DataFrame(
        {
            "item_id": ids.gather(src_i),
            "neighbor_id": ids.gather(dst_i),
            "score": score.astype(np.float32),
            "rank": rank.astype(np.int32),
        }
    )
    voters = rank <= REC_NEIGHBORS
    run.sim_top = _csr(src_i[voters], dst_i[voters], score[voters], run.n_items)


def _recs(run: _Run) -> None:
    """Popular items and Stage-1 lists (a warm start refreshes active users only)."""
    import polars as pl

    from rtml_cli.batch.recs import write_batch_recs

    run.steps.start("recs")
    by_popularity = run.item_frame.sort("popularity_rank")
    popular_idx = by_popularity["item_idx"].to_numpy()
    run.popular = by_popularity.head(POPULAR_N).select(
        "item_id",
        pl.col("popularity_rank").cast(pl.Int32).alias("rank"),
        pl.col("popularity_score").cast(pl.Float32).alias("score"),
    )
    path = run.tmp_dir / "batch_recs.parquet"
    if run.warm is not None and run.delta:
        # only the users who changed since the base: today's, and the previous delta's
        path = run.tmp_dir / DELTA_PREFIX / "batch_recs.parquet"
        path.parent.mkdir(exist_ok=True)  # (the session thread may have made it)
        kept = run.warm.delta_table("batch_recs.parquet").filter(~run.is_active)
        run.n_recs = write_batch_recs(
            run.con, run.index, run.sim_top, popular_idx, run.top_k, path,
            active=run.active, kept=kept,
        )  # fmt: skip
        return
    if run.warm is None:
        run.n_recs = write_batch_recs(run.con, run.index, run.sim_top, popular_idx, run.top_k, path)
        return
    # rows stay grouped by user (kept, then refreshed users); no 15M-row re-sort
    run.n_recs = write_batch_recs(
        run.con,
        run.index,
        run.sim_top,
        popular_idx,
        run.top_k,
        path,
        active=run.active,
        kept=run.warm.batch_recs.filter(~run.is_active),
    )


def _sessions(run: _Run) -> None:
    """V-SKNN's session tables and the sequential rules, written into the run directory.

    A warm start continues from the previous run's tables when it has them (built with the
    same parameters); otherwise they are built from every event, as in a full run. A delta
    run writes only what changed since its base (``batch.sessions_delta``)."""
    from rtml_cli.batch.sessions import build_session_tables

    run.steps.start("sessions")
    if run.session_job is not None:  # a delta: wait for the thread _start_session_delta began
        run.sessions = run.session_job.result()
        run.session_delta = True
        return
    warm = run.warm
    previous = _previous_session_tables(run)
    # the previous tables are a delta's overlay: (compacting) read the overlay written out
    # whole, as build_session_tables reads a self-contained run's
    overlaid = (
        warm is not None
        and warm.base_id is not None
        and has_session_delta(warm.manifest["outputs"])
    )
    if warm is not None and previous is not None and overlaid:
        previous = _write_overlaid_sessions(run, warm, previous.n_sessions)
    run.sessions = build_session_tables(
        run.con,
        run.index,
        run.aggregates.select("item_id", "events_total"),
        run.tmp_dir,
        since=run.since,
        previous=previous,
        params=run.session_params,
    )


def _previous_session_tables(run: _Run) -> PreviousSessions | None:
    """The warm-start run's session tables, when they were built with this run's parameters."""
    warm = run.warm
    if warm is not None and warm.session_params == run.session_params:
        return warm.sessions
    return None


def _start_session_delta(run: _Run) -> None:
    """A delta whose previous run has session tables to continue as deltas: build them in a
    thread (on a second DuckDB connection) while the next steps run; the sessions step waits.
    Nothing to do for any other run (its sessions step builds the tables itself)."""
    from rtml_cli.batch import publish

    warm, previous = run.warm, _previous_session_tables(run)
    if warm is None or previous is None or not run.delta:
        return
    if warm.base_id is not None and not has_session_delta(warm.manifest["outputs"]):
        return  # the previous delta's tables are whole: sessions builds them from every event
    run.tmp = publish.new_tmp_dir(run.runs, run.run_id)
    run.session_con = run.src.cursor(run.con)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rtml-sessions")
    try:
        run.session_job = pool.submit(
            _session_delta, run, warm, previous.n_sessions, run.session_con
        )
    finally:
        pool.shutdown(wait=False)


def _stop_session_delta(run: _Run) -> None:
    """Interrupt a session thread still running (the run failed) and wait for it to end.

    DuckDB's interrupt stops only the query running when it arrives, so it is repeated
    until the thread is done (the thread may be between two queries). Its error, if any,
    is the run's error already. A Ctrl-C or SIGTERM arriving meanwhile is raised once the
    thread has stopped, so that the run ends with its exit code."""
    import duckdb

    job, con = run.session_job, run.session_con
    pending: BaseException | None = None
    try:
        while job is not None and not job.done():
            try:
                if con is not None:
                    con.interrupt()
                wait([job], timeout=0.05)
            except BaseException as exc:  # noqa: BLE001 - raised below, once the thread ends
                pending = pending or exc
    finally:
        if con is not None:
            with suppress(duckdb.Error):
                con.close()
        run.session_job = run.session_con = None
    if pending is not None:
        raise pending


def _session_delta(run: _Run, warm: _WarmState, n_sessions: int, con: Any) -> SessionTablesResult:
    from rtml_cli.batch.sessions_delta import ChainBase, PreviousDelta, build_session_delta

    base_dir = run.runs / warm.chain_base
    base = ChainBase(
        session_items=base_dir / "session_items.parquet",
        item_sessions=base_dir / "item_sessions.parquet",
        rules=base_dir / "sequential_rules.parquet",
        rule_counts=base_dir / "state" / RULE_COUNTS,
        as_of=warm.base_as_of or warm.as_of,
        rows=read_manifest(base_dir)["rows"],
    )
    return build_session_delta(
        con,
        run.index,
        run.aggregates.select("item_id", "events_total"),
        run.tmp_dir,
        since=_require(run.since, "since", "scan"),
        n_sessions=n_sessions,
        base=base,
        previous=PreviousDelta(warm.run_dir / "delta") if warm.base_id is not None else None,
        params=run.session_params,
    )


def _write_overlaid_sessions(run: _Run, warm: _WarmState, n_sessions: int) -> PreviousSessions:
    """A delta's session tables and rule counts written out whole (under the spill
    directory) for a self-contained warm start to continue from."""
    from rtml_cli.batch.artifacts import session_rule_counts, session_tables

    out = _require(run.spill, "the spill directory", "scan") / "previous-sessions"
    (out / "state").mkdir(parents=True, exist_ok=True)
    tables = session_tables(warm.run_dir, warm.manifest)
    tables["session_items"].write_parquet(out / "session_items.parquet")
    session_rule_counts(warm.run_dir, warm.manifest).write_parquet(out / "state" / RULE_COUNTS)
    return PreviousSessions(run_dir=out, n_sessions=n_sessions)


def _write(run: _Run) -> None:
    """Every output and the warm-start state into the temporary run directory."""
    import scipy.sparse as sp

    from rtml_cli.batch import features as feat
    from rtml_cli.batch import publish

    run.steps.start("write")
    tmp = run.tmp_dir
    run.index.write_parquet(tmp / "item_index.parquet")
    run.item_frame.write_parquet(tmp / "item_features.parquet")
    np.save(tmp / "item_embeddings.npy", run.factors.embeddings)
    run.neighbors.write_parquet(tmp / "item_neighbors.parquet")
    run.popular.write_parquet(tmp / "popular.parquet")
    state = tmp / "state"
    state.mkdir(exist_ok=True)  # the sessions step put the rule counts there
    run.aggregates.select("item_id", *feat.TOTALS, "first_seen", "last_seen").write_parquet(
        state / "item_totals.parquet"
    )
    if run.delta:
        _write_delta_tables(run)
    else:
        run.user_frame.write_parquet(tmp / "user_features.parquet")
        sp.save_npz(state / "cooc.npz", run.counts, compressed=False)
        run.user_totals.write_parquet(state / "user_totals.parquet")
        feat.write_user_items(run.con, state / "user_items.parquet")
    sessions = _require(run.sessions, "the session tables", "sessions")
    write_json(
        state / "state.json",
        {
            "as_of": run.as_of.isoformat(),
            "params": run.params,
            "training_sessions": sessions.n_sessions,
        },
    )
    # the warm-start state is checksummed too: a damaged state must not flow into a new run
    outputs = [n for n in RUN_FILES if n != "manifest.json"] + list(SESSION_FILES)
    outputs += [f"state/{n}" for n in (*STATE_FILES, RULE_COUNTS)]
    if run.overlap_job is not None and run.move is not None:
        run.move["knn_overlap_at_10"] = run.overlap_job.result()
    run.manifest = _manifest(run)
    if not run.delta:
        if run.index_fold is not None:
            np.save(tmp / INDEX_FOLD, run.index_fold)
            outputs.append(INDEX_FOLD)
        run.manifest["outputs"] = publish.checksums(tmp, outputs, stats=run.hashed)
        return
    warm = _require(run.warm, "the warm-start run", "features")
    # the files of the chain's base (and its index) are referenced by run id and checksum
    referenced = [*USER_TABLES, "state/cooc.npz", *([] if run.rebuilt else ["items.ann"])]
    if run.session_delta:
        referenced += [*SESSION_FILES, f"state/{RULE_COUNTS}"]
    own = [n for n in outputs if n not in referenced]
    own += [DELTA_PREFIX + n for n in (*USER_TABLES, "state/cooc.npz")]
    own += list(DELTA_SESSION_FILES) if run.session_delta else []
    if run.index_fold is not None:
        np.save(tmp / INDEX_FOLD, run.index_fold)
        own.append(INDEX_FOLD)
    run.manifest["outputs"] = publish.checksums(tmp, own, stats=run.hashed)
    for name in referenced:
        entry = dict(warm.manifest["outputs"][name])
        entry.setdefault("run", warm.run_id)
        run.manifest["outputs"][name] = entry
    base = warm.chain_base
    base_rows = read_manifest(run.runs / base)["rows"]
    run.manifest["delta"] = {
        "base": base,
        "base_as_of": (warm.base_as_of or warm.as_of).isoformat(),
        "chain": warm.chain + 1,
        "full_every": run.full_every,
        "users_changed": run.delta_users,
    }
    run.manifest["rows"].update(_delta_rows(run, base, base_rows))


def _write_delta_tables(run: _Run) -> None:
    """A delta's user tables: the rows of the users who changed since the chain's base (the
    previous delta's, decayed to this as-of, with today's active users' replaced), and the
    co-occurrence counts added since the base."""
    import polars as pl
    import scipy.sparse as sp

    from rtml_cli.batch import features as feat

    warm = _require(run.warm, "the warm-start run", "features")
    out = run.tmp_dir / DELTA_PREFIX
    (out / "state").mkdir(parents=True, exist_ok=True)
    sp.save_npz(out / "state" / "cooc.npz", run.added, compressed=False)
    factor = _decay(warm.as_of, run.as_of, run.half_life_s)
    history = feat.utc(
        run.con.sql(
            f"""SELECT user_id, item_id, weight, purchased,
                       CAST(last_ts AS TIMESTAMPTZ) AS last_ts FROM {feat.HISTORY}"""
        ).pl(),
        "last_ts",
    )
    fresh = {
        "user_features.parquet": (run.user_frame, ["user_id"]),
        "state/user_totals.parquet": (run.user_totals, ["user_id"]),
        "state/user_items.parquet": (history, ["user_id", "item_id"]),
    }
    users = 0
    for name, (frame, keys) in fresh.items():
        kept = warm.delta_table(name).filter(~run.is_active)
        if name == "state/user_items.parquet":
            kept = kept.with_columns(pl.col("weight") * factor)
        table = pl.concat([kept, frame.select(kept.columns).cast(kept.schema)]).sort(keys)
        table.write_parquet(out / name)
        if name == "user_features.parquet":
            users = table.height
            run.delta_user_ids = table["user_id"]
    run.delta_users = users


def _delta_rows(run: _Run, base: str, base_rows: dict[str, Any]) -> dict[str, int]:
    """The row counts a reader of the delta run sees (base overlaid with the delta)."""
    import polars as pl

    runs = run.runs / base
    changed = run.delta_user_ids.implode()
    in_base = (
        pl.scan_parquet(runs / "user_features.parquet")
        .filter(pl.col("user_id").is_in(changed))
        .select(pl.len())
        .collect()
        .item()
    )
    recs_in_base = (
        pl.scan_parquet(runs / "batch_recs.parquet")
        .filter(pl.col("user_id").is_in(changed))
        .select(pl.len())
        .collect()
        .item()
    )
    return {
        "users": int(base_rows["users"]) - in_base + run.delta_users,
        "batch_recs": int(base_rows["batch_recs"]) - recs_in_base + run.n_recs,
        "delta_users": run.delta_users,
        "delta_batch_recs": run.n_recs,
    }


def _manifest(run: _Run) -> dict[str, Any]:
    """The run's manifest, without its output checksums and step timings."""
    src, warm = run.src, run.warm
    return {
        "format_version": FORMAT_VERSION,
        "run_id": run.run_id,
        "as_of": run.as_of.isoformat(),
        "mode": run.mode,
        "warm_start": ({"run_id": warm.run_id, "as_of": warm.as_of.isoformat()} if warm else None),
        "created_at": datetime.now(timezone.utc).isoformat(),
        "params": run.params,
        "inputs": run.inputs,
        "input_files": src.inputs,
        "event_checks": src.checks,  # the per-row checks' digest (source.checks_digest)
        "rows": {
            "events_in_files": src.rows_in_files,
            "events_before_as_of": src.rows_used,
            "events_checked": src.rows_checked,
            "events_read_for_model": run.pairs_events,
            "items": run.n_items,
            "users": run.user_frame.height,
            "cooccurrence_nnz": int(run.counts.nnz),
            "neighbors": run.neighbors.height,
            "batch_recs": run.n_recs,
            "popular": run.popular.height,
            **(run.sessions.rows() if run.sessions is not None else {}),
        },
        "time_range": {
            "first_event": src.first_ts.isoformat(),
            "last_event": src.last_ts.isoformat(),
        },
        "index": {
            "metric": "angular",
            "n_trees": run.n_trees,
            "recall_at_10": run.recall["recall_at_k"],
            "recall_queries": run.recall["queries"],
            "search_k": run.recall["search_k"],
            "build_seconds": round(run.build_s, 3),
            "bytes": _index_bytes(run),
            "items": _index_items(run),
            "rebuilt": run.rebuilt,
            "built_by": run.run_id if run.rebuilt or warm is None else warm.index_run,
            "move": run.move,
        },
        "versions": _versions(),
    }


def _index_bytes(run: _Run) -> int:
    if run.rebuilt or run.warm is None:
        return (run.tmp_dir / "items.ann").stat().st_size
    return int(run.warm.manifest["outputs"]["items.ann"]["bytes"])


def _index_items(run: _Run) -> int:
    """How many items the run's Annoy index holds (a kept index lacks the newest items)."""
    if run.rebuilt or run.warm is None:
        return run.n_items
    built = run.warm.manifest["index"]
    return int(built.get("items", run.warm.manifest["rows"]["items"]))


def _publish(run: _Run) -> None:
    """The manifest last, then the whole directory renamed to ``runs/<run-id>``."""
    from rtml_cli.batch import publish

    run.steps.start("publish")
    run.manifest["steps"] = list(run.steps.records)
    write_json(run.tmp_dir / "manifest.json", run.manifest)
    # the writer's own verification, so that the next warm start (and the first reader)
    # does not hash the 0.7 GB again: recorded only for files unchanged since they were
    # hashed; any later change to a file changes its stat and gets it hashed again
    inherited = read_stamp(run.warm.run_dir) if run.warm is not None else {}
    write_stamp(run.tmp_dir, writer_stamp(run.tmp_dir, run.manifest, run.hashed, inherited))
    publish.publish_dir(run.tmp_dir, run.target)
    run.tmp = None


def _switch(run: _Run) -> None:
    """Point ``latest`` at the run unless a newer publishable run exists."""
    from rtml_cli.batch import publish
    from rtml_cli.timeutil import utc_now

    run.steps.start("switch")
    run.previous = publish.latest_run_id(run.root)
    run.published = publish.newest_publishable(run.runs, utc_now()) == run.run_id
    if run.published:
        publish.switch_latest(run.root, run.run_id)


def _prune(run: _Run) -> list[str]:
    from rtml_cli.batch import publish
    from rtml_cli.timeutil import utc_now

    run.steps.start("prune")
    if run.keep is None:
        return []
    # the run latest showed until now stays: a reader may have resolved it moments ago
    protect = {run.previous} if run.previous else set()
    return publish.prune(run.root, run.keep, protect=protect, now=utc_now())


def _fingerprint(path: Path) -> dict[str, Any]:
    from rtml_cli.batch.source import fingerprint

    return fingerprint(path)


def _csr(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, n: int):
    import scipy.sparse as sp

    return sp.csr_matrix((vals.astype(np.float64), (rows, cols)), shape=(n, n))


def _future_warnings(runs: Path) -> list[str]:
    from rtml_cli.batch import publish
    from rtml_cli.timeutil import utc_now

    return [
        f"run {name} has an as-of in the future: latest never points to it and --keep never "
        "deletes it; remove it by hand if it came from a bad log"
        for name in publish.future_runs(runs, utc_now())
    ]


def _existing(root, run_id, as_of, mode, inputs, params, keep, t0) -> PrecomputeResult:
    """Same as-of again: a no-op when inputs and parameters match, else ask for --force."""
    from rtml_cli.batch import publish
    from rtml_cli.timeutil import utc_now

    runs = root / "runs"
    target = runs / run_id
    try:
        manifest = read_manifest(target)
    except RtmlError:
        manifest = None
    if manifest is None or manifest.get("inputs") != inputs or manifest.get("params") != params:
        raise OutputError(
            f"run {run_id} already exists in {root} with different inputs or parameters: "
            "pass --force to rebuild it"
        )
    published = False
    previous = publish.latest_run_id(root)
    if publish.newest_publishable(runs, utc_now()) == run_id and previous != run_id:
        publish.switch_latest(root, run_id)  # finish a run killed between publish and switch
        published = True
    protect = {previous} if previous else set()
    pruned = publish.prune(root, keep, protect=protect, now=utc_now()) if keep is not None else []
    return PrecomputeResult(
        run_id=run_id,
        run_dir=target,
        as_of=as_of,
        mode=mode,
        skipped=True,
        published=published,
        manifest=manifest,
        seconds=time.perf_counter() - t0,
        pruned=pruned,
        warnings=_future_warnings(runs),
    )
