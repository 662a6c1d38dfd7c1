"""Streaming counters: incremental state equals a from-scratch count, at every lag."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.online.streaming import WindowedCounts

MIN = 60_000_000


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lag_min=st.sampled_from([0, 1, 5, 60]),
    n_events=st.integers(0, 300),
)
def test_incremental_counts_equal_brute_force(seed, lag_min, n_events):
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 240 * MIN, size=n_events))
    item = rng.integers(0, 7, size=n_events)
    kind = rng.integers(0, 2, size=n_events)
    counts = WindowedCounts(ts, item, kind, 7, lag=timedelta(minutes=lag_min))
    items = np.arange(7)
    for now in np.sort(rng.integers(0, 300 * MIN, size=25)):
        counts.advance(int(now))
        assert np.array_equal(counts.features(items), counts.brute_force(int(now), items))


def test_events_become_visible_only_after_the_lag():
    ts = np.array([10 * MIN])
    counts = WindowedCounts(ts, np.array([3]), np.array([0]), 5, lag=timedelta(minutes=5))
    counts.advance(10 * MIN)  # the event happens now: not visible, even with lag 0
    assert counts.features(np.array([3])).sum() == 0
    counts.advance(15 * MIN)  # exactly lag later: still strictly before? ts < now - lag fails
    assert counts.features(np.array([3])).sum() == 0
    counts.advance(15 * MIN + 1)
    views_5m, views_30m, views_60m = counts.features(np.array([3]))[0, :3]
    assert (views_5m, views_30m, views_60m) == (1, 1, 1)
    counts.advance(20 * MIN + 1)  # left the 5-minute window, still in 30 and 60
    assert tuple(counts.features(np.array([3]))[0, :3]) == (0, 1, 1)
    counts.advance(80 * MIN)
    assert counts.features(np.array([3])).sum() == 0


def test_state_depends_only_on_time_not_on_the_requests_asked():
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, 120 * MIN, size=500))
    item, kind = rng.integers(0, 9, 500), rng.integers(0, 2, 500)
    dense = WindowedCounts(ts, item, kind, 9, lag=timedelta(seconds=60))
    sparse = WindowedCounts(ts, item, kind, 9, lag=timedelta(seconds=60))
    times = np.sort(rng.integers(0, 130 * MIN, size=200))
    for now in times:
        dense.advance(int(now))
    sparse.advance(int(times[-1]))
    assert np.array_equal(dense.counts, sparse.counts)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lag_min=st.sampled_from([0, 1, 5, 60]),
    n_events=st.integers(0, 300),
)
def test_counts_at_a_later_time_equal_brute_force_and_leave_the_state(seed, lag_min, n_events):
    """What a micro-batch's later request reads (``features_at``) is its own time's state."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 240 * MIN, size=n_events))
    item = rng.integers(0, 7, size=n_events)
    kind = rng.integers(0, 2, size=n_events)
    counts = WindowedCounts(ts, item, kind, 7, lag=timedelta(minutes=lag_min))
    items = rng.permutation(7)[: rng.integers(1, 8)]
    for now in np.sort(rng.integers(0, 300 * MIN, size=10)):
        counts.advance(int(now))
        before = counts.counts.copy()
        for later in np.sort(rng.integers(int(now), int(now) + 90 * MIN, size=5)):
            got = counts.features_at(int(later), items)
            assert np.array_equal(got, counts.brute_force(int(later), items))
        assert np.array_equal(counts.counts, before)


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    lag_min=st.sampled_from([0, 1, 5, 60]),
    n_events=st.integers(0, 300),
)
def test_counts_for_a_batch_of_requests_equal_brute_force(seed, lag_min, n_events):
    """``features_many``: every row of a micro-batch at its own request's time."""
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 240 * MIN, size=n_events))
    item = rng.integers(0, 7, size=n_events)
    kind = rng.integers(0, 2, size=n_events)
    counts = WindowedCounts(ts, item, kind, 7, lag=timedelta(minutes=lag_min))
    for now in np.sort(rng.integers(0, 300 * MIN, size=6)):
        if rng.random() < 0.8:  # sometimes the state has not started yet
            counts.advance(int(now))
        times = np.sort(rng.integers(int(now), int(now) + 90 * MIN, size=rng.integers(1, 6)))
        req = np.repeat(np.arange(len(times)), rng.integers(0, 5, size=len(times)))
        items = rng.integers(0, 7, size=len(req))
        got = counts.features_many(times, req, items)
        want = np.zeros_like(got)
        for i in range(len(req)):
            want[i] = counts.brute_force(int(times[req[i]]), items[i : i + 1])[0]
        assert np.array_equal(got, want)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), n_events=st.integers(0, 3000), started=st.booleans())
def test_streaming_columns_written_in_place_equal_the_numpy_block(seed, n_events, started):
    """``features_into`` (the ranker's streaming columns, log1p looked up in tables that grow
    past 1,024 when a count does) is ``streaming_block(features_many(...))`` bit for bit."""
    from rtml_cli.online.stage3_batch import streaming_block

    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, 240 * MIN, size=n_events))
    item = rng.integers(0, 3, size=n_events)  # few items: counts beyond the first table
    kind = rng.integers(0, 2, size=n_events)
    counts = WindowedCounts(ts, item, kind, 3, lag=timedelta(minutes=1))
    now = int(rng.integers(0, 200 * MIN))
    if started:
        counts.advance(now)
    times = np.sort(rng.integers(now, now + 90 * MIN, size=rng.integers(1, 6)))
    req = np.repeat(np.arange(len(times)), rng.integers(0, 5, size=len(times)))
    items = rng.integers(0, 3, size=len(req))
    bounds = np.searchsorted(req, np.arange(len(times) + 1))
    out = np.full((len(req), 9), np.nan, dtype=np.float32)
    counts.features_into(times, bounds, items, out, 2)
    want = streaming_block(counts.features_many(times, req, items))
    assert np.array_equal(out[:, 2:], want) and np.isnan(out[:, :2]).all()
