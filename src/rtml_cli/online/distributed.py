"""A replay split into shards and run as tasks: in this process, or on a Ray cluster.

``simulate_sharded`` gives the same ``SimulationResult`` as ``engine.simulate`` (every
field but the timings). First it submits a build task (``run_build``): on a worker, it
loads the artifacts, reads the log, replays the training window and builds the strategies
that learn from it (trains the ranker) once, as one run does, and pickles them. Meanwhile
the driver prepares the replay once (``engine._prepare``) and writes each shard's sessions
and the shared streaming count table (``shardio``). Then it runs, at most ``shards`` at a
time, two jobs per shard (``run_shard``): one serves the shard's requests with the
strategies that do not learn, and starts as soon as its files are written; the other with
the learning ones, which it takes from the build task (by reference: the one result in
Ray's object store). The strategies that do not learn are built once per run too, on Ray
by a warming task (``warm_worker``) on a worker the build does not take, while the driver
prepares; with one worker, by its first job. Each job loads the artifacts and reads only
its own shard's file and the count table; the first job of each piece also works out its
requests' truth (their sessions' later events). The driver joins the truth and summarises
the lists the jobs served, in ``request_id`` order, exactly as a single run does
(``engine._summarise``). The build is thus off the driver's serial path: it overlaps the
driver's prepare and the other strategies' replay.

The built strategies travel pickled with their ``Env`` (the arrays it derives from the
artifacts), without the artifacts themselves: a reference to the artifacts or to what
they hold (a table, the Annoy index) is written as its name and bound to the task's own
loaded artifacts (``pack_strategies``). A strategy that cannot be pickled (a plug-in
holding a lambda, say) is built by every learning job instead, from the training window
the build task then writes.

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
#: On Ray, with more than one shard, each shard's sessions go in this many pieces, a job
#: each: small jobs that the workers take as they come free keep them all busy to the end
#: (the learning jobs can only start once the build is done).
PIECES_PER_SHARD = 4
#: Seconds to wait for a TCP answer from --address before giving up (exit 69).
CONNECT_TIMEOUT_S = 3.0
#: Test hook: the first shard task that finds no file at this path creates it and kills
#: its own worker process (SIGKILL), so the tests see Ray retry it.
KILL_SHARD_ENV = "RTML_TEST_KILL_SHARD"

#: ``on_shard(shards done, shards, requests done, requests, seconds since the tasks started)``
ShardFn = Callable[[int, int, int, int, float], None]


@dataclass(frozen=True)
class ShardJob:
    """What one task needs: paths it reads and the run's validated settings.

    A shard's strategies go in two jobs: the ones that learn from the training window
    (``built``: they come from the build task) and the others (built by the task itself,
    in well under a second), so that the others' replay need not wait for the training."""

    shard: int  # 1-based
    shards: int
    events: str  # the piece's directory (shardio.write_events)
    stream: str  # the count table every task reads
    run_dir: str  # the precompute run
    settings: Any  # engine._Settings, ``names`` being this job's strategies only
    strategies: tuple[int, ...] = ()  # their positions in the run's strategies
    strategy_modules: tuple[str, ...] = ()
    built: bool = False  # the strategies come from the build task (``run_build``)
    piece: int = 1  # 1-based, of the pieces the shard's sessions are split in
    truth: bool = False  # this job also works out its requests' truth (one job per piece)


@dataclass(frozen=True)
class BuildJob:
    """What the build task needs to train the strategies that learn, once per run."""

    events: Any  # the log: a Parquet path/glob/directory, or a Polars frame
    run_dir: str  # the precompute run (resolved by the driver: every task loads the same)
    settings: Any  # engine._Settings, ``names`` being the strategies that learn
    work: str  # the scratch directory (the training window goes there when unpicklable)
    strategy_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class WarmJob:
    """What a warming task needs to build the strategies that do not learn, once per run,
    on a worker the build task does not take, while the driver prepares."""

    run_dir: str
    settings: Any  # engine._Settings, ``names`` being the strategies that do not learn
    strategy_modules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Built:
    """The build task's result, which every learning job takes (by reference on Ray)."""

    data: bytes | None  # ``pack_strategies``; None: cannot be pickled, the tasks build
    seconds: float  # the build task: read the log, replay the training window, train, pack
    training: str | None = None  # the training window's directory (when ``data`` is None)
    training_stream: str | None = None


