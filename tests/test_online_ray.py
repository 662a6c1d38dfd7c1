"""Distributed replay (`--engine ray`, `--shards`): the same RESULTS as one process, on a local
two-node Ray cluster bound to the loopback interface; retries; bad input; Ray missing."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import zlib
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rtml_cli.cli import app
from rtml_cli.errors import ExitCode
from rtml_cli.online.distributed import KILL_SHARD_ENV
from rtml_cli.online.shardio import shard_key
from tests.online_fixtures import write_shop

# Windows/macOS refuse multi-node test clusters unless this is 1; keep it off (a no-op on Linux).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

STRATEGIES = "popular,session-embedding,session-itemknn,online-ranker"
#: fields that measure time, not results
TIMING = {"replay_seconds", "requests_per_second", "setup_seconds", "engine"}
TIMING |= {"train_seconds", "initial_seconds", "seconds"}  # retrain's
TIMING_PREFIXES = ("latency_", "seconds_per_", "time_ratio")
INVOCATION = {"command", "results"}  # the command line and --out differ between the runs
SMALL_NODE = {"num_cpus": 1, "object_store_memory": 100 * 2**20, "node_ip_address": "127.0.0.1"}


def _cli(*args: object):
    return CliRunner().invoke(app, [str(a) for a in args])


def _simulate(base: Path, *extra: object):
    return _cli(
        "simulate",
        base / "events.parquet",
        "--artifacts",
        base / "root",
        "--strategies",
        STRATEGIES,
        "--k",
        "8",
        "--candidates",
        "30",
        "--train-window",
        "1d",
        "--bootstrap",
        "200",
        "--format",
        "json",
        *extra,
    )


def _results(doc: object) -> object:
    """A document without its timing fields."""
    if isinstance(doc, dict):
        return {
            k: _results(v)
            for k, v in doc.items()
            if k not in TIMING | INVOCATION and not k.startswith(TIMING_PREFIXES)
        }
    if isinstance(doc, list):
        return [_results(v) for v in doc]
    return doc


def _same_results(a: Path, b: Path) -> None:
    left, right = pl.read_parquet(a), pl.read_parquet(b)
    assert left.columns == right.columns
    assert left.drop("latency_us").equals(right.drop("latency_us"))


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    return write_shop(tmp_path_factory.mktemp("shop"))


@pytest.fixture(scope="module")
def local_run(shop, tmp_path_factory):
    """The single-process run every distributed one must equal."""
    out = tmp_path_factory.mktemp("local") / "results.parquet"
    result = _simulate(shop, "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    return out, json.loads(result.stdout)


def _descendants(root: int) -> set[int]:
    """``root`` and every process below it (Linux /proc)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    family, todo = {root}, [root]
    while todo:
        pid = todo.pop()
        children = {c for c, p in parents.items() if p == pid} - family
        family |= children
        todo.extend(children)
    return family


def _socket_inodes(pids: set[int]) -> set[str]:
    inodes = set()
    for pid in pids:
        try:
            targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        inodes |= {t[8:-1] for t in targets if t.startswith("socket:[")}
    return inodes


def _ip(hexip: str) -> str:
    """An address of /proc/net/tcp{,6} (little-endian 32-bit words) as text."""
    raw = bytes.fromhex(hexip)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    return socket.inet_ntop(socket.AF_INET if len(raw) == 4 else socket.AF_INET6, words)


def _listening_ips(root: int) -> set[str]:
    """The IPs that TCP sockets of ``root`` and its descendants listen on."""
    inodes = _socket_inodes(_descendants(root))
    ips = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # LISTEN
                ips.add(_ip(fields[1].split(":")[0]))
    return ips


@pytest.fixture(scope="module")
def ray_cluster():
    """A two-node Ray cluster on this machine, loopback only, one CPU and 100 MB each."""
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True, head_node_args={**SMALL_NODE, "include_dashboard": False}
    )
    try:
        cluster.add_node(**SMALL_NODE)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


# --------------------------------------------------------------------------- on the cluster


def test_cluster_is_loopback_only(ray_cluster) -> None:
    import ray

    assert ray_cluster.address.startswith("127.0.0.1:")
    ray.init(address=ray_cluster.address, include_dashboard=False, log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
    finally:
        ray.shutdown()
    assert len(nodes) == 2
    assert {n["NodeManagerAddress"] for n in nodes} == {"127.0.0.1"}
    ips = _listening_ips(os.getpid())
    assert ips, "the cluster listens nowhere?"
    assert ips <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}, ips


