"""Issue #11: honest denominators, the two replay protocols, and logs without user ids.

- A request whose session brings nothing new has no truth under ``next-unseen``: it is not
  a miss (HR/MRR/NDCG leave it out), its RESULTS rewards are null, and the count is shown.
- ``next-item`` (published benchmarks): the truth is the request's own event, re-views
  included, and lists may hold seen items.
- The protocol is in the JSON, the RESULTS metadata, and `rtml evaluate` reads it.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import ExitCode, UsageError
from rtml_cli.online import simulate
from rtml_cli.online.replay import prepare, to_us, truth_for
from tests.online_fixtures import write_shop

FAST = dict(k=8, n_candidates=30, max_train_requests=300, train_window=timedelta(days=1))
T = datetime(2024, 1, 1, tzinfo=timezone.utc)


def _log(sessions: dict[str, list[int]], users: dict[str, str | None] | None = None):
    rows = []
    for s, (sid, items) in enumerate(sessions.items()):
        for i, item in enumerate(items):
            user = (users or {}).get(sid)
            rows.append((T + timedelta(hours=s, minutes=i), user, sid, item, "view"))
    return pl.DataFrame(
        rows, schema=["ts", "user_id", "session_id", "item_id", "event"], orient="row"
    )


def _truth(sessions: dict[str, list[int]], protocol: str) -> list[int]:
    """Per request (in session order here: one hour apart), the truth's item id or -1."""
    log = _log(sessions)
    ids = np.array(sorted(log["item_id"].unique().to_list()))
    data = prepare(log, ids, [], start=to_us(T), end=None)
    truth = truth_for(data, protocol)
    return [int(ids[c]) if c >= 0 else -1 for c in truth.next_code]


def test_truth_by_protocol_by_hand():
    # requests at events 2..4 of [1, 2, 1, 3] and 2..3 of [5, 6, 5]
    sessions = {"a": [1, 2, 1, 3], "b": [5, 6, 5]}
    # next-unseen: the first item from the request's event on not in the history
    assert _truth(sessions, "next-unseen") == [2, 3, 3, 6, -1]
    # next-item: the request's own event, re-views included
    assert _truth(sessions, "next-item") == [2, 1, 3, 6, 5]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.integers(1, 6), min_size=2, max_size=7), min_size=1, max_size=5))
def test_truth_properties(items_per_session):
    sessions = {f"s{i}": items for i, items in enumerate(items_per_session)}
    unseen, item = _truth(sessions, "next-unseen"), _truth(sessions, "next-item")
    expected_item = [x for items in items_per_session for x in items[1:]]
    assert item == expected_item  # next-item always has a truth: the request's event
    # next-unseen: no truth exactly when every later item was seen before the request
    no_truth = [
        all(x in items[:i] for x in items[i:])
        for items in items_per_session
        for i in range(1, len(items))
    ]
    assert [t == -1 for t in unseen] == no_truth
    # where the next event is new, both protocols agree
    new_next = [
        items[i] not in items[:i] for items in items_per_session for i in range(1, len(items))
    ]
    assert all(u == n for u, n, fresh in zip(unseen, item, new_next, strict=True) if fresh)


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = write_shop(tmp_path_factory.mktemp("protocols"))
    return base, pl.read_parquet(base / "events.parquet")


@pytest.fixture(scope="module")
def runs(shop):
    base, events = shop
    names = ("popular", "session-embedding", "session-itemknn")
    return {
        protocol: simulate(
            events, base / "root", strategies=names, keep_lists=True, protocol=protocol, **FAST
        )
        for protocol in ("next-unseen", "next-item")
    }


def test_requests_without_truth_are_not_misses(runs):
    result = runs["next-unseen"]
    frame = result.frame.filter(pl.col("strategy") == "session-itemknn")
    no_truth = frame["hit"].is_null()
    assert 0 < int(no_truth.sum()) < frame.height  # the tiny shop has re-view-only tails
    assert frame.filter(no_truth)["rr"].is_null().all()
    row = result.summary_for("session-itemknn")
    assert row["requests"] == frame.height
    assert row["requests_without_truth"] == int(no_truth.sum())
    assert result.info["requests_without_truth"] == row["requests_without_truth"]
    with_truth = frame.filter(~no_truth)
    assert row["hr"] == pytest.approx(with_truth["hit"].mean())
    assert row["mrr"] == pytest.approx(with_truth["rr"].mean())
    # the old, misleading figure counted them as misses: strictly lower
    assert frame["hit"].fill_null(False).mean() < row["hr"]


def test_segments_and_slices_use_the_same_denominator(runs):
    result = runs["next-unseen"]
    frame = result.frame.filter(pl.col("strategy") == "popular")
    for seg in ("anonymous", "new", "returning"):
        row = result.summary_for("popular", seg)
        part = frame.filter(pl.col("segment") == seg)
        assert row["requests"] == part.height
        assert row["requests_without_truth"] == int(part["hit"].is_null().sum())
        if row["hr"] is not None:
            assert row["hr"] == pytest.approx(part["hit"].drop_nulls().mean())


