"""Micro-batched serving (``--micro-batch``, ``--ann ivf``): the same lists as one request at a
time, no peeking, and the IVF searcher's answers."""

from __future__ import annotations

import functools
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import UsageError
from rtml_cli.online import simulate
from rtml_cli.online.ivf import IVFIndex
from tests.online_fixtures import AS_OF, write_shop

# the batching strategies with the IVF searcher, next to per-request ones
NAMES = (
    "popular",
    "session-embedding",
    "session-embedding-decay",
    "session-itemknn",
    "online-ranker",
    "online-ranker-no-batch@5m",
)
FAST = dict(k=8, n_candidates=30, max_train_requests=300, train_window=timedelta(days=1))
IVF = dict(ann="ivf", nprobe=3)  # 3 of the tiny shop's 15 lists: approximate, not exact


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = write_shop(tmp_path_factory.mktemp("shop"))
    return base, pl.read_parquet(base / "events.parquet")


@pytest.fixture(scope="module")
def one_by_one(shop):
    base, events = shop
    return simulate(
        events, base / "root", strategies=NAMES, keep_lists=True, micro_batch=1, **IVF, **FAST
    )


@pytest.mark.parametrize("micro_batch", [7, 256])
def test_batched_results_equal_one_request_at_a_time(shop, one_by_one, micro_batch):
    base, events = shop
    batched = simulate(
        events, base / "root", strategies=NAMES, micro_batch=micro_batch, **IVF, **FAST
    )
    assert batched.frame.drop("latency_us").equals(one_by_one.frame.drop("latency_us"))
    assert batched.info["micro_batch"] == micro_batch and batched.info["ann"] == "ivf"


def test_batched_latency_is_the_call_shared_by_its_requests(shop):
    base, events = shop
    result = simulate(
        events, base / "root", strategies=("session-embedding",), micro_batch=5, **IVF, **FAST
    )
    latency = result.frame["latency_us"].to_numpy()
    n = len(latency) // 5 * 5
    per_batch = latency[:n].reshape(-1, 5)
    assert (per_batch == per_batch[:, :1]).all() and (latency > 0).all()


def test_ivf_differs_from_annoy_only_in_the_search(shop, one_by_one):
    base, events = shop
    annoy = simulate(events, base / "root", strategies=("session-embedding",), **FAST)
    ivf = one_by_one.summary_for("session-embedding")
    assert annoy.info["ann"] == "annoy" and annoy.info["nprobe"] is None
    # the same strategy on the same session vectors: close quality, not identical lists
    assert abs(annoy.summary_for("session-embedding")["hr"] - ivf["hr"]) < 0.1


def test_no_peeking_with_micro_batches(shop, one_by_one):
    """A batch never lets a request see a later one: scrambling the future changes nothing."""
    base, events = shop
    cutoff = AS_OF + timedelta(hours=10)
    future = events.filter(pl.col("ts") > cutoff)
    rng = np.random.default_rng(7)
    scrambled = future.with_columns(
        pl.Series("item_id", rng.permutation(future["item_id"].to_numpy())),
        pl.Series("session_id", rng.permutation(future["session_id"].to_numpy())),
    )
    mixed = pl.concat([events.filter(pl.col("ts") <= cutoff), scrambled])
    again = simulate(mixed, base / "root", strategies=NAMES, keep_lists=True, **IVF, **FAST)

    def before(result):
        frame = result.frame.filter(pl.col("strategy") == NAMES[0])
        return (frame["ts"] <= cutoff).to_numpy()

    mask, mask_again = before(one_by_one), before(again)
    assert mask.sum() > 50 and mask.sum() == mask_again.sum()
    for name in NAMES:
        assert np.array_equal(again.lists[name][mask_again], one_by_one.lists[name][mask]), name


@pytest.mark.parametrize(
    ("option", "message"),
    [
        (dict(ann="faiss"), "--ann must be one of annoy, ivf"),
        (dict(nprobe=0), "--nprobe must be at least 1"),
        (dict(micro_batch=0), "--micro-batch must be at least 1"),
    ],
)
def test_bad_batching_options_are_usage_errors(shop, option, message):
    base, events = shop
    with pytest.raises(UsageError, match=message):
        simulate(events, base / "root", strategies=("popular",), **option, **FAST)


