"""`rtml precompute`: the nightly batch job, safe to run from cron.

See :func:`run_precompute`. Steps, each timed with its peak memory in the
manifest: scan → features → cooccurrence → embeddings → index → neighbors →
recs → write → publish → switch → prune.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli import __version__
from rtml_cli.batch.artifacts import FORMAT_VERSION, RUN_FILES, read_manifest, resolve_run_dir
from rtml_cli.errors import DataError, InputMissing, OutputError, RtmlError, UsageError
from rtml_cli.fsutil import parquet_files, root_lock

STEPS = (
    "scan",
    "features",
    "cooccurrence",
    "embeddings",
    "index",
    "neighbors",
    "recs",
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


@dataclass
class _WarmState:
    run_dir: Path
    run_id: str
    as_of: datetime
    params: dict[str, Any]
    index: Any
    cooc: Any
    item_totals: Any
    user_totals: Any
    user_items: Any
    batch_recs: Any
    user_features: Any
    item_windows: Any  # item_id + the 1d/7d/30d window counts at the run's as-of


def load_warm_state(path: str | Path) -> _WarmState:
    """The previous run's state; a missing run is 66, a corrupt one 65."""
    import polars as pl
    import scipy.sparse as sp

    from rtml_cli.batch.features import WINDOW_COLUMNS

    path = Path(path)
    if not path.exists():
        raise InputMissing(f"--warm-start run {path} does not exist")
    run_dir = resolve_run_dir(path)
    problem = None
    try:
        manifest = read_manifest(run_dir)
        state = run_dir / "state"
        missing = [n for n in STATE_FILES if not (state / n).exists()]
        missing += [
            n
            for n in (
                "item_index.parquet",
                "item_features.parquet",
                "batch_recs.parquet",
                "user_features.parquet",
            )
            if not (run_dir / n).exists()
        ]
        if missing:
            problem = f"missing {', '.join(missing)}"
        elif (problem := _state_json_problem(state / "state.json")) is None:
            meta = json.loads((state / "state.json").read_text())
            index = pl.read_parquet(run_dir / "item_index.parquet").sort("item_idx")
            try:
                # our own handle: np.load leaks the one it opens when the zip is corrupt
                with open(state / "cooc.npz", "rb") as handle:
                    cooc = sp.load_npz(handle).tocsr()
            except (zipfile.BadZipFile, EOFError, ValueError, KeyError, OSError) as exc:
                raise DataError(
                    f"state/cooc.npz is unreadable ({type(exc).__name__}: {exc})"
                ) from exc
            if cooc.shape != (index.height, index.height):
                problem = "state does not match its item index"
            else:
                return _WarmState(
                    run_dir=run_dir,
                    run_id=run_dir.name,
                    as_of=datetime.fromisoformat(manifest["as_of"]),
                    params=meta["params"],
                    index=index,
                    cooc=cooc,
                    item_totals=pl.read_parquet(state / "item_totals.parquet"),
                    user_totals=pl.read_parquet(state / "user_totals.parquet"),
                    user_items=pl.read_parquet(state / "user_items.parquet"),
                    batch_recs=pl.read_parquet(run_dir / "batch_recs.parquet"),
                    user_features=pl.read_parquet(run_dir / "user_features.parquet"),
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
    - ``keep``: prune to the ``keep`` newest runs (never the one ``latest`` points to).
    - ``force``: rebuild even when an identical run exists (otherwise a no-op).
    - ``progress(step, done, total)``: called as each step starts.

    Returns a :class:`PrecomputeResult` with the manifest (timings and peak
    memory per step, rows processed, index recall, output checksums).
    Raises ``InputMissing`` (66), ``DataError`` (65), ``UsageError`` (2),
    ``OutputError`` (73) or ``TemporaryFailure`` (75, ROOT locked).
    """
    import polars as pl
    from threadpoolctl import threadpool_limits

    from rtml_cli.batch import embeddings as emb
    from rtml_cli.batch import features as feat
    from rtml_cli.batch import publish
    from rtml_cli.batch.artifacts import run_id_for
    from rtml_cli.batch.recs import batch_recs
    from rtml_cli.batch.source import connect, open_events, open_items
    from rtml_cli.timeutil import utc_now

    t0 = time.perf_counter()
    _check_params(dim=dim, trees=n_trees, top_k=top_k, neighbors=n_neighbors, window=window)
    _check_params(max_session_len=max_session_len, keep=keep)
    if half_life is not None and half_life.total_seconds() <= 0:
        raise UsageError("--half-life must be positive, e.g. 30d")
    event_files = parquet_files(events, what="events")
    item_files = parquet_files(items, what="items") if items is not None else None
    warm = load_warm_state(warm_start) if warm_start is not None else None
    if warm is not None:
        inherited = warm.params
        if dim is not None and dim != inherited["dim"]:
            raise UsageError(
                f"--dim {dim} differs from the warm-start run's dim {inherited['dim']}: "
                "drop --dim or run without --warm-start"
            )
        dim = inherited["dim"]
        window = inherited["window"]
        max_session_len = inherited["max_session_len"]
        half_life_s = float(inherited["half_life_s"])
    else:
        dim = dim or DEFAULT_DIM
        window = window or DEFAULT_WINDOW
        max_session_len = max_session_len or DEFAULT_MAX_SESSION_LEN
        half_life_s = (half_life or DEFAULT_HALF_LIFE).total_seconds()
    if as_of is not None and as_of.tzinfo is None:
        as_of = as_of.replace(tzinfo=timezone.utc)
    root = Path(root)
    publish.check_root_output(root)
    steps = _Steps(progress)
    # One BLAS thread: OpenBLAS threads spin-wait, and on a busy shared box (cron hosts
    # usually are) that made the small QR/SVD calls 100x slower; it also keeps sums
    # in a fixed order, so the output is reproducible.
    with threadpool_limits(limits=1, user_api="blas"), root_lock(root):
        runs = publish.runs_dir(root)
        publish.clean_stale(root)
        steps.start("scan")
        spill = publish.spill_dir(root)
        con = connect(spill)
        tmp: Path | None = None  # the run being written; removed at once if the run fails
        try:
            src = open_events(con, event_files, as_of)
            as_of = src.as_of
            if warm is not None and warm.as_of == as_of:
                # nothing new since the run we continue from (e.g. a cron retry): a no-op
                return PrecomputeResult(
                    run_id=warm.run_id,
                    run_dir=warm.run_dir,
                    as_of=as_of,
                    mode="warm-start",
                    skipped=True,
                    published=False,
                    manifest=read_manifest(warm.run_dir),
                    seconds=time.perf_counter() - t0,
                )
            if warm is not None and warm.as_of > as_of:
                raise UsageError(
                    f"--warm-start run {warm.run_id} is not older than as-of {as_of.isoformat()}: "
                    "warm-start from an earlier run"
                )
            base_id = run_id_for(as_of)
            mode = "warm-start" if warm is not None else "full"
            params = {
                "dim": dim,
                "n_trees": n_trees,
                "top_k": top_k,
                "n_neighbors": n_neighbors,
                "window": window,
                "max_session_len": max_session_len,
                "half_life_s": half_life_s,
                "seed": seed,
                "popular_n": POPULAR_N,
                "mode": mode,
                "warm_start": warm.run_id if warm is not None else None,
            }
            inputs = {
                "events": src.inputs,
                "items": [f["sha256"] for f in map(_fingerprint, item_files or [])],
            }
            same_as_of = [
                n for n in publish.published_runs(runs) if publish.run_key(n)[0] == base_id
            ]
            if same_as_of and not force:
                return _existing(root, same_as_of[-1], as_of, mode, inputs, params, keep, t0)
            # a rebuild is a new directory: a published run is never rewritten under a reader
            run_id = publish.rebuild_id(base_id, [p.name for p in runs.iterdir()])
            target = runs / run_id

            catalogue = None
            if item_files is not None:
                open_items(con, item_files)
                catalogue = con.sql("SELECT * FROM catalogue").pl()
            since = warm.as_of if warm is not None else None
            if src.rows_used == 0:
                raise DataError("no events before as-of: nothing to precompute")

            steps.start("features")
            # one scan gives the aggregates and the item ids (sorted ids -> dense item_idx)
            fresh_aggs = feat.item_aggregates(
                con, as_of, since, warm.item_windows if warm is not None else None
            )
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
            index = index.select("item_idx", "item_id")
            n_items = index.height
            if dim >= n_items:
                raise UsageError(
                    f"--dim {dim} must be smaller than the number of items ({n_items}): lower --dim"
                )
            aggregates = feat.merge_item_totals(
                fresh_aggs, warm.item_totals if warm is not None else None
            )
            item_frame = feat.item_features(index, aggregates, catalogue)
            fresh_users = feat.user_aggregates(con, since)
            active = fresh_users.select("user_id")
            # a hash-set membership test is ~4x cheaper than a semi/anti join on
            # millions of rows (the carried-over recs and features)
            is_active = pl.col("user_id").is_in(active["user_id"].implode())
            user_totals = feat.merge_user_totals(
                fresh_users, warm.user_totals if warm is not None else None
            )
            history = feat.user_items(
                con, as_of, half_life_s, since, warm.user_items if warm is not None else None
            )
            categories = item_frame.select("item_id", "category") if catalogue is not None else None
            if warm is None:
                user_frame = feat.user_features(user_totals, history, categories, as_of)
            else:
                # users without new events keep their features (uniform decay keeps their
                # top categories); only recency moves with the as-of
                refreshed = feat.user_features(
                    user_totals.join(active, on="user_id", how="semi"),
                    history.join(active, on="user_id", how="semi"),
                    categories,
                    as_of,
                )
                kept = warm.user_features.filter(~is_active).with_columns(
                    (
                        (pl.lit(as_of) - pl.col("last_seen")).dt.total_microseconds() / 86_400e6
                    ).alias("recency_days")
                )
                user_frame = pl.concat([kept, refreshed.select(kept.columns)]).sort("user_id")

            steps.start("cooccurrence")
            con.register("idx", index)
            sessions, item_idx, weights = feat.session_arrays(con, as_of, half_life_s, since)
            con.unregister("idx")
            pairs_events = int(item_idx.size)
            counts = emb.cooccurrence(
                sessions,
                item_idx,
                weights,
                n_items,
                window=window,
                max_session_len=max_session_len,
            )
            del sessions, item_idx, weights
            if warm is not None:
                factor = 0.5 ** ((as_of - warm.as_of).total_seconds() / half_life_s)
                old = warm.cooc
                old.resize((n_items, n_items))
                counts = (old * factor + counts).tocsr()
                counts.sort_indices()
            if counts.nnz == 0:
                raise DataError(
                    "no session has two different items before as-of: cannot learn item "
                    "embeddings (are session_ids unique per event?)"
                )

            steps.start("embeddings")
            # A warm start refactorises the decayed counts from the same random start as a
            # full run (cost O(nnz), independent of history length): seeding the range finder
            # with the previous basis converges further at every update, and the more
            # converged top-`dim` PPMI subspace ranks worse (sample world, dim 16: HR@20 0.35
            # vs 0.41; medium world, 30 chained daily updates: below never retraining).
            factors = emb.truncated_svd(emb.ppmi(counts), dim, seed=seed, power_iterations=2)

            steps.start("index")
            tmp = publish.new_tmp_dir(runs, run_id)
            build_start = time.perf_counter()
            emb.build_annoy(factors.embeddings, n_trees, str(tmp / "items.ann"), seed=seed)
            build_s = time.perf_counter() - build_start
            recall = emb.annoy_recall(
                factors.embeddings, str(tmp / "items.ann"), sample=RECALL_SAMPLE, seed=seed
            )

            steps.start("neighbors")
            sim = emb.cf_similarity(counts)
            src_i, dst_i, score = emb.top_n_per_row(sim, n_neighbors)
            ids = index["item_id"]
            rank = np.arange(src_i.size) - np.searchsorted(src_i, src_i, side="left") + 1
            neighbors = pl.DataFrame(
                {
                    "item_id": ids.gather(src_i),
                    "neighbor_id": ids.gather(dst_i),
                    "score": score.astype(np.float32),
                    "rank": rank.astype(np.int32),
                }
            )
            voters = rank <= REC_NEIGHBORS
            sim_top = _csr(src_i[voters], dst_i[voters], score[voters], n_items)
            del sim, src_i, dst_i, score, rank, voters

            steps.start("recs")
            popular_idx = item_frame.sort("popularity_rank")["item_idx"].to_numpy()
            popular = (
                item_frame.sort("popularity_rank")
                .head(POPULAR_N)
                .select(
                    "item_id",
                    pl.col("popularity_rank").cast(pl.Int32).alias("rank"),
                    pl.col("popularity_score").cast(pl.Float32).alias("score"),
                )
            )
            if warm is None:
                recs = batch_recs(history, index, sim_top, popular_idx, top_k)
            else:
                fresh_recs = batch_recs(
                    history.join(active, on="user_id", how="semi"),
                    index,
                    sim_top,
                    popular_idx,
                    top_k,
                )
                kept = warm.batch_recs.filter(~is_active)
                # rows stay grouped by user (kept, then refreshed users); no 15M-row re-sort
                recs = pl.concat([kept, fresh_recs.select(kept.columns)])

            steps.start("write")
            index.write_parquet(tmp / "item_index.parquet")
            item_frame.write_parquet(tmp / "item_features.parquet")
            user_frame.write_parquet(tmp / "user_features.parquet")
            np.save(tmp / "item_embeddings.npy", factors.embeddings)
            neighbors.write_parquet(tmp / "item_neighbors.parquet")
            recs.write_parquet(tmp / "batch_recs.parquet")
            popular.write_parquet(tmp / "popular.parquet")
            state = tmp / "state"
            state.mkdir()
            import scipy.sparse as sp

            sp.save_npz(state / "cooc.npz", counts, compressed=False)
            aggregates.select("item_id", *feat.TOTALS, "first_seen", "last_seen").write_parquet(
                state / "item_totals.parquet"
            )
            user_totals.write_parquet(state / "user_totals.parquet")
            history.write_parquet(state / "user_items.parquet")
            (state / "state.json").write_text(
                json.dumps({"as_of": as_of.isoformat(), "params": params}, indent=2) + "\n"
            )
            outputs = [n for n in RUN_FILES if n != "manifest.json"]
            manifest = {
                "format_version": FORMAT_VERSION,
                "run_id": run_id,
                "as_of": as_of.isoformat(),
                "mode": mode,
                "warm_start": (
                    {"run_id": warm.run_id, "as_of": warm.as_of.isoformat()} if warm else None
                ),
                "created_at": datetime.now(timezone.utc).isoformat(),
                "params": params,
                "inputs": inputs,
                "input_files": src.inputs,
                "rows": {
                    "events_in_files": src.rows_in_files,
                    "events_before_as_of": src.rows_used,
                    "events_read_for_model": pairs_events,
                    "items": n_items,
                    "users": user_frame.height,
                    "cooccurrence_nnz": int(counts.nnz),
                    "neighbors": neighbors.height,
                    "batch_recs": recs.height,
                    "popular": popular.height,
                },
                "time_range": {
                    "first_event": src.first_ts.isoformat(),
                    "last_event": src.last_ts.isoformat(),
                },
                "index": {
                    "metric": "angular",
                    "n_trees": n_trees,
                    "recall_at_10": recall["recall_at_k"],
                    "recall_queries": recall["queries"],
                    "search_k": recall["search_k"],
                    "build_seconds": round(build_s, 3),
                    "bytes": (tmp / "items.ann").stat().st_size,
                },
                "versions": _versions(),
                "outputs": publish.checksums(tmp, outputs),
            }
            steps.start("publish")
            manifest["steps"] = list(steps.records)
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            publish.publish_dir(tmp, target)
            tmp = None
            steps.start("switch")
            previous = publish.latest_run_id(root)
            published = publish.newest_publishable(runs, utc_now()) == run_id
            if published:
                publish.switch_latest(root, run_id)
            steps.start("prune")
            # the run latest showed until now stays: a reader may have resolved it moments ago
            pruned = (
                publish.prune(root, keep, protect={previous} if previous else set(), now=utc_now())
                if keep is not None
                else []
            )
            manifest["steps"] = steps.done()
            return PrecomputeResult(
                run_id=run_id,
                run_dir=target,
                as_of=as_of,
                mode=mode,
                skipped=False,
                published=published,
                manifest=manifest,
                seconds=time.perf_counter() - t0,
                pruned=pruned,
                warnings=_future_warnings(runs),
            )
        finally:
            con.close()
            shutil.rmtree(spill, ignore_errors=True)
            if tmp is not None:  # failed (disk full, bad data, Ctrl-C): free the space now
                shutil.rmtree(tmp, ignore_errors=True)


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