def test_next_item_lists_may_hold_seen_items_and_every_request_has_truth(runs, shop):
    result = runs["next-item"]
    assert result.info["protocol"] == "next-item"
    assert result.info["requests_without_truth"] == 0
    assert result.frame["hit"].null_count() == 0
    seen_listed = {p: _seen_listed(runs[p], shop, "session-embedding") for p in runs}
    assert seen_listed["next-unseen"] == 0  # never a seen item
    # the nearest items to the session's mean embedding include the session's own items
    assert seen_listed["next-item"] > 0


def _seen_listed(result, shop, strategy: str) -> int:
    """How many requests' lists hold an item of the request's history."""
    from rtml_cli.batch.artifacts import load_artifacts

    base, events = shop
    art = load_artifacts(base / "root")
    history = {
        sid: art.to_idx(g.sort("ts")["item_id"].to_list())
        for (sid,), g in events.group_by("session_id")
    }
    rows = result.frame.filter(pl.col("strategy") == strategy).sort("request_id")
    lists = result.lists[strategy]
    count = 0
    for j, (sid, pos) in enumerate(zip(rows["session_id"], rows["position"], strict=True)):
        before = set(np.asarray(history[sid][: pos - 1]).tolist())
        count += bool(before & set(lists[j].tolist()))
    return count


def test_unknown_protocol_is_a_usage_error(shop):
    base, events = shop
    with pytest.raises(UsageError, match="--protocol must be one of next-unseen, next-item"):
        simulate(events, base / "root", strategies=["popular"], protocol="next", **FAST)


# --- CLI: JSON, RESULTS metadata, evaluate, segments ---------------------------------------


def _simulate(invoke, shop, tmp_path, protocol, name="r.parquet"):
    base, _ = shop
    out = tmp_path / name
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root", "--k", "8"]
    args += ["--strategies", "popular,session-itemknn", "--protocol", protocol, "--out", out]
    result = invoke(*args, "--format", "json", "--quiet")
    assert result.exit_code == ExitCode.OK, result.stderr
    return json.loads(result.stdout), out


def test_protocol_is_recorded_and_evaluate_reads_it(invoke, shop, tmp_path):
    doc, out = _simulate(invoke, shop, tmp_path, "next-item")
    assert doc["info"]["protocol"] == "next-item"
    meta = pq.read_metadata(out).metadata
    assert meta[b"rtml.protocol"] == b"next-item" and meta[b"rtml.k"] == b"8"
    evaluated = invoke("evaluate", out, "--seeds", "5", "--format", "json", "--quiet")
    assert evaluated.exit_code == ExitCode.OK, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["protocol"] == "next-item" and report["dropped_requests"] == 0


def test_evaluate_drops_requests_without_truth_and_says_so(invoke, shop, tmp_path):
    doc, out = _simulate(invoke, shop, tmp_path, "next-unseen")
    missing = doc["info"]["requests_without_truth"]
    assert missing > 0
    evaluated = invoke("evaluate", out, "--seeds", "5")
    assert evaluated.exit_code == ExitCode.OK, evaluated.stderr
    flat = " ".join(evaluated.stdout.split())
    assert f"({missing:,} without one dropped); replay protocol next-unseen" in flat


def test_evaluate_refuses_results_of_two_protocols(invoke, shop, tmp_path):
    _simulate(invoke, shop, tmp_path, "next-item", "a.parquet")
    _simulate(invoke, shop, tmp_path, "next-unseen", "b.parquet")
    result = invoke("evaluate", tmp_path, "--seeds", "5")
    assert result.exit_code == ExitCode.DATA_ERR
    assert "different protocols (next-item, next-unseen)" in result.stderr


def test_cli_unknown_protocol_is_exit_2(invoke, shop):
    base, _ = shop
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root"]
    result = invoke(*args, "--protocol", "next-click")
    assert result.exit_code == ExitCode.USAGE and "--protocol" in result.stderr


def test_table_states_every_denominator(invoke, shop):
    base, _ = shop
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root", "--k", "8"]
    text = invoke(*args, "--strategies", "popular").stdout
    flat = " ".join(text.split())
    assert (
        "Protocol next-unseen: the truth is the first later item the session has not seen" in flat
    )
    assert "HR@8, MRR@8, NDCG@8, HR later: over the" in flat and "not counted as misses" in flat
    assert "HR buy: over the" in flat and "with truth" in flat


def test_all_anonymous_log_says_so_instead_of_empty_segments(invoke, shop, tmp_path):
    base, events = shop
    anonymous = events.with_columns(pl.lit(None, dtype=pl.String).alias("user_id"))
    anonymous.write_parquet(tmp_path / "anon.parquet")
    args = ["simulate", tmp_path / "anon.parquet", "--artifacts", base / "root"]
    text = invoke(*args, "--strategies", "popular", "--k", "8").stdout
    assert "every session is anonymous (the log has no user ids)" in " ".join(text.split())
    assert "by visitor segment\n" not in text and "returning" not in text
