"""Per-request metrics: bounds and the relations between them, on random lists and truths."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.online.metrics import _member, request_metrics
from rtml_cli.online.replay import Truth


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 100_000), n=st.integers(1, 40), k=st.integers(1, 10))
def test_metric_bounds_and_relations(seed, n, k):
    rng = np.random.default_rng(seed)
    n_items = 30
    lists = np.stack([rng.permutation(n_items)[:k] for _ in range(n)])
    next_code = rng.integers(-1, n_items + 3, size=n)  # -1: nothing new; >= n_items: unknown
    later_req, later_code = [], []
    for r in range(n):
        if next_code[r] >= 0:
            rest = rng.choice(n_items + 3, size=int(rng.integers(0, 4)), replace=False)
            codes = np.unique(np.r_[next_code[r], rest])
            later_req += [r] * len(codes)
            later_code += codes.tolist()
    purchase = np.where(rng.random(n) < 0.3, rng.integers(0, n_items, n), -1)
    truth = Truth(next_code, purchase, np.array(later_req, dtype=np.int64), np.array(later_code))
    m = request_metrics(lists, truth, n_items)

    assert ((m["rank"] >= 0) & (m["rank"] <= k)).all()
    assert np.array_equal(m["hit"], m["rank"] > 0)
    assert ((m["rr"] >= 0) & (m["rr"] <= 1)).all() and ((m["ndcg"] >= 0) & (m["ndcg"] <= 1)).all()
    assert (m["ndcg"] >= m["rr"]).all()  # 1/log2(r+1) >= 1/r for r >= 1
    assert not (m["hit"] & ~m["hit_later"]).any()  # the next item is one of the later items
    assert not m["hit"][next_code < 0].any()
    for r in np.flatnonzero(m["hit"]):
        assert lists[r, m["rank"][r] - 1] == next_code[r]
    assert not m["hit_purchase"][purchase < 0].any()
    expected = np.array([purchase[r] in lists[r] for r in range(n)]) & (purchase >= 0)
    assert np.array_equal(m["hit_purchase"], expected)


_ints = st.lists(st.integers(-5, 40), max_size=60)


@given(keys=_ints, pool=_ints)
def test_member_is_isin(keys, pool):
    keys_a, pool_a = np.array(keys, np.int64), np.array(pool, np.int64)
    assert np.array_equal(_member(keys_a, pool_a), np.isin(keys_a, pool_a))