def test_cli_ann_ivf(invoke, shop, tmp_path):
    base, _ = shop
    result = invoke(
        "simulate",
        base / "events.parquet",
        "--artifacts",
        base / "root",
        "--strategies",
        "session-embedding",
        "--ann",
        "ivf",
        "--nprobe",
        "4",
        "--micro-batch",
        "16",
        "--bootstrap",
        "0",
        "--format",
        "json",
    )
    assert result.exit_code == 0, result.output
    assert '"ann": "ivf"' in result.stdout and '"micro_batch": 16' in result.stdout


def test_batched_ranker_features_are_the_per_request_features(shop):
    """The vectorised features of every (request, candidate) row are ``features()``'s."""
    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import replay
    from rtml_cli.online.base import Env
    from rtml_cli.online.stage3_batch import batch_candidates, batch_features
    from rtml_cli.online.strategies import build

    base, events = shop
    art = load_artifacts(base / "root")
    env = Env(art, n_candidates=30, ann="ivf", nprobe=3)
    ranker = build("online-ranker", env)
    start = replay.to_us(AS_OF)
    data = replay.prepare(events, art.item_ids, [], start=start, end=None)
    streams = replay.streams_for(data, {ranker.lag})
    rows, sesses = data.req_row.tolist(), data.req_sess.tolist()
    batch = [replay.request_at(data, j, rows, sesses, streams) for j in range(40, 100)]
    for stream in streams.values():
        stream.advance(batch[0].ts)
    cands = batch_candidates(env, batch)
    together = batch_features(ranker, batch, cands)
    assert len(np.unique(cands.req)) > 50
    for r in range(0, len(batch), 6):  # one request at a time, the stream at its own time
        for stream in streams.values():
            stream.advance(batch[r].ts)
        cand, vector, knn = ranker.candidates(batch[r])
        a, b = cands.bounds[r], cands.bounds[r + 1]
        assert np.array_equal(cands.item[a:b], cand)
        alone = ranker.features(batch[r], cand, vector, knn)
        np.testing.assert_allclose(together[a:b], alone, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the searcher


def _unit(seed: int, n: int, dim: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_ivf_probing_every_list_is_exact_search():
    unit = _unit(0, 500, 8)
    index = IVFIndex(unit, n_lists=12, seed=1)
    queries = _unit(1, 40, 8) * 3.0  # length does not matter: cosine
    exact = np.argsort(-(queries / 3.0) @ unit.T, axis=1, kind="stable")[:, :15]
    assert np.array_equal(index.search(queries, 15, nprobe=12), exact)
    assert sorted(index.items.tolist()) == list(range(500))


def test_ivf_pads_with_minus_one_when_the_probed_lists_run_dry():
    index = IVFIndex(_unit(2, 30, 4), n_lists=6, seed=0)
    out = index.search(_unit(3, 5, 4), 30, nprobe=1)
    assert (out[:, -1] == -1).all()
    for row in out:
        found = row[row >= 0]
        assert len(found) == len(set(found.tolist())) > 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(1, 59), nprobe=st.integers(1, 6))
def test_ivf_answer_does_not_depend_on_the_rest_of_the_batch(seed, cut, nprobe):
    unit = _unit(seed, 400, 16)
    index = IVFIndex(unit, n_lists=10, seed=seed)
    queries = _unit(seed + 1, 60, 16)
    whole = index.search(queries, 12, nprobe)
    parts = np.concatenate(
        [index.search(queries[:cut], 12, nprobe), index.search(queries[cut:], 12, nprobe)]
    )
    assert np.array_equal(whole, parts)
    alone = np.concatenate([index.search(q[None], 12, nprobe) for q in queries[::7]])
    assert np.array_equal(whole[::7], alone)


@functools.cache
def _served():
    """The tiny shop's IVF strategies and 120 consecutive requests (built once)."""
    import tempfile
    from pathlib import Path

    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.online import replay
    from rtml_cli.online.base import Env
    from rtml_cli.online.strategies import build

    base = write_shop(Path(tempfile.mkdtemp(prefix="rtml-microbatch-")))
    events = pl.read_parquet(base / "events.parquet")
    art = load_artifacts(base / "root")
    as_of = replay.to_us(AS_OF)
    train = replay.prepare(events, art.item_ids, [], start=as_of - 86_400_000_000, end=as_of)
    env = Env(art, n_candidates=30, ann="ivf", nprobe=3, training=lambda: train)
    strategies = [build(name, env) for name in ("session-embedding", "online-ranker")]
    data = replay.prepare(events, art.item_ids, [], start=as_of, end=None)
    return strategies, data


@settings(max_examples=15, deadline=None)
@given(cuts=st.lists(st.integers(1, 119), max_size=6, unique=True))
def test_any_split_into_micro_batches_serves_the_same_lists(cuts):
    from rtml_cli.online import replay

    strategies, data = _served()
    bounds = [0, *sorted(cuts), 120]
    served = []
    streams = replay.streams_for(data, {s.lag for s in strategies if s.lag is not None})
    rows, sesses = data.req_row.tolist(), data.req_sess.tolist()
    for lo, hi in zip(bounds, bounds[1:], strict=False):
        batch = [replay.request_at(data, j, rows, sesses, streams) for j in range(lo, hi)]
        for stream in streams.values():
            stream.advance(batch[0].ts)
        served.append([np.stack(s.recommend_batch(batch, 8)) for s in strategies])
    together = [np.concatenate([part[i] for part in served]) for i in range(len(strategies))]
    streams = replay.streams_for(data, {s.lag for s in strategies if s.lag is not None})
    for j in range(0, 120, 11):  # one request alone, the stream at its own time
        request = replay.request_at(data, j, rows, sesses, streams)
        for stream in streams.values():
            stream.advance(request.ts)
        for i, strategy in enumerate(strategies):
            assert np.array_equal(strategy.recommend(request, 8), together[i][j])


def _truth_reference(codes, events, req_row, sess_start, sess_end):
    """``truth_for`` (next-unseen) as the plain Python loop it was before the kernel."""
    n = len(req_row)
    next_code, purchase_code = np.full(n, -1), np.full(n, -1)
    pairs = []
    for r in range(n):
        seen = set(codes[sess_start[r] : req_row[r]].tolist())
        fresh, buy = [], -1
        for j in range(req_row[r], sess_end[r]):
            item = int(codes[j])
            if item in seen:
                continue
            if not fresh:
                next_code[r] = item
            if item not in fresh:
                fresh.append(item)
            if buy < 0 and 1 <= events[j] <= 2:
                buy = item
        if fresh:
            purchase_code[r] = buy
            pairs += [(r, item) for item in fresh]
    return next_code, purchase_code, pairs


def _random_sessions(lengths, seed):
    """Sessions of ``lengths`` events over 9 items (few items: many re-views), a request
    at every event but each session's first: the codes, the events, and per request its
    row, its session's start and its session's end."""
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 9, sum(lengths)).astype(np.int64)
    events = rng.integers(0, 4, sum(lengths)).astype(np.int8)
    ends = np.cumsum(lengths)
    req_row, s0, s1 = [], [], []
    for a, b in zip((ends - np.asarray(lengths)).tolist(), ends.tolist(), strict=True):
        for row in range(a + 1, b):
            req_row.append(row), s0.append(a), s1.append(b)
    return codes, events, *(np.asarray(x, dtype=np.int64) for x in (req_row, s0, s1))


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=15),
    seed=st.integers(0, 10_000),
)
def test_truth_kernel_is_the_python_loop(lengths, seed):
    from rtml_cli.online.kernels import next_unseen_truth

    codes, events, *args = _random_sessions(lengths, seed)
    got = next_unseen_truth(codes, events, *args, 9)
    want = _truth_reference(codes, events, *args)
    assert np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
    assert list(zip(got[2].tolist(), got[3].tolist(), strict=True)) == want[2]


