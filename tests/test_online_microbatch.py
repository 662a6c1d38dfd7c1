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
