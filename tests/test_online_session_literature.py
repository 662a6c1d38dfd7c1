"""session-vsknn and session-rules (issue #11): hand-computed scores, the remind step, the
precompute tables (verified, warm starts equal to full runs) and a reference implementation."""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.batch.artifacts import (
    SESSION_FILES,
    build_rule_lists,
    build_session_index,
    load_artifacts,
    read_manifest,
    session_rule_counts,
    session_tables,
)
from rtml_cli.batch.precompute import run_precompute
from rtml_cli.batch.publish import checksums
from rtml_cli.batch.sessions import RULE_COUNTS, SessionParams, rule_scale
from rtml_cli.checks.tiny_shop import tiny_events, write_session_tables
from rtml_cli.errors import DataError
from rtml_cli.online.base import Env, Request
from rtml_cli.online.stage2_literature import (
    RulesOptions,
    SessionRules,
    SessionVSKNN,
    VSKNNOptions,
    rule_scores,
    vsknn_scores,
)
from rtml_cli.online.strategies import build

T = datetime(2024, 3, 1, tzinfo=timezone.utc)
FAST = {"dim": 2, "n_trees": 2}
# four training sessions, one an hour (s4 is the most recent); items 1-6
HAND = {"s1": [1, 2, 3], "s2": [2, 4], "s3": [3, 5, 6], "s4": [1, 5]}


def _events(sessions: dict[str, list[int]], start: datetime = T) -> pl.DataFrame:
    rows = [
        (start + timedelta(hours=h, minutes=m), "u1", sid, item, "view")
        for h, (sid, items) in enumerate(sessions.items(), start=1)
        for m, item in enumerate(items)
    ]
    return pl.DataFrame(
        rows,
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "user_id": pl.String,
            "session_id": pl.String,
            "item_id": pl.Int64,
            "event": pl.String,
        },
        orient="row",
    )


@pytest.fixture(scope="module")
def hand(tmp_path_factory: pytest.TempPathFactory) -> Env:
    """The four sessions of ``HAND`` through ``rtml precompute``, as a strategy environment."""
    root = tmp_path_factory.mktemp("hand")
    _events(HAND).write_parquet(root / "events.parquet")
    run_precompute(root / "events.parquet", root / "artifacts", **FAST)
    return Env(load_artifacts(root / "artifacts"))


def _request(env: Env, items: list[int], protocol: str = "next-unseen") -> Request:
    idx = np.array([env.artifacts.id_to_idx[i] for i in items], dtype=np.int64)
    later = int((T + timedelta(days=1)).timestamp() * 1e6)  # after every training session
    return Request(later, later, None, 0, idx, n_events=len(idx), protocol=protocol)


def _ids(env: Env, idx: np.ndarray) -> list[int]:
    return env.artifacts.item_ids[idx].tolist()


def test_vsknn_scores_a_hand_computed_example(hand):
    # Session [1, 3]: position weights ("div", i / n): item 1 -> 1/2, item 3 -> 2/2 = 1;
    # steps back: item 3 -> 1, item 1 -> 2; two distinct items.
    # Candidates (sessions holding 1 or 3): s1 {1,2,3}, s3 {3,5,6}, s4 {1,5}. Similarity =
    # sum of the shared items' weights / 2: s1 (1/2 + 1) / 2 = 0.75, s3 1/2 = 0.5,
    # s4 (1/2) / 2 = 0.25. k = 2 keeps s1 and s3; both share item 3 (step 1): decay 1/1.
    # Votes without idf: 1: 0.75, 2: 0.75, 3: 0.75 + 0.5 = 1.25, 5: 0.5, 6: 0.5.
    plain = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div", idf_weighting=0))
    cand, score = plain.scores(_request(hand, [1, 3]))
    assert _ids(hand, cand) == [1, 2, 3, 5, 6]
    assert score == pytest.approx([0.75, 0.75, 1.25, 0.5, 0.5])
    # idf = ln(4 sessions / events of the item): items 1, 2, 3, 5 ln 2, items 4, 6 ln 4; a
    # vote for j counts (1 + 10 idf(j)): 2: 0.75 (1 + 10 ln 2) = 5.9486,
    # 5: 0.5 (1 + 10 ln 2) = 3.9657, 6: 0.5 (1 + 10 ln 4) = 7.4315, 3: 1.25 (1 + 10 ln 2)
    vsknn = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div"))
    cand, score = vsknn.scores(_request(hand, [1, 3]))
    ln2, ln4 = math.log(2), math.log(4)
    expected = [0.75 * (1 + 10 * ln2), 0.75 * (1 + 10 * ln2), 1.25 * (1 + 10 * ln2)]
    expected += [0.5 * (1 + 10 * ln2), 0.5 * (1 + 10 * ln4)]
    assert score == pytest.approx(expected, rel=1e-6)
    # next-unseen: 1 and 3 are seen; 6 > 2 > 5, then the popularity list fills in (4)
    assert _ids(hand, vsknn.recommend(_request(hand, [1, 3]), 4)) == [6, 2, 5, 4]
    # k = 3 adds s4 (0.25; it shares item 1, two steps back: "linear" decay 1 - 0.1 * 2 = 0.8,
    # s1 and s3 share item 3, one step back: 0.9); without idf
    linear = SessionVSKNN(hand, VSKNNOptions(k=3, idf_weighting=0))
    cand, score = linear.scores(_request(hand, [1, 3]))
    assert dict(zip(_ids(hand, cand), score.round(6), strict=True)) == {
        1: round(0.75 * 0.9 + 0.25 * 0.8, 6),
        2: round(0.75 * 0.9, 6),
        3: round(0.75 * 0.9 + 0.5 * 0.9, 6),
        5: round(0.5 * 0.9 + 0.25 * 0.8, 6),
        6: round(0.5 * 0.9, 6),
    }