def test_ivf_serve_probing_every_list_is_exact_search_without_the_seen_items():
    unit = _unit(4, 300, 8)
    emb = (unit * 2.5).astype(np.float32)
    index = IVFIndex(unit, n_lists=9, seed=0)
    codes = np.array([5, 7, 300, 5, 11, 300, 299], dtype=np.int64)  # 300: an unknown item
    starts, ends = np.array([0, 2, 3, 5]), np.array([2, 3, 7, 7])
    out = index.serve(codes, starts, ends, emb, k=10, nprobe=9)
    assert (out[1] == [-2] + [-1] * 9).all()  # only the unknown item: no session vector
    for q in (0, 2, 3):
        hist = [c for c in codes[starts[q] : ends[q]].tolist() if c < 300]
        scores = unit @ emb[hist].sum(axis=0)
        scores[hist] = -np.inf
        assert out[q].tolist() == np.argsort(-scores, kind="stable")[:10].tolist()
    kept = index.serve(codes, starts, ends, emb, k=10, nprobe=9, exclude_seen=False)
    scores = unit @ emb[[5, 7]].sum(axis=0)  # the session's own items may come back
    assert kept[0].tolist() == np.argsort(-scores, kind="stable")[:10].tolist()
    assert {5, 7} & set(np.argsort(-scores)[:10].tolist()) == {5, 7} & set(kept[0].tolist())