def test_ray_results_equal_local(ray_cluster, shop, local_run, tmp_path) -> None:
    local_out, local_doc = local_run
    out = tmp_path / "results.parquet"
    result = _simulate(
        shop, "--engine", "ray", "--address", ray_cluster.address, "--shards", "3", "--out", out
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    _same_results(local_out, out)
    doc = json.loads(result.stdout)
    assert _results(doc) == _results(local_doc)
    engine = doc["info"]["engine"]
    assert engine["engine"] == "ray" and engine["shards"] == 3 and engine["nodes"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["results.parquet"]  # no temporary left
    # three shards in four pieces each; per piece, the ranker's job and the others' job
    assert engine["pieces"] == 12
    kinds = [t["strategies"] for t in engine["tasks"]]
    assert kinds.count("learning") == kinds.count("other") == engine["jobs"] // 2 > 3
    assert sum(t["requests"] for t in engine["tasks"]) == 2 * doc["info"]["requests"]
    assert engine["build_seconds"] is not None and engine["built_bytes"] > 0  # built once


def test_progress_shows_shards_and_rate(ray_cluster, shop) -> None:
    result = _cli(
        "simulate",
        shop / "events.parquet",
        "--artifacts",
        shop / "root",
        "--strategies",
        "popular",
        "--engine",
        "ray",
        "--address",
        ray_cluster.address,
        "--shards",
        "2",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "shards done: 1/2" in result.stderr and "shards done: 2/2" in result.stderr
    assert "requests/s" in result.stderr
    assert "HR@20" in result.stdout


def test_killed_task_is_retried(ray_cluster, shop, local_run, tmp_path, monkeypatch) -> None:
    marker = tmp_path / "killed-once"
    monkeypatch.setenv(KILL_SHARD_ENV, str(marker))
    out = tmp_path / "results.parquet"
    result = _simulate(
        shop, "--engine", "ray", "--address", ray_cluster.address, "--shards", "2", "--out", out
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert marker.exists(), "no task was killed"
    _same_results(local_run[0], out)


def test_retrain_ray_equals_local(ray_cluster, tmp_path) -> None:
    events = Path(__file__).resolve().parent.parent / "sample_data" / "shop" / "events.parquet"
    args = [
        "retrain",
        events,
        "--start",
        "2024-03-23",
        "--end",
        "2024-03-25",
        "--schedules",
        "never,stateful:1d",
        "--sample",
        "3",
        "--trees",
        "2",
        "--dim",
        "8",
        "--format",
        "json",
    ]
    local = _cli(*args)
    assert local.exit_code == ExitCode.OK, local.stderr
    ray_run = _cli(*args, "--engine", "ray", "--address", ray_cluster.address, "--shards", "2")
    assert ray_run.exit_code == ExitCode.OK, ray_run.stderr
    left, right = json.loads(local.stdout), json.loads(ray_run.stdout)
    assert right["params"]["engine"] == "ray" and right["params"]["shards"] == 2
    for doc in (left, right):
        doc["params"].pop("engine")
        doc["params"].pop("shards")
    assert _results(left) == _results(right)
    assert left["schedules"][0]["requests"] > 0


def test_plugin_strategy_runs_in_the_tasks(ray_cluster, shop, tmp_path) -> None:
    """A --strategy-module file is imported by every task, and serves what it serves locally."""
    from rtml_cli.online.strategies import REGISTRY

    plugin = Path(__file__).resolve().parent.parent / "examples/plugin/src/rtml_category_popular.py"
    before = set(REGISTRY.names())
    args = ["--strategies", "popular,category-popular", "--strategy-module", plugin]
    try:
        local = _simulate(shop, *args, "--out", tmp_path / "local.parquet")
        assert local.exit_code == ExitCode.OK, local.stderr
        ray_run = _simulate(
            shop,
            *args,
            "--engine",
            "ray",
            "--address",
            ray_cluster.address,
            "--shards",
            "2",
            "--out",
            tmp_path / "ray.parquet",
        )
        assert ray_run.exit_code == ExitCode.OK, ray_run.stderr
    finally:
        for name in set(REGISTRY.names()) - before:
            REGISTRY.remove(name)
    _same_results(tmp_path / "local.parquet", tmp_path / "ray.parquet")
    assert _results(json.loads(local.stdout)) == _results(json.loads(ray_run.stdout))


# --------------------------------------------------------------------------- without a cluster


def test_local_shards_equal_one_run(shop, local_run, tmp_path) -> None:
    out = tmp_path / "results.parquet"
    result = _simulate(shop, "--shards", "4", "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    _same_results(local_run[0], out)
    doc = json.loads(result.stdout)
    assert _results(doc) == _results(local_run[1])
    engine = doc["info"]["engine"]
    assert engine["build_seconds"] is not None and engine["built_bytes"] > 0  # built once
    assert engine["bytes"]["training"] == 0  # the tasks need no training window


def test_tasks_use_the_micro_batch(shop, local_run, tmp_path, monkeypatch) -> None:
    """--micro-batch reaches every job's replay (the lists do not depend on it)."""
    from rtml_cli.online import engine as eng

    seen: list[int] = []
    serve = eng._serve

    def spy(*args, **kwargs):
        seen.append(args[5] if len(args) > 5 else kwargs["micro_batch"])
        return serve(*args, **kwargs)

    monkeypatch.setattr(eng, "_serve", spy)
    out = tmp_path / "results.parquet"
    result = _simulate(shop, "--shards", "2", "--micro-batch", "7", "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    assert seen and set(seen) == {7}
    _same_results(local_run[0], out)


def test_unpicklable_strategies_are_built_in_the_tasks(shop, local_run, tmp_path, monkeypatch):
    """A strategy that cannot be pickled: every task builds it from the training window."""
    from rtml_cli.online import distributed

    monkeypatch.setattr(distributed, "pack_strategies", lambda served, env: None)
    out = tmp_path / "results.parquet"
    result = _simulate(shop, "--shards", "2", "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    _same_results(local_run[0], out)
    doc = json.loads(result.stdout)
    assert _results(doc) == _results(local_run[1])
    engine = doc["info"]["engine"]
    assert engine["build_seconds"] is None and engine["bytes"]["training"] > 0


def _built(shop: Path):
    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import engine as eng
    from rtml_cli.online.engine import simulate_defaults

    options = {**simulate_defaults(), "k": 8, "n_candidates": 30}
    settings = eng._validate([*STRATEGIES.split(","), "batch"], **options)
    env = eng._env(load_artifacts(shop / "root"), settings, None)
    return eng._build_in(env, settings)[0], env, settings


def test_packed_strategies_bind_the_tasks_artifacts(shop) -> None:
    """The built strategies travel without the artifacts; unpacked, they share one Env bound
    to the task's own artifacts and answer as the originals do."""
    import numpy as np

    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online.distributed import pack_strategies, unpack_strategies

    served, env, settings = _built(shop)
    packed = pack_strategies(served, env)
    assert packed is not None
    mine = load_artifacts(shop / "root")
    unpacked, _ = unpack_strategies(packed, mine)
    assert [s.name for s in unpacked] == settings.names
    envs = {id(s.env) for s in unpacked if hasattr(s, "env")}
    assert len(envs) == 1 and unpacked[0].env.artifacts is mine
    assert unpacked[0].env.index is mine.index and unpacked[0].env.training is None
    np.testing.assert_array_equal(unpacked[-2].coef, served[-2].coef)  # the ranker, trained


def test_batch_lists_are_the_artifacts_lists(shop) -> None:
    """The ``batch`` strategy's CSR lists hold each user's precomputed list, known items only."""
    from rtml_cli.online.stage1 import Batch

    served, env, _ = _built(shop)
    batch = next(s for s in served if isinstance(s, Batch))
    recs = env.artifacts.user_recs
    assert set(batch.rows) == set(recs)
    for user, items in recs.items():
        row = batch.rows[user]
        mine = batch.items[batch.indptr[row] : batch.indptr[row + 1]].tolist()
        assert mine == [i for i in items.tolist() if i >= 0]


@pytest.mark.parametrize("protocol", ["next-unseen", "next-item"])
def test_the_pieces_truth_joined_is_the_runs_truth(shop, tmp_path, protocol) -> None:
    """Each piece's job works out its requests' truth; joined, it is ``truth_for`` of the
    whole replay, pair for pair (so the driver need not compute it)."""
    import numpy as np

    from rtml_cli.online import distributed as d
    from rtml_cli.online import engine as eng
    from rtml_cli.online.replay import truth_for
    from rtml_cli.online.shardio import read_replay

    settings = eng._validate(
        STRATEGIES.split(","), **{**eng.simulate_defaults(), "protocol": protocol}
    )
    art, _ = d._resolve_run(shop / "root", None, [])
    run = eng._prepare(shop / "events.parquet", art, settings, start=None, end=None, world=None)
    data = run.data
    jobs = d._write_jobs(run, settings, 2, 8, tmp_path, (), (3,))
    assert sum(job.truth for job in jobs) == len({job.events for job in jobs}) > 2
    position = np.full(int(data.request_id.max()) + 1, -1, dtype=np.int64)
    position[data.request_id] = np.arange(data.n_requests)
    parts = []
    for job in jobs[::-1]:  # in any order the jobs finish
        if job.truth:
            piece = read_replay(Path(job.events), Path(job.stream))
            parts.append((position[piece.request_id], truth_for(piece, protocol)))
    joined, whole = d._join_truth(parts, data.n_requests), truth_for(data, protocol)
    for name in ("next_code", "purchase_code", "later_req", "later_code"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


def test_sharded_driver_takes_the_truth_from_the_tasks(shop, local_run, tmp_path, monkeypatch):
    from rtml_cli.online import engine as eng

    def driver_truth(*args, **kwargs):
        raise AssertionError("the driver worked out the truth itself")

    monkeypatch.setattr(eng, "truth_for", driver_truth)
    out = tmp_path / "results.parquet"
    result = _simulate(shop, "--shards", "2", "--out", out)
    assert result.exit_code == ExitCode.OK, result.stderr
    _same_results(local_run[0], out)


def test_the_warming_task_builds_the_other_strategies_once(shop) -> None:
    """A job handed the warming task's pickled strategies serves with them (nothing built)
    and answers as a job that built its own."""
    import numpy as np

    from rtml_cli.online import distributed as d
    from rtml_cli.online import engine as eng

    settings = eng._validate(["popular", "session-itemknn"], **eng.simulate_defaults())
    art, run_dir = d._resolve_run(shop / "root", None, [])
    run = eng._prepare(shop / "events.parquet", art, settings, start=None, end=None, world=None)
    try:
        packed = d.warm_worker(d.WarmJob(run_dir, settings))
        assert packed is not None and "other" in d._WORKER_CACHE
    finally:
        d._WORKER_CACHE.clear()
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        (job,) = d._write_jobs(run, settings, 1, 1, Path(work), (), ())
        built = d.run_shard(job, None, {})
        cache: dict = {}
        taken = d.run_shard(job, None, cache, packed)
    assert cache["other"][1] is packed  # unpickled, not built again
    np.testing.assert_array_equal(taken.lists, built.lists)


def test_local_shards_within_one_shard(shop, tmp_path) -> None:
    """--shard i/n with --shards N: shard i's requests, split again, equal shard i alone."""
    one, split = tmp_path / "one.parquet", tmp_path / "split.parquet"
    assert _simulate(shop, "--shard", "2/3", "--out", one).exit_code == ExitCode.OK
    result = _simulate(shop, "--shard", "2/3", "--shards", "2", "--out", split)
    assert result.exit_code == ExitCode.OK, result.stderr
    _same_results(one, split)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--engine", "spark"], "--engine must be one of local, ray"),
        (["--shards", "0"], "--shards must be at least 1"),
        (["--engine", "ray", "--shards", "-2"], "--shards must be at least 1"),
        (["--address", "127.0.0.1:6379"], "use it with --engine ray"),
    ],
)
def test_bad_engine_options(shop, tmp_path, extra, message) -> None:
    out = tmp_path / "results.parquet"
    result = _simulate(shop, *extra, "--out", out)
    assert result.exit_code == ExitCode.USAGE, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_retrain_bad_engine(tmp_path) -> None:
    events = Path(__file__).resolve().parent.parent / "sample_data" / "shop" / "events.parquet"
    out = tmp_path / "out"
    result = _cli("retrain", events, "--engine", "dask", "--out", out)
    assert result.exit_code == ExitCode.USAGE
    assert "--engine must be one of local, ray" in result.stderr and not out.exists()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_address_is_exit_69_fast(shop, tmp_path) -> None:
    pytest.importorskip("ray")
    out = tmp_path / "results.parquet"
    started = time.monotonic()
    result = _simulate(
        shop, "--engine", "ray", "--address", f"127.0.0.1:{_free_port()}", "--out", out
    )
    assert result.exit_code == ExitCode.UNAVAILABLE == 69, result.stderr
    assert time.monotonic() - started < 15
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no Ray cluster answers at 127.0.0.1:" in lines[0], lines
    assert not out.exists() and not list(tmp_path.iterdir())


def test_missing_ray_is_a_usage_error(shop, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    out = tmp_path / "results.parquet"
    result = _simulate(shop, "--engine", "ray", "--out", out)
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'rtml[ray]'" in lines[0], lines
    assert not out.exists()


def test_help_does_not_import_ray() -> None:
    code = "import sys; from rtml_cli.cli import app; assert 'ray' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("shards", [1, 3])
def test_shard_files_round_trip(tmp_path, shards) -> None:
    """Each shard's file gives back its requests (global ids), their histories and times,
    and the count table gives back the stream's counts."""
    import numpy as np

    from rtml_cli.online import replay, shardio
    from tests.online_fixtures import AS_OF, tiny_events

    events = tiny_events()
    items = np.asarray(sorted(events["item_id"].unique().to_list()))
    data = replay.prepare(events, items, [], start=replay.to_us(AS_OF), end=None)
    stream = shardio.write_stream(data, tmp_path / "stream.parquet")
    key = shardio.shard_key(data.session_ids, shards)
    seen = []
    where = {int(r): j for j, r in enumerate(data.request_id)}
    for i in range(shards):
        part = shardio.read_replay(
            shardio.write_events(shardio.slice_sessions(data, key == i), tmp_path / f"s{i}"),
            stream,
        )
        for j, rid in enumerate(part.request_id.tolist()):
            k = where[rid]
            s, row = part.req_sess[j], part.req_row[j]
            s0 = data.sess_start[data.req_sess[k]]
            assert part.session_ids[s] == data.session_ids[data.req_sess[k]]
            assert part.ts[row] == data.ts[data.req_row[k]]
            mine = part.code[part.sess_start[s] : row]
            assert mine.tolist() == data.code[s0 : data.req_row[k]].tolist()
        seen += part.request_id.tolist()
        assert sorted(part.stream_ts.tolist()) == sorted(data.stream_ts.tolist())
        pairs = sorted(zip(part.stream_item.tolist(), part.stream_kind.tolist(), strict=True))
        want = sorted(zip(data.stream_item.tolist(), data.stream_kind.tolist(), strict=True))
        assert pairs == want
    assert sorted(seen) == data.request_id.tolist()


@settings(max_examples=50, deadline=None)
@given(
    ids=st.lists(
        st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12),
        min_size=1,
        max_size=40,
    ),
    n=st.integers(1, 7),
    m=st.integers(1, 5),
)
def test_shard_key_splits_an_outer_shard(ids, n, m) -> None:
    """Inside an outer shard i/m the key is (CRC-32 div m) mod n: every shard reachable,
    and without one it is the documented CRC-32 mod n."""
    crc = [zlib.crc32(s.encode()) for s in ids]
    assert shard_key(ids, n).tolist() == [c % n for c in crc]
    assert shard_key(ids, n, (1, m)).tolist() == [(c // m) % n for c in crc]


def test_a_worker_cache_takes_a_run_published_again_under_the_same_id_as_new(tmp_path):
    """A Ray worker keeps a run's artifacts between jobs; a run deleted and computed again
    under the same directory (same as-of, same id) must not be served from the old copy."""
    from rtml_cli.online.distributed import _cached, _published

    run = tmp_path / "runs" / "20240101T000000Z"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text('{"run": 1}')
    cache: dict = {}
    loads: list[int] = []

    def load(n: int):
        def make():
            loads.append(n)
            return n

        return make

    key = ("artifacts", str(run), _published(str(run)))
    assert _cached(cache, key, load(1)) == 1
    assert _cached(cache, ("artifacts", str(run), _published(str(run))), load(2)) == 1
    fresh = tmp_path / "manifest.tmp"  # published again: a new file renamed into place
    fresh.write_text('{"run": 2, "again": true}')
    os.replace(fresh, run / "manifest.json")
    assert _cached(cache, ("artifacts", str(run), _published(str(run))), load(3)) == 3
    assert loads == [1, 3]
