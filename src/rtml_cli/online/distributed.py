"""A replay split into shards and run as tasks: in this process, or on a Ray cluster.

``simulate_sharded`` gives the same ``SimulationResult`` as ``engine.simulate`` (every
field but the timings): the driver prepares the replay once (``engine._prepare``), builds
the strategies once (the ranker trained on the training window, the per-user lists
indexed: ``engine._build_with``, as one run does), writes each shard's sessions and the
shared streaming count table (``shardio``), runs one task per shard — each task loads the
artifacts, reads only its own shard's file and the count table, takes the built
strategies from the driver (by reference: ``ray.put`` once, every task reads the same
object) and serves its requests — and summarises the lists the tasks served, in
``request_id`` order, exactly as a single run does (``engine._summarise``).

The built strategies travel pickled with their ``Env`` (the arrays it derives from the
artifacts), without the artifacts themselves: a reference to the artifacts or to what
they hold (a table, the Annoy index) is written as its name and bound to the task's own
loaded artifacts (``pack_strategies``). A strategy that cannot be pickled (a plug-in
holding a lambda, say) is built by every task instead, from the training window the
driver then writes, as before.

A shard is the sessions whose CRC-32 of the session id modulo N is its number
(``replay.shard_of``); strategies only see a request's own session and the stream, so
which requests a task serves cannot change its answers.

Ray is optional (``pip install 'rtml[ray]'``) and imported only by :class:`RayExecutor`.
The directories the tasks read (the scratch directory, the artifacts) must be visible at
the same path on every node: one machine, or a shared filesystem (set ``TMPDIR``).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import signal
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import RtmlError, Unavailable, UsageError

ENGINES = ("local", "ray")
RAY_EXTRA = "pip install 'rtml[ray]'"
#: Ray retries a task whose worker died (a killed process, a lost node) this many times.
MAX_RETRIES = 3
#: Seconds to wait for a TCP answer from --address before giving up (exit 69).
CONNECT_TIMEOUT_S = 3.0
#: Test hook: the first shard task that finds no file at this path creates it and kills
#: its own worker process (SIGKILL), so the tests see Ray retry it.
KILL_SHARD_ENV = "RTML_TEST_KILL_SHARD"

#: ``on_shard(shards done, shards, requests done, requests, seconds since the tasks started)``
ShardFn = Callable[[int, int, int, int, float], None]


@dataclass(frozen=True)
class ShardJob:
    """What one task needs: paths it reads and the run's validated settings."""

    shard: int  # 1-based
    shards: int
    events: str  # the shard's directory (shardio.write_events)
    stream: str  # the count table every task reads
    training: str | None  # the training window's directory, when a strategy learns
    training_stream: str | None
    run_dir: str  # the precompute run
    settings: Any  # engine._Settings
    strategy_modules: tuple[str, ...] = ()
    built: bool = False  # the strategies come built from the driver (``pack_strategies``)