def test_vsknn_takes_only_sessions_that_ended_before_the_request(hand):
    # at 02:30 only s1 (ended 01:02) and s2 (02:01) are over; of those only s1 holds 1 or 3
    at = int((T + timedelta(hours=2, minutes=30)).timestamp() * 1e6)
    idx = np.array([hand.artifacts.id_to_idx[i] for i in (1, 3)])
    early = Request(at, at, None, 0, idx, n_events=2)
    plain = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div", idf_weighting=0))
    cand, score = plain.scores(early)
    assert _ids(hand, cand) == [1, 2, 3] and score == pytest.approx([0.75] * 3)
    before_all = Request(0, 0, None, 0, idx, n_events=2)
    assert not len(plain.scores(before_all)[0])  # nothing ended yet: the popular fill
    assert len(plain.recommend(before_all, 3)) == 3


def test_rules_score_a_hand_computed_example(hand):
    # Rules a -> b, weight 1 / distance (steps 10): s1 1->2 1, 1->3 1/2, 2->3 1; s2 2->4 1;
    # s3 3->5 1, 3->6 1/2, 5->6 1; s4 1->5 1. Rules of item 1: 2 (1), 5 (1), 3 (0.5).
    rules = SessionRules(hand)
    cand, score = rules.scores(_request(hand, [3, 1]))  # the last item is 1
    assert dict(zip(_ids(hand, cand), score.tolist(), strict=True)) == {2: 1.0, 3: 0.5, 5: 1.0}
    # next-unseen drops 3 (seen): 2 and 5 tie at 1 (the lower item first), then popular fill
    assert _ids(hand, rules.recommend(_request(hand, [3, 1]), 3)) == [2, 5, 4]
    # next-item keeps the seen 3
    assert _ids(hand, rules.recommend(_request(hand, [3, 1], "next-item"), 3)) == [2, 5, 3]
    # history 2 adds item 3's rules at 1/2: 5 -> 1 + 1/2, 6 -> 1/2 * 1/2 = 0.25
    two = SessionRules(hand, RulesOptions(history=2))
    cand, score = two.scores(_request(hand, [3, 1]))
    assert dict(zip(_ids(hand, cand), score.tolist(), strict=True)) == {
        2: 1.0,
        3: 0.5,
        5: 1.5,
        6: 0.25,
    }
    assert _ids(hand, two.recommend(_request(hand, [3, 1]), 3)) == [5, 2, 6]
    # the published table: item 1's rules, best first, scores = counts / lcm(1..10)
    table = hand.artifacts.rules.filter(pl.col("item_id") == 1)
    assert table["next_id"].to_list() == [2, 5, 3] and table["rank"].to_list() == [1, 2, 3]