@dataclass
class ShardOutput:
    """What one task sends back: its requests' lists and latencies, and the reports."""

    shard: int
    request_id: np.ndarray
    lists: np.ndarray  # (strategies, requests, k) item_idx, -1 padded
    latency: np.ndarray  # (strategies, requests) ns
    reports: dict[str, Any]
    setup_seconds: float  # the strategies: unpacked (from the build task) or built here
    replay_seconds: float
    read_seconds: float = 0.0  # loading the artifacts, reading the shard and the count table
    read_bytes: int = 0  # the Parquet files it read (not the artifacts)
    cpu_seconds: float = 0.0  # the task process's CPU time (below wall time on a busy machine)
    host: str = ""
    piece: int = 1
    strategies: tuple[int, ...] = ()  # the positions of ``lists``' strategies in the run
    built: Built | None = None  # what the learning strategies came from (the build task)
    started: float = 0.0  # the task's start and end, seconds since the epoch (its timeline)
    ended: float = 0.0
    pid: int = 0
    truth: Any = None  # replay.Truth of its requests (``later_req``: positions in the job)
    truth_seconds: float = 0.0

    def timings(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "piece": self.piece,
            "strategies": "learning" if self.built is not None else "other",
            "requests": len(self.request_id),
            "read_bytes": self.read_bytes,
            "read_seconds": round(self.read_seconds, 3),
            "setup_seconds": round(self.setup_seconds, 3),
            "replay_seconds": round(self.replay_seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
            "truth_seconds": round(self.truth_seconds, 3),
            "started": self.started,
            "ended": self.ended,
            "pid": self.pid,
        }


def run_shard(
    job: ShardJob,
    built: Built | None = None,
    cache: dict[str, Any] | None = None,
    others: bytes | None = None,
) -> ShardOutput:
    """One task: load, read the shard, take (or build) its strategies, serve its requests.

    ``built``: the build task's result when ``job.built`` (Ray passes the object by
    reference: every task of a run reads the one copy in the object store). ``cache``:
    what this process loaded and built for an earlier job of the same run (the artifacts,
    the other strategies pickled), reused: Ray runs a run's jobs on the same workers.
    ``others``: the strategies that do not learn, built and pickled once by a warming task
    (``warm_worker``), which a job that does not have them yet unpickles instead of
    building them again."""
    started = time.time()
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
    run = (job.run_dir, _published(job.run_dir))
    art = _cached(cache, ("artifacts", *run), lambda: load_artifacts(job.run_dir))
    data = read_replay(Path(job.events), Path(job.stream))
    files = [job.events + "/" + EVENTS_FILE, job.stream]
    training = None
    if job.built:
        if built is None:
            raise ValueError("the job says its strategies come built, and none were given")
        if built.data is None and built.training is not None and built.training_stream:
            training = read_replay(Path(built.training), Path(built.training_stream))
            files += [built.training + "/" + EVENTS_FILE, built.training_stream]
    read_seconds = time.perf_counter() - reading
    read_bytes = sum(os.path.getsize(f) for f in files)
    if job.built and built is not None and built.data is not None:
        served, setup_seconds = unpack_strategies(built.data, art)
    elif not job.built and cache is not None:  # built once per run, a fresh copy per job
        building = time.perf_counter()
        packed = _cached(
            cache,
            ("other", *run, repr(settings)),
            lambda: others if others is not None else _pack_built(art, settings),
        )
        if packed is not None:
            served, _ = unpack_strategies(packed, art)
        else:
            served, _ = _build_with(art, settings, lambda: None)
        setup_seconds = time.perf_counter() - building
    else:  # the strategies that do not learn, or ones that could not be pickled
        served, setup_seconds = _build_with(art, settings, lambda: training)
    lists, latency, replay_seconds = _serve(
        data, served, settings.k, None, settings.protocol, settings.micro_batch
    )
    truth, truth_seconds = None, 0.0
    if job.truth:  # a request's truth is its own session's later events: in this piece
        from rtml_cli.online.replay import truth_for

        timing = time.perf_counter()
        truth = truth_for(data, settings.protocol)
        truth_seconds = time.perf_counter() - timing
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
        piece=job.piece,
        strategies=job.strategies,
        built=built if job.built else None,
        started=started,
        ended=time.time(),
        pid=os.getpid(),
        truth=truth,
        truth_seconds=truth_seconds,
    )