@dataclass
class ShardOutput:
    """What one task sends back: its requests' lists and latencies, and the reports."""

    shard: int
    request_id: np.ndarray
    lists: np.ndarray  # (strategies, requests, k) item_idx, -1 padded
    latency: np.ndarray  # (strategies, requests) ns
    reports: dict[str, Any]
    setup_seconds: float  # the strategies: unpacked (built by the driver) or built here
    replay_seconds: float
    read_seconds: float = 0.0  # loading the artifacts, reading the shard and the count table
    read_bytes: int = 0  # the Parquet files it read (not the artifacts)
    cpu_seconds: float = 0.0  # the task process's CPU time (below wall time on a busy machine)
    host: str = ""

    def timings(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "requests": len(self.request_id),
            "read_bytes": self.read_bytes,
            "read_seconds": round(self.read_seconds, 3),
            "setup_seconds": round(self.setup_seconds, 3),
            "replay_seconds": round(self.replay_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


def run_shard(job: ShardJob, built: bytes | None = None) -> ShardOutput:
    """One task: load, read the shard, take (or build) the strategies, serve its requests.

    ``built``: the driver's ``pack_strategies`` when ``job.built`` (Ray passes the object
    by reference: every task of a run reads the one copy in the object store)."""
    _test_kill_hook()
    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import strategies as _registered  # noqa: F401  (the built-ins)
    from rtml_cli.online.engine import _build_with, _serve
    from rtml_cli.online.plugins import load_strategies
    from rtml_cli.online.shardio import EVENTS_FILE, read_replay

    settings = job.settings
    cpu = time.process_time()
    reading = time.perf_counter()
    if job.strategy_modules:
        load_strategies(settings.names, list(job.strategy_modules))
    art = load_artifacts(job.run_dir)
    data = read_replay(Path(job.events), Path(job.stream))
    training = None
    if job.training is not None and job.training_stream is not None:
        training = read_replay(Path(job.training), Path(job.training_stream))
    read_seconds = time.perf_counter() - reading
    files = [job.events + "/" + EVENTS_FILE, job.stream, job.training, job.training_stream]
    read_bytes = sum(
        os.path.getsize(f if f.endswith(".parquet") else f + "/" + EVENTS_FILE)
        for f in files
        if f is not None
    )
    if job.built:
        if built is None:
            raise ValueError("the job says its strategies come built, and none were given")
        served, setup_seconds = unpack_strategies(built, art)
    else:
        served, setup_seconds = _build_with(art, settings, lambda: training)
    lists, latency, replay_seconds = _serve(data, served, settings.k, None, settings.protocol)
    return ShardOutput(
        shard=job.shard,
        request_id=data.request_id,
        lists=lists.astype(np.int32),
        latency=latency,
        reports={s.name: s.report() for s in served},
        setup_seconds=setup_seconds,
        replay_seconds=replay_seconds,
        read_seconds=read_seconds,
        read_bytes=read_bytes,
        cpu_seconds=time.process_time() - cpu,
        host=socket.gethostname(),
    )


# --------------------------------------------------------------------------- built strategies


def _shared_objects(env: Any) -> dict[int, tuple[str, str]]:
    """id → name of what every process loads for itself: the artifacts and what they hold
    (tables, the Annoy index, lookups they cached); and of what a task does not need (the
    training window and the rankers' work on it: the built strategies have learnt from it
    already). Scalars are left out: equal ones may be the same object by chance."""
    from rtml_cli.online.stage3 import _TRAINING_CANDIDATES

    art = env.artifacts
    named: dict[int, tuple[str, str]] = {id(art): ("art", ""), id(env.training): ("none", "")}
    # what the rankers computed per training request: done with once they are trained
    training_work = env.cache.get(_TRAINING_CANDIDATES)
    if training_work is not None:
        named[id(training_work)] = ("none", "")
    for name, value in vars(art).items():
        if not isinstance(value, (type(None), bool, int, float, complex, str, bytes)):
            named.setdefault(id(value), ("art", name))
    return named


class _Packer(pickle.Pickler):
    def __init__(self, file: Any, env: Any) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._named = _shared_objects(env)

    def persistent_id(self, obj: Any) -> Any:
        return self._named.get(id(obj))


class _Unpacker(pickle.Unpickler):
    def __init__(self, file: Any, art: Any) -> None:
        super().__init__(file)
        self._art = art

    def persistent_load(self, pid: Any) -> Any:
        owner, name = pid
        if owner == "none":
            return None
        return getattr(self._art, name) if name else self._art


def pack_strategies(served: Sequence[Any], env: Any) -> bytes | None:
    """The built strategies and their ``Env`` (its arrays derived from the artifacts
    included), pickled without the artifacts themselves, which ``unpack_strategies`` binds
    to the task's own; None when a strategy cannot be pickled."""
    buffer = io.BytesIO()
    try:
        _Packer(buffer, env).dump((env, list(served)))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return buffer.getvalue()


def unpack_strategies(built: bytes, art: Any) -> tuple[list[Any], float]:
    """The driver's built strategies, bound to this task's artifacts (nothing to train or
    derive: they come trained, with their ``Env``); and the seconds it took."""
    started = time.perf_counter()
    _env, served = _Unpacker(io.BytesIO(built), art).load()
    return served, time.perf_counter() - started


def _warm_worker() -> None:
    """A no-op task that imports what ``run_shard`` imports."""
    import annoy  # noqa: F401
    import polars  # noqa: F401

    from rtml_cli.batch import artifacts  # noqa: F401
    from rtml_cli.online import engine, shardio, strategies  # noqa: F401


def _test_kill_hook() -> None:
    marker = os.environ.get(KILL_SHARD_ENV)
    if not marker:
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- executors


class LocalExecutor:
    """The shards one after another in this process (same path as Ray's, no cluster)."""

    name = "local"

    def workers(self) -> int:
        return 1

    def warm(self, tasks: int) -> None:
        """Nothing to start: the shards run in this process."""

    def run(self, jobs: Sequence[ShardJob], built: bytes | None = None) -> Iterator[ShardOutput]:
        for job in jobs:
            yield run_shard(job, built)

    def describe(self) -> dict[str, Any]:
        return {"engine": "local"}


class RayExecutor:
    """The shards as Ray tasks (``max_retries``: a task whose worker dies runs again)."""

    name = "ray"

    def __init__(self, ray: Any, address: str | None) -> None:
        self.ray = ray
        self.address = address
        self._remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(run_shard)
        self._warm = ray.remote(max_retries=0, num_cpus=1)(_warm_worker)
        self._warming: list[Any] = []

    def warm(self, tasks: int) -> None:
        """Start the workers ``tasks`` shard tasks will run on, and import there what a task
        needs, while the driver prepares and builds (Ray gives a run's later tasks the
        workers its earlier ones left idle)."""
        self._warming = [self._warm.remote() for _ in range(min(tasks, self.workers()))]

    def workers(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def run(self, jobs: Sequence[ShardJob], built: bytes | None = None) -> Iterator[ShardOutput]:
        ray = self.ray
        # one copy in the object store, which every task (and a retried one) reads; Ray
        # resolves a reference passed as an argument before the task starts
        shared = None if built is None else ray.put(built)
        pending = [self._remote.remote(job, shared) for job in jobs]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield self._get(done[0])
        finally:
            for ref in pending:  # a failed shard: the others are not needed any more
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _get(self, ref: Any) -> ShardOutput:
        try:
            return self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, RtmlError):
                raise cause from None
            raise
        except self.ray.exceptions.RayError as exc:
            raise Unavailable(
                f"a replay task failed on the Ray cluster: {str(exc).strip().splitlines()[0]}"
            ) from None

    def describe(self) -> dict[str, Any]:
        nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        return {
            "engine": "ray",
            "address": self.address,
            "nodes": len(nodes),
            "cpus": self.workers(),
            "max_retries": MAX_RETRIES,
        }


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(f"--engine ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds (``Unavailable``, exit 69) when nothing answers at ``address``
    (``host:port`` or ``ray://host:port``); Ray itself would retry for a minute or more."""
    if address == "auto":
        return
    text = address.removeprefix("ray://")
    host, _, port = text.rpartition(":")
    if not host:
        host, port = text, "6379"  # Ray's default GCS port
    try:
        port_number = int(port)
    except ValueError:
        raise UsageError(
            f"invalid --address {address!r}: use HOST:PORT, e.g. 10.0.0.5:6379"
        ) from None
    try:
        with socket.create_connection((host.strip("[]"), port_number), timeout=timeout):
            pass
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise Unavailable(
            f"no Ray cluster answers at {address} ({reason} after {timeout:g}s): start it "
            "(ray start --head) or fix --address"
        ) from None


def check_engine_options(engine: str, address: str | None, shards: int | None) -> None:
    """``--engine``, ``--address``, ``--shards`` as one-line ``UsageError``s (exit 2)."""
    if engine not in ENGINES:
        raise UsageError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if shards is not None and shards < 1:
        raise UsageError(f"--shards must be at least 1, got {shards}")
    if address is not None and engine != "ray":
        raise UsageError("--address names a Ray cluster: use it with --engine ray")


@contextlib.contextmanager
def open_executor(
    engine: str, address: str | None = None, shards: int | None = None
) -> Iterator[LocalExecutor | RayExecutor]:
    """The executor of ``--engine``: checks the options (``UsageError``), imports Ray and
    connects (``Unavailable`` when ``address`` does not answer) before any work is done;
    a Ray instance this function started is shut down on exit."""
    check_engine_options(engine, address, shards)
    if engine == "local":
        yield LocalExecutor()
        return
    ray = _import_ray()
    started = not ray.is_initialized()
    if started:
        _init_ray(ray, address)
    try:
        yield RayExecutor(ray, address)
    finally:
        if started:
            ray.shutdown()


def _init_ray(ray: Any, address: str | None) -> None:
    import logging

    if address is not None:
        check_reachable(address)
    env = {KILL_SHARD_ENV: os.environ[KILL_SHARD_ENV]} if os.environ.get(KILL_SHARD_ENV) else {}
    options: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.WARNING,
        "log_to_driver": False,
        "runtime_env": {"env_vars": env} if env else None,
    }
    if address is None:  # a local instance, on the loopback interface only
        options["_node_ip_address"] = "127.0.0.1"
    try:
        ray.init(address=address, **options)
    except (ConnectionError, TimeoutError, RuntimeError) as exc:
        raise Unavailable(
            f"cannot connect to Ray{f' at {address}' if address else ''}: "
            f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}"
        ) from None


# --------------------------------------------------------------------------- the job


@dataclass
class _Collected:
    """The shards' outputs, put back in request order."""

    lists: np.ndarray
    latency: np.ndarray
    reports: dict[str, Any] = field(default_factory=dict)
    setup_seconds: float = 0.0
    tasks: list[dict[str, Any]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)


def simulate_sharded(
    events: Any,
    artifacts: Any,
    *,
    executor: LocalExecutor | RayExecutor,
    shards: int | None = None,
    strategy_modules: Sequence[str | Path] = (),
    on_shard: ShardFn | None = None,
    start: Any = None,
    end: Any = None,
    world: Any = None,
    **options: Any,
) -> Any:
    """``engine.simulate`` run as ``shards`` tasks on ``executor`` (``open_executor``);
    ``shards`` defaults to the executor's CPUs. ``options`` are ``simulate``'s (``shard``
    included: its requests are then split into ``shards``). ``on_shard`` is called as
    each task finishes. Returns the same ``SimulationResult`` as ``simulate`` (timings
    aside), with ``info["engine"]`` saying how it ran."""
    from rtml_cli.fsutil import scratch_dir
    from rtml_cli.online import engine as eng

    strategies = options.pop("strategies", eng.DEFAULT_STRATEGIES)
    options.pop("progress", None)  # per shard instead: ``on_shard``
    settings = eng._validate(strategies, **{**_simulate_defaults(), **options})
    n = shards if shards is not None else executor.workers()
    if n < 1:
        raise UsageError(f"--shards must be at least 1, got {n}")
    clock = time.perf_counter()
    executor.warm(n)
    run = eng._prepare(events, artifacts, settings, start=start, end=end, world=world)
    prepared = time.perf_counter()
    training = eng._training_data(run, settings.train_window)
    env = eng._env(run.art, settings, training)
    built_here, setup_seconds = eng._build_in(env, settings)  # as one run does
    built = pack_strategies(built_here, env)
    del built_here, env
    built_at = time.perf_counter()
    with scratch_dir("shards") as work:
        modules = [str(m) for m in strategy_modules]
        jobs = _write_jobs(run, settings, n, work, modules, None if built else training)
        written = time.perf_counter()
        sizes = _file_sizes(work)
        collected = _collect(executor, jobs, run.data, settings, on_shard, built)
    wall = time.perf_counter() - written
    if built is None:  # every task built the strategies
        setup_seconds = collected.setup_seconds
    served: list[Any] = [_Reported(name, collected.reports.get(name)) for name in settings.names]
    summarising = time.perf_counter()
    result = eng._summarise(
        run, settings, served, collected.lists, collected.latency, setup_seconds, wall
    )
    summarised = time.perf_counter() - summarising
    result.info["engine"] = {
        **executor.describe(),
        "shards": n,
        "hosts": len(collected.hosts),
        "prepare_seconds": round(prepared - clock, 3),  # the driver: read and prepare once
        # the driver: build the strategies once (train the ranker), pickle them
        "build_seconds": round(built_at - prepared, 3) if built is not None else None,
        "built_bytes": None if built is None else len(built),
        "write_seconds": round(written - built_at, 3),  # the driver: shard files, count table
        "tasks_seconds": round(wall, 3),  # from the first task submitted to the last result
        "summarise_seconds": round(summarised, 3),  # the driver: metrics, intervals
        "tasks": sorted(collected.tasks, key=lambda t: t["shard"]),
        "bytes": sizes,
    }
    return result


def _file_sizes(work: Path) -> dict[str, int]:
    """Bytes of what the tasks read: the count table, the training window, the shards."""
    from rtml_cli.online import shardio

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    shards = [size(d / shardio.EVENTS_FILE) for d in sorted(work.glob("shard=*"))]
    return {
        "stream_table": size(work / shardio.STREAM_FILE),
        "training": size(work / "training" / shardio.EVENTS_FILE)
        + size(work / "training-stream.parquet"),
        "shard_files": sum(shards),
        "largest_shard_file": max(shards, default=0),
    }


def _simulate_defaults() -> dict[str, Any]:
    """``engine.simulate``'s defaults for the options ``engine._validate`` checks."""
    import inspect

    from rtml_cli.online import engine as eng

    skip = {"events", "artifacts", "strategies", "start", "end", "world", "progress"}
    params = inspect.signature(eng.simulate).parameters
    return {name: p.default for name, p in params.items() if name not in skip}


class _Reported:
    """A strategy as ``_summarise`` sees it after a distributed run: its name and report."""

    def __init__(self, name: str, report: Any) -> None:
        self.name = name
        self._report = report

    def report(self) -> Any:
        return self._report


def _write_jobs(
    run: Any,
    settings: Any,
    n: int,
    work: Path,
    modules: list[str],
    training_window: Callable[[], Any] | None,
) -> list[ShardJob]:
    """Write the count table, the training window (``training_window`` given: the tasks
    build the strategies, and one may learn) and every shard's sessions; one job per shard
    that has requests (whose strategies come built unless ``training_window`` is given)."""
    from rtml_cli.online import shardio

    data = run.data
    stream = shardio.write_stream(data, work / shardio.STREAM_FILE)
    training_dir = training_stream = None
    if training_window is not None and _learns(settings.names):
        training = training_window()
        if training is not None:
            training_dir = shardio.write_events(training, work / "training")
            training_stream = shardio.write_stream(training, work / "training-stream.parquet")
    key = shardio.shard_key(data.session_ids, n, settings.shard)
    has_request = np.zeros(len(data.session_ids), dtype=bool)
    has_request[data.req_sess] = True
    jobs = []
    for i in range(1, n + 1):
        keep = has_request & (key == i - 1)
        if not keep.any():
            continue
        directory = shardio.write_events(shardio.slice_sessions(data, keep), work / f"shard={i}")
        jobs.append(
            ShardJob(
                shard=i,
                shards=n,
                events=str(directory),
                stream=str(stream),
                training=None if training_dir is None else str(training_dir),
                training_stream=None if training_stream is None else str(training_stream),
                run_dir=str(run.art.run_dir),
                settings=settings,
                strategy_modules=tuple(modules),
                built=training_window is None,
            )
        )
    return jobs


def _learns(names: Sequence[str]) -> bool:
    """Whether a strategy may read the training window: the ranker, or any plug-in."""
    from rtml_cli.online.base import STRATEGIES
    from rtml_cli.online.strategies import trains

    bases = {name.strip().partition("@")[0] for name in names}
    plugins = any(
        not getattr(STRATEGIES.entry(b).obj, "__module__", "").startswith("rtml_cli.")
        for b in bases
        if b in STRATEGIES
    )
    return trains(names) or plugins


def _collect(
    executor: LocalExecutor | RayExecutor,
    jobs: list[ShardJob],
    data: Any,
    settings: Any,
    on_shard: ShardFn | None,
    built: bytes | None = None,
) -> _Collected:
    """Run the jobs; put each shard's lists and latencies at its requests' positions."""
    n, n_strat = data.n_requests, len(settings.names)
    position = np.full(int(data.request_id.max()) + 1 if n else 0, -1, dtype=np.int64)
    position[data.request_id] = np.arange(n)
    out = _Collected(
        lists=np.full((n_strat, n, settings.k), -1, dtype=np.int64),
        latency=np.zeros((n_strat, n), dtype=np.int64),
    )
    done_requests = 0
    started = time.perf_counter()
    for finished, shard in enumerate(executor.run(jobs, built), start=1):
        at = position[shard.request_id]
        out.lists[:, at, :] = shard.lists
        out.latency[:, at] = shard.latency
        _merge_reports(out.reports, shard.reports)
        out.setup_seconds = max(out.setup_seconds, shard.setup_seconds)
        out.tasks.append(shard.timings())
        out.hosts.add(shard.host)
        done_requests += len(at)
        if on_shard is not None:
            on_shard(finished, len(jobs), done_requests, n, time.perf_counter() - started)
    return out


def _merge_reports(into: dict[str, Any], reports: dict[str, Any]) -> None:
    """Reports are the same on every shard (models trained on the same window, with the
    same seed), except per-request counters (``served_from``), which add up."""
    for name, report in reports.items():
        if name not in into:
            into[name] = report
            continue
        mine = into[name]
        if isinstance(mine, dict) and isinstance(report, dict) and "served_from" in report:
            counts = dict(mine.get("served_from") or {})
            for key, value in report["served_from"].items():
                counts[key] = counts.get(key, 0) + value
            into[name] = {**mine, "served_from": counts}