def test_remind_runs_only_under_the_next_item_protocol(hand):
    # votes with idf 10 (see the V-SKNN example): 3: 9.914, 6: 7.431, 1 = 2: 5.949, 5: 3.966
    default = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div"))
    assert _ids(hand, default.recommend(_request(hand, [1, 3], "next-item"), 5)) == [3, 6, 1, 2, 5]
    # push_reminders multiplies the session's items by (times seen + 1): 3 -> 19.83, 1 -> 11.90
    push = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div", push_reminders=True))
    assert _ids(hand, push.recommend(_request(hand, [1, 3], "next-item"), 5)) == [3, 1, 6, 2, 5]
    # remind=False drops them even under next-item (session-rec's remind=False)
    forget = SessionVSKNN(hand, VSKNNOptions(k=2, weighting_score="div", remind=False))
    assert _ids(hand, forget.recommend(_request(hand, [1, 3], "next-item"), 3)) == [6, 2, 5]
    # under next-unseen no variant lists a seen item, and pushing changes nothing
    for strategy in (default, push, forget):
        assert _ids(hand, strategy.recommend(_request(hand, [1, 3]), 4)) == [6, 2, 5, 4]


def test_an_older_run_without_session_tables_still_serves_the_rest(tmp_path):
    events = tmp_path / "events.parquet"
    _events(HAND).write_parquet(events)
    result = run_precompute(events, tmp_path / "root", **FAST)
    _drop_session_tables(result.run_dir)
    art = load_artifacts(result.run_dir)
    assert art.session_items is None
    env = Env(art)
    assert len(build("session-itemknn", env).recommend(_request(env, [1]), 3)) == 3
    for name in ("session-vsknn", "session-rules"):
        with pytest.raises(DataError, match="no (session tables|sequential rules).*rerun"):
            build(name, env)


def _drop_session_tables(run_dir: Path) -> None:
    """Make ``run_dir`` look like a run an rtml before the session tables wrote."""
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for name in (*SESSION_FILES, f"state/{RULE_COUNTS}"):
        (run_dir / name).unlink()
        del manifest["outputs"][name]
    for key in ("session_sample", "rule_steps", "rule_top"):
        del manifest["params"][key]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    state = json.loads((run_dir / "state" / "state.json").read_text())
    del state["training_sessions"]
    (run_dir / "state" / "state.json").write_text(json.dumps(state))
    manifest["outputs"].update(checksums(run_dir, ["state/state.json"]))
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


# --- precompute: the tables, verified, and warm starts equal to full runs -----------------


def _tables(run_dir: Path) -> dict[str, pl.DataFrame]:
    """The session tables and rule counts as the run serves them (a delta run's overlaid on
    its base's), in the self-contained files' order."""
    manifest = read_manifest(run_dir)
    tables = session_tables(run_dir, manifest, ordered=True)
    names = dict(zip(("session_items", "item_sessions", "rules"), SESSION_FILES, strict=True))
    out = {names[key]: frame for key, frame in tables.items()}
    out[f"state/{RULE_COUNTS}"] = session_rule_counts(run_dir, manifest)
    return out