def _published(run_dir: str) -> tuple[int, int, int]:
    """Which publication of ``run_dir`` this is (its manifest's inode, size and mtime): a run
    deleted and computed again under the same id is a new run to a worker's cache."""
    st = os.stat(Path(run_dir) / "manifest.json")
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _cached(cache: dict[str, Any] | None, key: Any, make: Callable[[], Any]) -> Any:
    """``make()``, kept in ``cache`` under ``key`` (one value per kind: a new run's
    artifacts replace the last run's)."""
    if cache is None:
        return make()
    kind = key[0]
    held = cache.get(kind)
    if held is None or held[0] != key:
        cache[kind] = None  # let the old value go before making the new one
        held = cache[kind] = (key, make())
    return held[1]


def _pack_built(art: Any, settings: Any) -> bytes | None:
    """The strategies of ``settings`` (none of which learns) built and pickled."""
    from rtml_cli.online import engine as eng

    env = eng._env(art, settings, lambda: None)
    served, _ = eng._build_in(env, settings)
    return pack_strategies(served, env)


#: What a Ray worker process keeps between the jobs of a run (``run_shard``'s ``cache``).
_WORKER_CACHE: dict[str, Any] = {}


def _one_cpu() -> None:
    """A task asks Ray for one CPU: keep its Polars work on one thread too (Ray does the same
    for BLAS with ``OMP_NUM_THREADS``), so that a task, the build included, uses the core it
    was given, not the idle ones of a cluster running fewer tasks than it has CPUs. Takes
    effect where Polars is not loaded yet: the worker's first task of the run."""
    import sys

    if "polars" not in sys.modules:
        os.environ["POLARS_MAX_THREADS"] = "1"


def _run_build_on_worker(job: BuildJob) -> Built:
    """``run_build`` in a Ray worker, which keeps the artifacts for the run's next job."""
    _one_cpu()
    return run_build(job, _WORKER_CACHE)


def _warm_on_worker(job: WarmJob | None = None) -> bytes | None:
    """``warm_worker`` in a Ray worker, on one thread like every task."""
    _one_cpu()
    return warm_worker(job)


def _run_shard_on_worker(
    job: ShardJob, built: Built | None = None, others: bytes | None = None
) -> ShardOutput:
    """``run_shard`` in a Ray worker, which keeps what it loaded for the run's next job."""
    _one_cpu()
    return run_shard(job, built, _WORKER_CACHE, others)


def run_build(job: BuildJob, cache: dict[str, Any] | None = None) -> Built:
    """The build task: load the artifacts, read the log, replay the training window and
    build the strategies that learn from it (train the ranker) as one run does; pickle
    them (``pack_strategies``). When they cannot be pickled, write the training window
    to the scratch directory instead, and each learning job builds them from it.
    ``cache``: as ``run_shard``'s (the artifacts stay loaded for the worker's next jobs)."""
    started = time.perf_counter()
    from types import SimpleNamespace

    import polars as pl

    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import engine as eng
    from rtml_cli.online import shardio
    from rtml_cli.online import strategies as _registered  # noqa: F401  (the built-ins)
    from rtml_cli.online.plugins import load_strategies
    from rtml_cli.online.replay import read_events, to_us

    settings = job.settings
    if job.strategy_modules:
        load_strategies(settings.names, list(job.strategy_modules))
    # kept for this worker's jobs when it runs in a Ray worker (``_WORKER_CACHE``)
    run = (job.run_dir, _published(job.run_dir))
    art = _cached(cache, ("artifacts", *run), lambda: load_artifacts(job.run_dir))
    users = art.user_features
    # what ``engine._training_data`` reads of a prepared run (as ``engine._prepare`` sets it)
    source = SimpleNamespace(
        art=art,
        events=read_events(job.events),
        known_users=users["user_id"].cast(pl.String).to_list()
        if "user_id" in users.columns
        else [],
        as_of_us=to_us(art.as_of),
        reach_us=eng._reach_us(settings),
    )
    window = eng._training_data(source, settings.train_window)  # type: ignore[arg-type]
    env = eng._env(art, settings, window)
    served, _ = eng._build_in(env, settings)
    data = pack_strategies(served, env)
    training = training_stream = None
    if data is None:
        replayed = window()
        if replayed is not None:
            work = Path(job.work)
            training = str(shardio.write_events(replayed, work / "training"))
            training_stream = str(shardio.write_stream(replayed, work / "training-stream.parquet"))
    return Built(data, time.perf_counter() - started, training, training_stream)


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