def _next_item_reference(codes, events, req_row, sess_end):
    """``truth_for`` (next-item) as the numpy loop it was before the kernel."""
    purchase, later_req, later_code = np.full(len(req_row), -1), [], []
    for r, (row, end) in enumerate(zip(req_row.tolist(), sess_end.tolist(), strict=True)):
        rest = codes[row:end]
        buys = np.flatnonzero((events[row:end] >= 1) & (events[row:end] <= 2))
        if len(buys):
            purchase[r] = rest[buys[0]]
        fresh = np.unique(rest)
        later_code += fresh.tolist()
        later_req += [r] * len(fresh)
    return purchase, later_req, later_code


@settings(max_examples=40, deadline=None)
@given(
    lengths=st.lists(st.integers(1, 12), min_size=1, max_size=15),
    seed=st.integers(0, 10_000),
)
def test_next_item_truth_kernel_is_the_numpy_loop(lengths, seed):
    from rtml_cli.online.kernels import next_item_truth

    codes, events, req_row, _, s1 = _random_sessions(lengths, seed)
    args = [req_row, s1]
    got = next_item_truth(codes, events, *args, 9)
    want = _next_item_reference(codes, events, *args)
    assert np.array_equal(got[0], want[0])
    assert got[1].tolist() == want[1] and got[2].tolist() == want[2]


@pytest.mark.parametrize("protocol", ["next-unseen", "next-item"])
def test_ranker_reads_a_replay_batch_as_it_reads_its_requests(protocol):
    """The ranker's micro-batch read straight from the replay arrays (``RequestBatch``, no
    ``Request`` objects) gives the candidates, features and lists its ``Request`` objects
    give, bit for bit, under either protocol; with 30 candidates the kNN cut (and its
    ties) is exercised."""
    from rtml_cli.online import replay
    from rtml_cli.online.stage3_batch import batch_candidates, batch_features

    strategies, data = _served()
    ranker = strategies[1]
    streams = replay.streams_for(data, {ranker.lag})
    rows, sesses = data.req_row.tolist(), data.req_sess.tolist()
    arrays = replay.RequestBatch(data, 10, 110, rows, sesses, streams, protocol)
    objects = [replay.request_at(data, j, rows, sesses, streams, protocol) for j in range(10, 110)]
    for stream in streams.values():
        stream.advance(objects[0].ts)
    a, b = batch_candidates(ranker.env, arrays), batch_candidates(ranker.env, objects)
    for field in ("item", "bounds", "vectors", "knn_keys", "knn_score", "knn_best"):
        assert np.array_equal(getattr(a, field), getattr(b, field)), field
    assert np.array_equal(batch_features(ranker, arrays, a), batch_features(ranker, objects, b))
    assert np.array_equal(
        np.stack(ranker.recommend_batch(arrays, 8)), np.stack(ranker.recommend_batch(objects, 8))
    )