@pytest.fixture(scope="module")
def shop_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[datetime]]:
    """The tiny shop's log and as-ofs that cut sessions in the middle (a warm start must
    join a session's new events to its earlier ones)."""
    root = tmp_path_factory.mktemp("shop")
    events = tiny_events(n_sessions=300, days=3, seed=3)
    events.write_parquet(root / "events.parquet")
    # the third event of long sessions after the first day (its first two are before)
    thirds = (
        events.sort("ts")
        .group_by("session_id", maintain_order=True)
        .agg(pl.col("ts").gather(2, null_on_oob=True).first().alias("cut"), pl.len())
        .filter((pl.col("len") >= 5) & (pl.col("cut") > pl.lit(T + timedelta(days=1))))
        .sort("cut")["cut"]
    )
    return root / "events.parquet", [thirds[0], thirds[len(thirds) // 2], thirds[-5]]


# small caps so that both the per-item session cap and the rule pruning bite
SMALL = SessionParams(session_sample=6, rule_steps=3, rule_top=4)


def test_session_tables_are_listed_verified_and_equal_after_warm_starts(shop_log, tmp_path):
    events, cuts = shop_log
    root = tmp_path / "root"
    first = run_precompute(events, root, as_of=cuts[0], sessions=SMALL, **FAST)
    outputs = first.manifest["outputs"]
    assert all(name in outputs for name in (*SESSION_FILES, f"state/{RULE_COUNTS}"))
    assert first.manifest["params"]["session_sample"] == 6
    assert first.rows["kept_sessions"] < first.rows["training_sessions"]  # the cap bites
    items = pl.read_parquet(first.run_dir / "item_sessions.parquet")
    assert items.group_by("item_id").len()["len"].max() == 6
    assert pl.read_parquet(first.run_dir / "sequential_rules.parquet")["rank"].max() == 4
    # chained warm starts (inheriting the parameters) end with a full run's tables
    for as_of in (*cuts[1:], None):
        warm = run_precompute(events, root, as_of=as_of, warm_start=root, n_trees=2)
        assert warm.mode == "warm-delta"  # session tables overlaid on the base's
        assert warm.rows["events_read_for_sessions"] < warm.rows["events_before_as_of"]
        full = run_precompute(
            events, tmp_path / f"full-{warm.run_id}", as_of=as_of, sessions=SMALL, **FAST
        )
        assert warm.rows["training_sessions"] == full.rows["training_sessions"]
        for name, frame in _tables(full.run_dir).items():
            assert _tables(warm.run_dir)[name].equals(frame), (as_of, name)
    # the tables are verified like every output: a damaged one is refused (65)
    path = warm.run_dir / "delta" / "sequential_rules.parquet"
    path.write_bytes(path.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="sequential_rules.parquet does not match its sha256"):
        load_artifacts(warm.run_dir)


def test_a_warm_start_from_a_run_without_session_tables_builds_them_from_every_event(
    shop_log, tmp_path
):
    events, cuts = shop_log
    base = run_precompute(events, tmp_path / "root", as_of=cuts[0], **FAST)
    _drop_session_tables(base.run_dir)
    warm = run_precompute(events, tmp_path / "root", warm_start=base.run_dir, n_trees=2)
    full = run_precompute(events, tmp_path / "full", **FAST)
    assert warm.rows["events_read_for_sessions"] == full.rows["events_read_for_sessions"]
    for name, frame in _tables(full.run_dir).items():
        assert _tables(warm.run_dir)[name].equals(frame), name


# --- a reference implementation: session-rec's loops, on random logs ---------------------


def _reference_rules(sessions: dict[str, list[int]], steps: int) -> dict[tuple[int, int], float]:
    """session-rec's ``SequentialRules.fit``: every b after a within ``steps``, 1 / distance."""
    rules: dict[tuple[int, int], float] = {}
    for items in sessions.values():
        for at, item in enumerate(items):
            for back in range(1, min(steps, at) + 1):
                key = (items[at - back], item)
                rules[key] = rules.get(key, 0.0) + 1.0 / back
    return rules


def _reference_vsknn(
    sessions: dict[str, list[int]],
    recency: dict[str, int],
    current: list[int],
    k: int,
    sample: int,
    idf: dict[int, float],
) -> dict[int, float]:
    """session-rec's ``VMContextKNN`` (weighting div, weighting_score div, idf_weighting 10)."""
    n = len(current)
    pos_map = {item: (i + 1) / n for i, item in enumerate(current)}  # the last occurrence wins
    relevant = [s for s, items in sessions.items() if set(items) & set(current)]
    relevant = sorted(relevant, key=lambda s: recency[s])[:sample]
    similar = []
    for s in relevant:
        shared = set(sessions[s]) & set(pos_map)
        similar.append((s, sum(pos_map[i] for i in sorted(shared)) / len(pos_map)))
    neighbours = sorted(similar, key=lambda x: (-x[1], recency[x[0]]))[:k]
    scores: dict[int, float] = {}
    for s, similarity in neighbours:
        items = set(sessions[s])
        step = next(b for b, item in enumerate(reversed(current), start=1) if item in items)
        for item in items:
            vote = similarity * (1 + 10 * idf[item]) / step
            scores[item] = scores.get(item, 0.0) + vote
    return scores


_SESSION = st.lists(st.integers(0, 6), min_size=1, max_size=7)


@settings(max_examples=30, deadline=None)
@given(
    logs=st.lists(st.tuples(st.integers(0, 3), _SESSION), min_size=2, max_size=12),
    current=_SESSION,
    k=st.integers(1, 4),
    sample=st.integers(1, 5),
)
def test_tables_and_scores_match_session_recs_loops(tmp_path_factory, logs, current, k, sample):
    """Sessions start at hour 0-3 (equal last events happen: ties go to the lower id)."""
    sessions = {f"s{j:02d}": items for j, (_, items) in enumerate(logs)}
    rows = [
        (T + timedelta(hours=hour, minutes=m), None, f"s{j:02d}", item, "view")
        for j, (hour, items) in enumerate(logs)
        for m, item in enumerate(items)
    ]
    past = pl.DataFrame(
        rows, schema=["ts", "user_id", "session_id", "item_id", "event"], orient="row"
    ).with_columns(pl.col("ts").dt.replace_time_zone("UTC"), pl.col("user_id").cast(pl.String))
    item_ids = np.arange(7)

    def identity(ids: pl.Series) -> np.ndarray:
        return ids.to_numpy().astype(np.int64)

    def built(params: SessionParams) -> Path:
        run = tmp_path_factory.mktemp("ref")
        write_session_tables(run, past, item_ids, params)
        return run

    run = built(SessionParams(session_sample=sample, rule_steps=3, rule_top=2))
    # sequential rules: the unpruned counts are session-rec's, scaled to integers
    counts = pl.read_parquet(run / "state" / RULE_COUNTS)
    reference = _reference_rules(sessions, steps=3)
    assert {(a, b): w for a, b, w in counts.iter_rows()} == {
        key: round(value * rule_scale(3)) for key, value in reference.items()
    }
    # pruned to the 2 best of each item (ties: the lower next item), scored by the last item
    rules = build_rule_lists(pl.read_parquet(run / "sequential_rules.parquet"), identity, 7)
    scaled = {key: round(value * rule_scale(3)) for key, value in reference.items()}
    best = sorted((-w, b) for (a, b), w in scaled.items() if a == current[-1])[:2]
    cand, score = rule_scores(rules, np.array(current), history=1)
    assert dict(zip(cand.tolist(), score.tolist(), strict=True)) == pytest.approx(
        {b: -w / rule_scale(3) for w, b in best}
    )
    # V-SKNN: the run keeps each item's `sample` most recent sessions; serving with
    # sample_size = sample scores like session-rec over every session
    last_ts = {f"s{j:02d}": (hour * 60 + len(items)) for j, (hour, items) in enumerate(logs)}
    by_recency = sorted(sessions, key=lambda s: (-last_ts[s], s))
    recency = {s: r for r, s in enumerate(by_recency)}
    n_events = pl.Series([i for items in sessions.values() for i in items]).value_counts()
    idf = {i: 0.0 for i in range(7)}
    for item, count in n_events.iter_rows():
        idf[item] = max(math.log(len(sessions) / count), 0.0)
    expected = _reference_vsknn(sessions, recency, current, k, sample, idf)
    options = VSKNNOptions(k=k, sample_size=sample, weighting_score="div")
    # a run that kept every session gives the same scores: the cap loses nothing
    for params in (SessionParams(session_sample=sample), SessionParams(session_sample=100)):
        run = built(params)
        index = build_session_index(
            pl.read_parquet(run / "session_items.parquet"),
            pl.read_parquet(run / "item_sessions.parquet"),
            identity,
            7,
            params.session_sample,
        )
        cand, score = vsknn_scores(index, np.array(current), options, sample)
        got = dict(zip(cand.tolist(), score.tolist(), strict=True))
        assert got == pytest.approx(expected, rel=1e-5), params


def test_the_ranker_variant_adds_vsknn_candidates_and_features(hand):
    from rtml_cli.online.stage3 import VSKNN_FEATURES, OnlineRanker

    families = ("batch", "realtime")  # the hand-built requests carry no stream
    plain = OnlineRanker(hand, families=families, lag=None)
    ranker = OnlineRanker(hand, families=families, lag=None, vsknn=True)
    assert ranker.feature_names == plain.feature_names + VSKNN_FEATURES
    request = _request(hand, [1, 3])
    cand, _, generators = ranker.candidates(request)
    vsknn_items, vsknn_score = generators[2], generators[3]
    assert set(vsknn_items.tolist()) - {hand.artifacts.id_to_idx[i] for i in (1, 3)} <= set(
        cand.tolist()
    )
    # its own cache key: the plain ranker's candidates for the same request are its own
    assert plain.candidates(request)[2] is not generators
    features = ranker.features(request, cand, *ranker.candidates(request)[1:])
    assert features.shape == (len(cand), len(ranker.feature_names))
    best = cand[np.argmax(features[:, -2])]  # the V-SKNN score, scaled by the best
    assert (
        best
        == vsknn_items[~np.isin(vsknn_items, request.seen)][
            np.argmax(vsknn_score[~np.isin(vsknn_items, request.seen)])
        ]
    )