def warm_worker(job: WarmJob | None = None) -> bytes | None:
    """A task for a worker the build task does not take, while the driver prepares:
    import what ``run_shard`` imports, load the run's artifacts and build the strategies
    that do not learn (``job``), keep both for this worker's jobs and return the strategies
    pickled, for the other workers' jobs (None: nothing to build, or not picklable)."""
    import annoy  # noqa: F401
    import polars  # noqa: F401

    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import engine, kernels, shardio, strategies  # noqa: F401
    from rtml_cli.online.plugins import load_strategies

    if job is None:
        return None
    if job.strategy_modules:
        load_strategies(job.settings.names, list(job.strategy_modules))
    cache = _WORKER_CACHE
    run = (job.run_dir, _published(job.run_dir))
    art = _cached(cache, ("artifacts", *run), lambda: load_artifacts(job.run_dir))
    packed: bytes | None = _cached(
        cache, ("other", *run, repr(job.settings)), lambda: _pack_built(art, job.settings)
    )
    return packed


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
    """The jobs one after another in this process (same path as Ray's, no cluster)."""

    name = "local"

    def workers(self) -> int:
        return 1

    def warm(self, tasks: int, job: WarmJob | None = None) -> None:
        """Nothing to start: the jobs run in this process."""

    def pieces(self, shards: int) -> int:
        """One piece per shard: the jobs run one after another anyway."""
        return shards

    def start_build(self, job: BuildJob) -> BuildJob:
        """Nothing starts here: ``run`` builds first, in this process."""
        return job

    def cancel(self, build: Any) -> None:
        """Nothing runs in the background."""

    def run(
        self, jobs: Sequence[ShardJob], build: BuildJob | None = None, limit: int | None = None
    ) -> Iterator[ShardOutput]:
        built = run_build(build) if build is not None and any(j.built for j in jobs) else None
        for job in jobs:
            yield run_shard(job, built if job.built else None)

    def describe(self) -> dict[str, Any]:
        return {"engine": "local"}