def test_ivf_lists_cached_on_disk_are_the_lists_built(tmp_path, monkeypatch):
    """``IVFIndex.cached``: built once per set of embeddings, read back identical; a broken
    file is rebuilt; ``RTML_CACHE_DIR=off`` writes nothing."""
    unit = _unit(5, 300, 8)
    built = IVFIndex(unit, seed=3)
    monkeypatch.setenv("RTML_CACHE_DIR", str(tmp_path / "cache"))
    first = IVFIndex.cached(unit, seed=3)
    (path,) = (tmp_path / "cache").glob("ivf-*.npz")
    with monkeypatch.context() as m:  # the second one is read, not built
        m.setattr(IVFIndex, "__init__", lambda *a, **k: pytest.fail("rebuilt"))
        second = IVFIndex.cached(unit, seed=3)
    for index in (first, second):
        for name in ("centroids", "centroids64", "sizes", "offsets", "items", "vectors"):
            assert np.array_equal(getattr(index, name), getattr(built, name)), name
    assert len(list((tmp_path / "cache").glob("ivf-*.npz"))) == 1
    assert not np.array_equal(IVFIndex.cached(unit, seed=4).centroids, built.centroids)
    path.write_bytes(b"not a zip")
    assert np.array_equal(IVFIndex.cached(unit, seed=3).items, built.items)
    monkeypatch.setenv("RTML_CACHE_DIR", "off")
    IVFIndex.cached(_unit(6, 300, 8), seed=3)
    assert len(list((tmp_path / "cache").glob("ivf-*.npz"))) == 2


def test_ivf_cache_keeps_the_most_recently_used_and_clears_killed_writes(tmp_path, monkeypatch):
    """A daily precompute makes new embeddings each day: the cache keeps ``CACHE_KEEP``
    sets of lists, the most recently used (a read counts as a use); a temporary file a
    killed write left behind goes once it is stale, one being written now stays."""
    import os
    import time

    from rtml_cli.online import ivf

    cache = tmp_path / "cache"
    monkeypatch.setenv("RTML_CACHE_DIR", str(cache))
    monkeypatch.setattr(ivf, "CACHE_KEEP", 3)
    now = time.time()
    first = _unit(10, 200, 8)
    IVFIndex.cached(first, seed=0)
    (first_file,) = cache.glob("ivf-*.npz")
    os.utime(first_file, (now - 500, now - 500))
    for i in range(3):  # three newer sets: the first is the oldest of four
        IVFIndex.cached(_unit(11 + i, 200, 8), seed=0)
        (newest,) = [p for p in cache.glob("ivf-*.npz") if p.stat().st_mtime >= now - 1]
        os.utime(newest, (now - 400 + 100 * i, now - 400 + 100 * i))
    assert len(list(cache.glob("ivf-*.npz"))) == 3
    assert not first_file.exists()  # the least recently used went
    oldest = min(cache.glob("ivf-*.npz"), key=lambda p: p.stat().st_mtime)
    IVFIndex.cached(_unit(11, 200, 8), seed=0)  # read back: used now
    assert oldest.stat().st_mtime >= now - 1
    stale, live = cache / "ivf-killed01.tmp", cache / "ivf-writing1.tmp"  # tempfile-like names
    # another program's files in a shared directory: never rtml's to remove, however old
    theirs = [cache / "ivf-flat-products.npz", cache / "ivf-mymodel.tmp", cache / "x.tmp"]
    for path in (stale, live, *theirs):
        path.write_bytes(b"half")
    for path in (stale, *theirs):
        os.utime(path, (now - 2 * ivf.STALE_TMP_SECONDS,) * 2)
    IVFIndex.cached(first, seed=0)  # built again (pruned), written, the cache pruned
    kept = sorted(p for p in cache.glob("ivf-*.npz") if p not in theirs)
    assert len(kept) == 3 and first_file in kept and oldest in kept
    assert not stale.exists() and live.exists()
    assert all(path.exists() for path in theirs)


def test_ivf_cache_write_that_fails_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A full or failing disk costs the build next time, and leaves nothing behind."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("RTML_CACHE_DIR", str(cache))

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", full)
    unit = _unit(20, 200, 8)
    index = IVFIndex.cached(unit, seed=0)
    assert np.array_equal(index.items, IVFIndex(unit, seed=0).items)
    assert list(cache.iterdir()) == []