class RayExecutor:
    """The jobs as Ray tasks (``max_retries``: a task whose worker dies runs again)."""

    name = "ray"

    def __init__(self, ray: Any, address: str | None) -> None:
        self.ray = ray
        self.address = address
        self._remote = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_run_shard_on_worker)
        self._build = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_run_build_on_worker)
        self._warm = ray.remote(max_retries=MAX_RETRIES, num_cpus=1)(_warm_on_worker)
        self._warming: list[Any] = []

    def warm(self, tasks: int, job: WarmJob | None = None) -> None:
        """Start the workers ``tasks`` tasks will run on, and import there what a task
        needs, while the driver prepares (Ray gives a run's later tasks the workers its
        earlier ones left idle); the first of them also builds the strategies that do not
        learn (``job``), which every job of theirs then takes, by reference, instead of
        building them on each worker. No task to warm (one worker, taken by the build
        task): the first job builds them."""
        tasks = min(tasks, self.workers())  # a new run: never the last run's strategies
        self._warming = [self._warm.remote(job if i == 0 else None) for i in range(tasks)]

    def workers(self) -> int:
        return max(1, int(self.ray.cluster_resources().get("CPU", 1)))

    def pieces(self, shards: int) -> int:
        """Sessions in ``PIECES_PER_SHARD`` pieces per shard when shards run side by side."""
        return shards if shards == 1 else shards * PIECES_PER_SHARD

    def start_build(self, job: BuildJob) -> Any:
        """Submit the build task now: it runs on a worker while the driver prepares."""
        return self._build.remote(job)

    def cancel(self, build: Any) -> None:
        with contextlib.suppress(Exception):
            self.ray.cancel(build, force=True)

    def run(
        self, jobs: Sequence[ShardJob], build: Any = None, limit: int | None = None
    ) -> Iterator[ShardOutput]:
        """At most ``limit`` tasks at once (the build task, still running, is one of them).
        While the build runs, the jobs that do not wait for it; once it is done, the ones
        that do first, so that the last jobs to run are the short ones and the workers
        finish together."""
        ray = self.ray
        others = [job for job in jobs if not job.built]
        learning = [job for job in jobs if job.built]
        active: list[Any] = [] if build is None else [build]
        most = max(1, limit or len(jobs) + len(active))
        building = build is not None
        try:
            while others or learning or active:
                while (others or learning) and len(active) < most:
                    take_learning = learning and (not building or not others)
                    job = (learning if take_learning else others).pop(0)
                    # Ray resolves a reference passed as an argument before the task starts
                    if job.built:
                        active.append(self._remote.remote(job, build))
                    else:
                        active.append(self._remote.remote(job, None, self._others()))
                done, active = ray.wait(active, num_returns=1)
                if build is not None and done[0] == build:
                    building = False
                    continue  # its jobs get it by reference (and its error, if it failed)
                yield self._get(done[0])
        finally:
            for ref in active:  # a failed shard: the others are not needed any more
                with contextlib.suppress(Exception):
                    ray.cancel(ref, force=True)

    def _others(self) -> Any:
        """The warming task's pickled strategies (a reference), if one builds them."""
        return self._warming[0] if self._warming else None

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
    """The jobs' outputs, put back in request order."""

    lists: np.ndarray
    latency: np.ndarray
    reports: dict[str, Any] = field(default_factory=dict)
    setup_seconds: float = 0.0
    tasks: list[dict[str, Any]] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)
    built: Built | None = None
    truth: Any = None  # replay.Truth of every request, from the jobs' parts


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
    """``engine.simulate`` run as ``shards`` shards on ``executor`` (``open_executor``),
    at most ``shards`` tasks at once; ``shards`` defaults to the executor's CPUs.
    ``options`` are ``simulate``'s (``shard`` included: its requests are then split into
    ``shards``). ``on_shard`` is called as each shard finishes. Returns the same
    ``SimulationResult`` as ``simulate`` (timings aside), with ``info["engine"]`` saying
    how it ran.

    The strategies that learn (the ranker) are built once, by a build task submitted
    before the driver prepares the replay (it reads the log and trains on a worker while
    the driver reads and writes the shards); each shard's other strategies are served by
    a job of their own that does not wait for the build."""
    from rtml_cli.fsutil import scratch_dir
    from rtml_cli.online import engine as eng

    strategies = options.pop("strategies", eng.DEFAULT_STRATEGIES)
    options.pop("progress", None)  # per shard instead: ``on_shard``
    settings = eng._validate(strategies, **{**eng.simulate_defaults(), **options})
    n = shards if shards is not None else executor.workers()
    if n < 1:
        raise UsageError(f"--shards must be at least 1, got {n}")
    clock = time.perf_counter()
    notes: list[str] = []
    art_source, run_dir = _resolve_run(artifacts, start, notes)
    learning = tuple(i for i, name in enumerate(settings.names) if _learns([name]))
    modules = tuple(str(m) for m in strategy_modules)
    with scratch_dir("shards") as work:
        build = None
        if learning:
            build = executor.start_build(
                BuildJob(
                    events=events if isinstance(events, (str, Path)) else _frame(events),
                    run_dir=run_dir,
                    settings=_only(settings, learning),
                    work=str(work),
                    strategy_modules=modules,
                )
            )
        try:
            other = tuple(i for i in range(len(settings.names)) if i not in learning)
            # the build task takes a worker itself; the first other one builds the others
            executor.warm(
                n - (build is not None),
                WarmJob(run_dir, _only(settings, other), modules) if other else None,
            )
            run = eng._prepare(events, art_source, settings, start=start, end=end, world=world)
            run.warnings[:0] = notes
            prepared = time.perf_counter()
            jobs = _write_jobs(run, settings, n, executor.pieces(n), work, modules, learning)
            written = time.perf_counter()
            collected = _collect(executor, jobs, run.data, settings, on_shard, build, n)
        except BaseException:
            if build is not None:
                executor.cancel(build)
            raise
        wall = time.perf_counter() - written
        sizes = _file_sizes(work)
    built = collected.built
    served: list[Any] = [_Reported(name, collected.reports.get(name)) for name in settings.names]
    summarising = time.perf_counter()
    result = eng._summarise(
        run,
        settings,
        served,
        collected.lists,
        collected.latency,
        collected.setup_seconds,
        wall,
        collected.truth,
    )
    summarised = time.perf_counter() - summarising
    result.info["engine"] = {
        **executor.describe(),
        "shards": n,
        "jobs": len(jobs),
        "hosts": len(collected.hosts),
        "prepare_seconds": round(prepared - clock, 3),  # the driver: read and prepare once
        # the build task (on a worker, while the driver prepares): read the log, train the
        # ranker, pickle; None when nothing learns or the strategies could not be pickled
        "build_seconds": None if built is None or built.data is None else round(built.seconds, 3),
        "built_bytes": None if built is None or built.data is None else len(built.data),
        "write_seconds": round(written - prepared, 3),  # the driver: shard files, count table
        "tasks_seconds": round(wall, 3),  # from the first job submitted to the last result
        "summarise_seconds": round(summarised, 3),  # the driver: metrics, intervals
        "pieces": executor.pieces(n),
        "tasks": sorted(collected.tasks, key=lambda t: (t["shard"], t["piece"], t["strategies"])),
        "bytes": sizes,
    }
    return result


def _resolve_run(artifacts: Any, start: Any, notes: list[str]) -> tuple[Any, str]:
    """What the driver prepares from (the artifacts as given, or the run ``--start``
    chooses) and the run directory every task loads: resolved once, here, so that a run
    published meanwhile cannot give the build task and the driver different ones."""
    from rtml_cli.batch.artifacts import Artifacts, resolve_run_dir
    from rtml_cli.online import engine as eng

    if isinstance(artifacts, Artifacts):
        return artifacts, str(artifacts.run_dir)
    chosen = eng._run_for(Path(artifacts), start, notes) if start is not None else artifacts
    run_dir = resolve_run_dir(chosen)
    return run_dir, str(run_dir)


def _frame(events: Any) -> Any:
    """A frame of events as the build task gets it (a lazy one collected once, here)."""
    import polars as pl

    return events.collect() if isinstance(events, pl.LazyFrame) else events


def _only(settings: Any, positions: Sequence[int]) -> Any:
    """``settings`` for the strategies at ``positions`` (the run's lags, hence the stream's
    reach, unchanged)."""
    import dataclasses

    return dataclasses.replace(settings, names=[settings.names[i] for i in positions])


def _file_sizes(work: Path) -> dict[str, int]:
    """Bytes of what the tasks read: the count table, the training window (only when the
    learning strategies could not be pickled), the shards."""
    from rtml_cli.online import shardio

    def size(path: Path) -> int:
        return path.stat().st_size if path.exists() else 0

    shards = [
        sum(size(p / shardio.EVENTS_FILE) for p in d.glob("piece=*"))
        for d in sorted(work.glob("shard=*"))
    ]
    return {
        "stream_table": size(work / shardio.STREAM_FILE),
        "training": size(work / "training" / shardio.EVENTS_FILE)
        + size(work / "training-stream.parquet"),
        "shard_files": sum(shards),
        "largest_shard_file": max(shards, default=0),
    }


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
    pieces: int,
    work: Path,
    modules: tuple[str, ...],
    learning: tuple[int, ...],
) -> list[ShardJob]:
    """Write the count table and the sessions of every piece (``pieces``, a multiple of
    ``n``: piece p is part of shard p mod n); per piece that has requests, a job for the
    strategies that do not learn and one for those that do (at ``learning``), the former
    first: the latter wait for the build task."""
    from rtml_cli.online import shardio

    data = run.data
    stream = shardio.write_stream(data, work / shardio.STREAM_FILE)
    key = shardio.shard_key(data.session_ids, pieces, settings.shard)
    has_request = np.zeros(len(data.session_ids), dtype=bool)
    has_request[data.req_sess] = True
    other = tuple(i for i in range(len(settings.names)) if i not in learning)
    groups = [(positions, positions is learning) for positions in (other, learning) if positions]
    jobs: list[list[ShardJob]] = [[] for _ in groups]
    # each piece's truth: by its first job (the others', which do not wait for the build)
    for p in range(pieces):
        keep = has_request & (key == p)
        if not keep.any():
            continue
        directory = shardio.write_events(
            shardio.slice_sessions(data, keep), work / f"shard={p % n + 1}" / f"piece={p + 1}"
        )
        for g, (positions, learns) in enumerate(groups):
            jobs[g].append(
                ShardJob(
                    shard=p % n + 1,
                    piece=p // n + 1,
                    shards=n,
                    events=str(directory),
                    stream=str(stream),
                    run_dir=str(run.art.run_dir),
                    settings=_only(settings, positions),
                    strategies=positions,
                    strategy_modules=modules,
                    built=learns,
                    truth=g == 0,
                )
            )
    return [job for group in jobs for job in group]


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
    build: Any = None,
    limit: int | None = None,
) -> _Collected:
    """Run the jobs; put each job's lists and latencies at its strategies' rows and its
    requests' positions; a shard is done when all its jobs are."""
    n, n_strat = data.n_requests, len(settings.names)
    position = np.full(int(data.request_id.max()) + 1 if n else 0, -1, dtype=np.int64)
    position[data.request_id] = np.arange(n)
    out = _Collected(
        lists=np.full((n_strat, n, settings.k), -1, dtype=np.int64),
        latency=np.zeros((n_strat, n), dtype=np.int64),
    )
    left: dict[int, int] = {}
    for job in jobs:
        left[job.shard] = left.get(job.shard, 0) + 1
    shards_done = done_requests = 0
    pieces: dict[int, dict[int, int]] = {}  # shard → piece → requests
    setup = {True: 0.0, False: 0.0}
    truths: list[tuple[np.ndarray, Any]] = []
    started = time.perf_counter()
    for shard in executor.run(jobs, build, limit):
        at = position[shard.request_id]
        if shard.truth is not None:
            truths.append((at, shard.truth))
        rows = np.asarray(shard.strategies, dtype=np.int64)[:, None]
        out.lists[rows, at[None, :], :] = shard.lists
        out.latency[rows, at[None, :]] = shard.latency
        _merge_reports(out.reports, shard.reports)
        learns = shard.built is not None
        setup[learns] = max(setup[learns], shard.setup_seconds)
        if learns:
            out.built = shard.built
        out.tasks.append(shard.timings())
        out.hosts.add(shard.host)
        pieces.setdefault(shard.shard, {})[shard.piece] = len(at)
        left[shard.shard] -= 1
        if left[shard.shard]:
            continue
        shards_done += 1
        done_requests += sum(pieces[shard.shard].values())
        if on_shard is not None:
            on_shard(shards_done, len(left), done_requests, n, time.perf_counter() - started)
    # as one run's: building every strategy (the learning ones: in the build task)
    build_seconds = out.built.seconds if out.built is not None else 0.0
    out.setup_seconds = build_seconds + setup[True] + setup[False]
    if truths and len(truths) == sum(job.truth for job in jobs):  # else: the driver's
        out.truth = _join_truth(truths, n)
    return out


def _join_truth(parts: list[tuple[np.ndarray, Any]], n: int) -> Any:
    """One ``Truth`` of the replay's ``n`` requests from the jobs' (each request in one job;
    ``at``: its requests' positions in the replay), as ``truth_for`` gives it for all:
    ``later_*`` pairs in request order, each request's in the order of its own part."""
    from rtml_cli.online.replay import Truth

    next_code = np.full(n, -1, dtype=np.int64)
    purchase_code = np.full(n, -1, dtype=np.int64)
    later_req, later_code = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for at, truth in parts:
        next_code[at] = truth.next_code
        purchase_code[at] = truth.purchase_code
        later_req.append(at[truth.later_req])
        later_code.append(np.asarray(truth.later_code, dtype=np.int64))
    req, code = np.concatenate(later_req), np.concatenate(later_code)
    order = np.argsort(req, kind="stable")
    return Truth(
        next_code=next_code,
        purchase_code=purchase_code,
        later_req=req[order],
        later_code=code[order],
    )


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
