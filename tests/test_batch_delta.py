"""`rtml precompute --warm-start` delta runs (issue #10): what a reader sees, the chain and its
compaction, the kept Annoy index, prune keeping bases, kill -9 along the chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.batch.artifacts import (
    base_list_ranks,
    load_artifacts,
    read_manifest,
    session_rule_counts,
    session_tables,
)
from rtml_cli.batch.precompute import KILL_AT_ENV, STEPS, run_precompute
from rtml_cli.batch.publish import bases_of
from rtml_cli.batch.sessions import SessionParams
from rtml_cli.errors import DataError
from tests.test_batch_precompute import FAST, START, _overlap, catalogue, make_events


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    events, items = tmp_path / "events.parquet", tmp_path / "items.parquet"
    make_events().write_parquet(events)
    catalogue().write_parquet(items)
    return events, items


def _chain(events, items, root, days, **options):
    run_precompute(events, root, items=items, as_of=START + timedelta(days=days[0]), **FAST)
    return [
        run_precompute(
            events,
            root,
            items=items,
            as_of=START + timedelta(days=d),
            warm_start=root,
            n_trees=10,
            **options,
        )  # fmt: skip
        for d in days[1:]
    ]


def _own_files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_a_delta_chain_reads_exactly_as_the_self_contained_chain(data, tmp_path):
    """Overlay correctness: base + delta == the self-contained warm start of the same days,
    and every --full-every runs the chain is compacted into a self-contained run."""
    events, items = data
    days = (5, 6, 7, 8, 9)
    deltas = _chain(events, items, tmp_path / "delta", days, full_every=3)
    plain = _chain(events, items, tmp_path / "plain", days, full_every=1)
    assert [r.mode for r in deltas] == ["warm-delta", "warm-delta", "warm-start", "warm-delta"]
    assert [r.manifest.get("delta", {}).get("chain") for r in deltas] == [1, 2, None, 1]
    assert deltas[1].manifest["delta"]["base"] == deltas[0].manifest["delta"]["base"]
    assert deltas[3].manifest["delta"]["base"] == deltas[2].run_id  # the compacted run
    for d, p in zip(deltas, plain, strict=True):
        a, b = load_artifacts(d.run_dir), load_artifacts(p.run_dir)
        assert a.user_features.equals(b.user_features)  # recency included: at the delta's as-of
        assert a.batch_recs.sort("user_id", "rank").equals(b.batch_recs.sort("user_id", "rank"))
        assert a.item_features.equals(b.item_features) and a.neighbors.equals(b.neighbors)
        assert a.n_items == b.n_items
        assert d.rows["users"] == p.rows["users"] == a.user_features.height
        assert d.rows["batch_recs"] == p.rows["batch_recs"] == a.batch_recs.height
    # the compacted run's state equals the self-contained chain's (float sums in another order)
    got = sp.load_npz(deltas[2].run_dir / "state" / "cooc.npz")
    want = sp.load_npz(plain[2].run_dir / "state" / "cooc.npz")
    assert abs(got - want).max() < 1e-9 * abs(want).max()
    a = pl.read_parquet(deltas[2].run_dir / "state" / "user_items.parquet")
    b = pl.read_parquet(plain[2].run_dir / "state" / "user_items.parquet")
    assert a.drop("weight").equals(b.drop("weight"))
    np.testing.assert_allclose(a["weight"].to_numpy(), b["weight"].to_numpy(), rtol=1e-9)
    assert "batch_recs.parquet" in _own_files(deltas[2].run_dir)


def _sessions(run_dir: Path) -> dict[str, pl.DataFrame]:
    """The session tables and rule counts a run serves, in the self-contained files' order."""
    manifest = read_manifest(run_dir)
    tables = session_tables(run_dir, manifest, ordered=True)
    return {**tables, "counts": session_rule_counts(run_dir, manifest)}


SESSION_ROWS = (
    "training_sessions", "session_items", "kept_sessions", "item_sessions", "rule_pairs",
    "sequential_rules",
)  # fmt: skip


@pytest.mark.parametrize("sample", [3, 2500], ids=["lists-cut", "lists-whole"])
def test_a_delta_chains_session_tables_read_exactly_as_the_self_contained_chains(
    data, tmp_path, sample
):
    """V-SKNN's tables and the sequential rules of a delta chain (as-ofs that cut sessions in
    two; lists cut at 3 sessions or never) equal the self-contained chain's, the compacted
    run's files included, and serve the same CSR arrays."""
    events, items = data
    caps = SessionParams(session_sample=sample, rule_steps=3, rule_top=2)
    chains = {}
    for name, every in (("delta", 3), ("plain", 1)):
        root = tmp_path / name
        run_precompute(
            events, root, items=items, as_of=START + timedelta(days=5, hours=7), sessions=caps,
            **FAST,
        )  # fmt: skip
        chains[name] = [
            run_precompute(
                events,
                root,
                items=items,
                as_of=START + timedelta(days=d, hours=7),
                warm_start=root,
                n_trees=10,
                full_every=every,
            )  # fmt: skip
            for d in (6, 7, 8, 9)
        ]
    assert [r.mode for r in chains["delta"]] == [
        "warm-delta", "warm-delta", "warm-start", "warm-delta"
    ]  # fmt: skip
    for d, p in zip(chains["delta"], chains["plain"], strict=True):
        got, want = _sessions(d.run_dir), _sessions(p.run_dir)
        for key, frame in want.items():
            assert got[key].equals(frame), (d.run_id, key)
        assert {k: d.rows[k] for k in SESSION_ROWS} == {k: p.rows[k] for k in SESSION_ROWS}
        a, b = load_artifacts(d.run_dir), load_artifacts(p.run_dir)
        for name in ("session_indptr", "session_items", "item_indptr", "item_sessions", "idf"):
            assert np.array_equal(getattr(a.session_index, name), getattr(b.session_index, name))
        for x, y in zip(a.rule_lists, b.rule_lists, strict=True):
            assert np.array_equal(x, y)
    compacted = chains["delta"][2].run_dir
    for name in (
        "session_items.parquet",
        "item_sessions.parquet",
        "state/sequential_rule_counts.parquet",
    ):
        assert pl.read_parquet(compacted / name).equals(
            pl.read_parquet(chains["plain"][2].run_dir / name)
        ), name


@settings(max_examples=60, deadline=None)
@given(
    lists=st.lists(st.lists(st.integers(0, 11), max_size=6, unique=True), min_size=1, max_size=6),
    removed=st.sets(st.integers(0, 11)),
    lead=st.lists(st.integers(0, 4), min_size=6, max_size=6),
    sample=st.integers(1, 7),
)
def test_base_list_ranks_cuts_each_list_behind_its_leading_sessions(lists, removed, lead, sample):
    """The reader's cut of the base lists against a per-item loop: an item's base sessions
    that are not removed follow its ``k`` leading ones, up to ``sample`` in all."""
    items = [item for item, sessions in enumerate(lists) for _ in sessions]
    sessions = np.array([s for row in lists for s in row], dtype=np.int64)
    mask = np.zeros(12, dtype=bool)
    mask[list(removed)] = True
    held = pl.DataFrame({"item_id": list(range(len(lists))), "k": lead[: len(lists)]})
    got = base_list_ranks(pl.Series(items, dtype=pl.Int64), sessions, mask, held, sample)
    want = []
    for item, row in enumerate(lists):
        place = lead[item]
        for s in row:
            place += s not in removed
            want.append(place if s not in removed and place <= sample else 0)
    assert got.tolist() == want


def test_a_delta_holds_only_what_changed_and_references_the_rest(data, tmp_path):
    events, items = data
    root = tmp_path / "root"
    first, second = _chain(events, items, root, (7, 8, 9))
    base = first.manifest["delta"]["base"]
    own = _own_files(second.run_dir)
    referenced = (
        "items.ann", "batch_recs.parquet", "user_features.parquet", "state/cooc.npz",
        "session_items.parquet", "item_sessions.parquet", "sequential_rules.parquet",
        "state/sequential_rule_counts.parquet",
    )  # fmt: skip
    for name in referenced:
        assert name not in own and second.manifest["outputs"][name]["run"] == base, name
    # the session tables: only the sessions, lists and rules the days since the base changed
    for name in ("session_items.parquet", "item_sessions.parquet"):
        rows = pl.read_parquet(second.run_dir / "delta" / name).height
        assert 0 < rows < pl.read_parquet(root / "runs" / base / name).height, name
    # (on this small log every item gains a rule pair a day: the rules of all are rewritten)
    added = pl.read_parquet(second.run_dir / "delta" / "state" / "sequential_rule_counts.parquet")
    rules = pl.read_parquet(second.run_dir / "delta" / "sequential_rules.parquet")
    assert set(rules["item_id"]) == set(added["item_id"])
    assert {"delta/batch_recs.parquet", "item_embeddings.npy", "item_features.parquet"} <= own
    delta_users = pl.read_parquet(second.run_dir / "delta" / "user_features.parquet")
    assert 0 < delta_users.height < load_artifacts(root).user_features.height
    assert second.manifest["delta"]["users_changed"] == delta_users.height
    move = second.manifest["index"]["move"]
    assert not second.manifest["index"]["rebuilt"] and second.manifest["index"]["built_by"] == base
    assert 0 <= move["mean_cosine_distance"] < 0.05 and move["against_run"] == base
    assert 0 <= move["knn_overlap_at_10"] <= 1


def test_warm_delta_agrees_with_a_full_run_within_the_tested_tolerances(data, tmp_path):
    events, items = data
    (delta,) = _chain(events, items, tmp_path / "root", (8, 10))
    full = run_precompute(
        events, tmp_path / "full", items=items, as_of=START + timedelta(days=10), **FAST
    )
    assert delta.mode == "warm-delta"
    w, f = load_artifacts(delta.run_dir), load_artifacts(full.run_dir)
    exact = [c for c in f.item_features.columns if c != "item_idx"]
    assert (
        w.item_features.sort("item_id")
        .select(exact)
        .equals(f.item_features.sort("item_id").select(exact))
    )
    counts = ["user_id", "events", "views", "purchases", "last_seen", "recency_days"]
    assert w.user_features.select(counts).equals(f.user_features.select(counts))
    assert _overlap(w.neighbors, f.neighbors, "item_id", 10) > 0.8
    assert _overlap(w.batch_recs, f.batch_recs, "user_id", 10) > 0.5
    assert w.embeddings.shape == f.embeddings.shape


def test_moving_past_the_threshold_rebuilds_the_index_in_the_delta(data, tmp_path):
    events, items = data
    root = tmp_path / "root"
    first, second = _chain(events, items, root, (7, 8, 9), rebuild_threshold=0.0)
    assert first.mode == "warm-delta" and first.manifest["index"]["rebuilt"]
    assert "items.ann" in _own_files(first.run_dir)
    assert first.manifest["index"]["built_by"] == first.run_id
    # the next delta measures its move against that index, and keeps referencing its base
    assert second.manifest["index"]["move"]["against_run"] == first.run_id
    assert second.manifest["delta"]["base"] == first.manifest["delta"]["base"]
    assert load_artifacts(root).index.get_n_items() == second.rows["items"]


def test_items_new_since_the_index_are_served_by_vector(tmp_path):
    events, items = tmp_path / "events.parquet", tmp_path / "items.parquet"
    log = make_events()
    late = START + timedelta(days=8)
    # items 96..99 appear only after the base run: the kept index does not hold them
    extra = log.filter(pl.col("ts") >= late).head(40)
    extra = extra.with_columns((96 + pl.int_range(0, pl.len()) % 4).cast(pl.Int64).alias("item_id"))
    pl.concat([log, extra]).sort("ts").write_parquet(events)
    catalogue().write_parquet(items)
    (delta,) = _chain(events, items, tmp_path / "root", (8, 10))
    art = load_artifacts(tmp_path / "root")
    assert not delta.manifest["index"]["rebuilt"]
    assert art.n_items == 100 and art.n_indexed == 96 == art.index.get_n_items()
    new = int(art.to_idx([97])[0])
    found = art.index.get_nns_by_vector(art.embeddings[new].tolist(), 5)
    assert found and max(found) < 96
    # `rtml neighbors` on an item the kept index lacks answers by its vector
    from rtml_cli.batch.neighbors import nearest_items

    assert len(nearest_items(tmp_path / "root", "97", k=3)["neighbors"]) == 3


def test_prune_never_deletes_a_base_a_kept_delta_reads(data, tmp_path):
    events, items = data
    root = tmp_path / "root"
    run_precompute(events, root, items=items, as_of=START + timedelta(days=6), **FAST)
    runs = []
    for d in (7, 8, 9):
        last = run_precompute(
            events, root, items=items, as_of=START + timedelta(days=d), warm_start=root,
            n_trees=10, keep=1,
        )  # fmt: skip
        runs.append(last.run_id)
    base = last.manifest["delta"]["base"]
    # the newest, the one latest showed before it (a reader may hold it), and their base
    assert runs[0] in last.pruned
    assert sorted(p.name for p in (root / "runs").iterdir()) == sorted([base, *runs[1:]])
    assert load_artifacts(root).run_dir.name == last.run_id
    # compacted: the base stays while the delta latest showed until now is kept, then goes
    compact = run_precompute(
        events, root, items=items, as_of=START + timedelta(days=9, hours=12), warm_start=root,
        n_trees=10, keep=1, full_every=1,
    )  # fmt: skip
    assert compact.mode == "warm-start" and base not in compact.pruned
    after = run_precompute(events, root, items=items, warm_start=root, n_trees=10, keep=1)
    assert base in after.pruned and after.manifest["delta"]["base"] == compact.run_id


def test_a_delta_whose_base_is_gone_or_damaged_is_refused(data, tmp_path):
    events, items = data
    root = tmp_path / "root"
    (delta,) = _chain(events, items, root, (8, 9))
    base = root / "runs" / delta.manifest["delta"]["base"]
    (base / "batch_recs.parquet").write_bytes(b"garbage" * 10)
    with pytest.raises(DataError, match="batch_recs.parquet"):
        load_artifacts(root)
    with pytest.raises(DataError, match="cannot warm-start"):
        run_precompute(events, root, items=items, warm_start=root, n_trees=10)
    (base / "batch_recs.parquet").unlink()
    with pytest.raises(DataError, match=f"from run {base.name}"):
        load_artifacts(root)


def test_a_warm_start_hashes_no_published_file_again_but_a_changed_one(data, tmp_path, monkeypatch):
    """Publish records the files the writer hashed (``.verified.json``); a delta of a delta
    inherits its base's entries. A byte changed later (same size) is hashed and refused."""
    from rtml_cli.batch import publish

    events, items = data
    root = tmp_path / "root"
    (first,) = _chain(events, items, root, (7, 8))
    hashed = []
    original = publish.sha256_file

    def counting(path):
        hashed.append(Path(path))
        return original(path)

    monkeypatch.setattr(publish, "sha256_file", counting)
    second = run_precompute(events, root, items=items, warm_start=root, n_trees=10)
    # only the files the new delta wrote itself were hashed (for its manifest)
    assert hashed and all(second.run_id in p.parent.name or second.run_id in str(p.parent.parent)
                          for p in hashed)  # fmt: skip
    base = root / "runs" / first.manifest["delta"]["base"]
    path = base / "state" / "cooc.npz"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="cannot warm-start.*cooc.npz does not match its sha256"):
        run_precompute(events, root, items=items, warm_start=root, n_trees=10, force=True)


def test_a_reader_never_mixes_two_runs(data, tmp_path):
    """A reader that loaded a delta keeps serving it after latest moved on and pruned it."""
    events, items = data
    root = tmp_path / "root"
    (delta,) = _chain(events, items, root, (7, 8))
    held = load_artifacts(root)
    run_precompute(events, root, items=items, warm_start=root, n_trees=10, keep=1, full_every=1)
    run_precompute(events, root, items=items, as_of=START + timedelta(days=11), keep=1, **FAST)
    assert not delta.run_dir.exists()
    assert held.run_dir == delta.run_dir and held.batch_recs.height == delta.rows["batch_recs"]
    assert held.index.get_nns_by_item(0, 3)


_KILL_SCRIPT = """
import sys
from rtml_cli.batch.precompute import run_precompute
run_precompute(sys.argv[1], sys.argv[2], warm_start=sys.argv[2], n_trees=10, keep=1,
               full_every=int(sys.argv[3]), force=True)
"""


@pytest.mark.slow
@pytest.mark.parametrize("full_every", [7, 2], ids=["delta", "compaction"])
def test_kill_9_at_every_step_of_a_delta_leaves_latest_intact(data, tmp_path, full_every):
    """Along a delta chain (a delta of a delta; and the compaction that ends a chain)."""
    events, items = data
    root = tmp_path / "root"
    run_precompute(events, root, items=items, as_of=START + timedelta(days=7), **FAST)
    first = run_precompute(
        events, root, items=items, as_of=START + timedelta(days=8), warm_start=root, n_trees=10
    )
    assert first.mode == "warm-delta"
    base = first.manifest["delta"]["base"]
    env = {**os.environ}
    for step in STEPS:
        env[KILL_AT_ENV] = step
        proc = subprocess.run(
            [sys.executable, "-c", _KILL_SCRIPT, str(events), str(root), str(full_every)],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == -9, (step, proc.stderr.decode()[-500:])
        art = load_artifacts(root)  # latest still loads, base included
        visible = sorted(p.name for p in (root / "runs").iterdir() if not p.name.startswith("."))
        if step == "prune":  # killed after the switch (the last step): the new run is latest
            assert art.run_dir.name != first.run_id and first.run_id in visible, step
            assert art.manifest["mode"] == ("warm-delta" if full_every == 7 else "warm-start")
            continue
        assert art.run_dir.name == first.run_id, step
        assert base in visible and first.run_id in visible, step
    previous = load_artifacts(root).run_dir.name
    final = run_precompute(
        events, root, items=items, as_of=START + timedelta(days=11), warm_start=root,
        n_trees=10, keep=1, full_every=full_every,
    )  # fmt: skip
    assert load_artifacts(root).run_dir.name == final.run_id
    kept = sorted(p.name for p in (root / "runs").iterdir())
    runs = root / "runs"
    assert kept == sorted({final.run_id, previous} | bases_of(runs, {final.run_id, previous}))


@pytest.mark.slow
def test_replay_on_a_delta_run_matches_a_full_run_within_002_hit_rate(tmp_path):
    """The replay tolerance of a warm start: the same hit rates within ±0.02 per strategy,
    with the base's Annoy index kept (the sample shop's last history day)."""
    from rtml_cli.online import simulate
    from tests.conftest import SAMPLE_DATA

    shop = SAMPLE_DATA / "shop"
    world = json.loads((shop / "world.json").read_text())
    as_of = datetime.fromisoformat(world["history_cutoff"].replace("Z", "+00:00"))
    events, items = shop / "events.parquet", shop / "items.parquet"
    run_precompute(events, tmp_path / "full", items=items, as_of=as_of)
    run_precompute(events, tmp_path / "warm", items=items, as_of=as_of - timedelta(days=1))
    delta = run_precompute(
        events, tmp_path / "warm", items=items, as_of=as_of, warm_start=tmp_path / "warm"
    )
    assert delta.mode == "warm-delta" and not delta.manifest["index"]["rebuilt"]
    strategies = ("batch", "session-embedding", "session-vsknn", "online-ranker")
    hr = {
        root: simulate(
            events,
            tmp_path / root,
            strategies=strategies,
            end=as_of + timedelta(days=1),
            max_train_requests=1500,
            world=shop / "world.json",
        )  # fmt: skip
        for root in ("full", "warm")
    }
    for name in strategies:
        full, warm = hr["full"].summary_for(name)["hr"], hr["warm"].summary_for(name)["hr"]
        assert abs(warm - full) <= 0.02, (name, warm, full)


@pytest.fixture
def new_york(monkeypatch):
    """The process's local time zone set to America/New_York (UTC-5) for one test."""
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_session_spanning_the_base_as_of_is_kept_once_on_a_host_west_of_utc(tmp_path, new_york):
    """A session with events before and after the base's as-of is replaced in the delta, not
    kept twice: the cut-off DuckDB returns (a naive UTC timestamp) was once read as local
    time, 5 hours late in New York, and the base copy of the session survived the overlay."""
    base_as_of = START + timedelta(days=5, hours=7)
    t0 = base_as_of - timedelta(minutes=20)
    ev = make_events()
    spanning = pl.DataFrame(
        {
            "ts": [t0, t0 + timedelta(minutes=1), base_as_of + timedelta(minutes=40)],
            "user_id": [None, None, None],
            "session_id": ["spanning"] * 3,
            "item_id": [1, 2, 3],
            "event": ["view"] * 3,
        },
        schema=ev.schema,
    )
    events, items = tmp_path / "events.parquet", tmp_path / "items.parquet"
    pl.concat([ev, spanning]).sort("ts").write_parquet(events)
    catalogue().write_parquet(items)
    caps = SessionParams(session_sample=2500, rule_steps=3, rule_top=2)
    served = {}
    for name, every in (("delta", 3), ("plain", 1)):
        root = tmp_path / name
        run_precompute(events, root, items=items, as_of=base_as_of, sessions=caps, **FAST)
        run = run_precompute(
            events, root, items=items, as_of=base_as_of + timedelta(days=1),
            warm_start=root, n_trees=10, full_every=every,
        )  # fmt: skip
        served[name] = (run.mode, _sessions(run.run_dir))
    assert served["delta"][0] == "warm-delta" and served["plain"][0] != "warm-delta"
    for key, table in served["plain"][1].items():
        assert served["delta"][1][key].equals(table), key
    rows = served["delta"][1]["session_items"].filter(pl.col("session_id") == "spanning")
    assert rows["session_idx"].n_unique() == 1


def _no_session_thread() -> bool:
    import threading

    return not any(t.name.startswith("rtml-sessions") for t in threading.enumerate())


def test_a_delta_builds_its_session_tables_beside_the_other_steps(data, tmp_path, monkeypatch):
    """The session deltas run in a thread from the end of the features step; the sessions
    step only waits for them (the chain's tables still read exactly as a full chain's:
    test_a_delta_chains_session_tables_read_exactly_as_the_self_contained_chains)."""
    import threading

    from rtml_cli.batch import sessions_delta

    events, items = data
    root = tmp_path / "root"
    run_precompute(events, root, items=items, as_of=START + timedelta(days=8), **FAST)
    seen = {}
    original = sessions_delta.build_session_delta

    def spy(*args, **kwargs):
        seen["thread"] = threading.current_thread().name
        return original(*args, **kwargs)

    monkeypatch.setattr(sessions_delta, "build_session_delta", spy)
    result = run_precompute(events, root, items=items, warm_start=root, n_trees=10)
    assert result.mode == "warm-delta" and result.manifest["delta"]["chain"] == 1
    assert seen["thread"].startswith("rtml-sessions")
    assert _no_session_thread()
    assert {"delta/session_items.parquet", "delta/item_sessions.parquet"} <= set(
        result.manifest["outputs"]
    )


def test_the_move_checks_knn_overlap_is_the_published_embeddings(data, tmp_path):
    """The kNN overlap, computed in a thread beside the neighbours, is the one of the
    embeddings the delta published against its index's."""
    from rtml_cli.batch import embeddings as emb
    from rtml_cli.batch.precompute import MOVE_SAMPLE

    events, items = data
    (delta,) = _chain(events, items, tmp_path / "root", (7, 9))
    move = delta.manifest["index"]["move"]
    new = np.load(delta.run_dir / "item_embeddings.npy")
    old = np.load(tmp_path / "root" / "runs" / move["against_run"] / "item_embeddings.npy")
    expected = emb.embedding_move(new, old, sample=MOVE_SAMPLE, seed=0)
    assert move == {"against_run": move["against_run"], "threshold": 0.05, **expected}
    assert list(move)[-1] == "knn_overlap_at_10"
    assert _no_session_thread()


@pytest.mark.parametrize("where", ["main", "thread"])
def test_a_failure_beside_the_session_thread_publishes_nothing(data, tmp_path, monkeypatch, where):
    """An error in the steps running beside the session thread (or in the thread) fails the
    run with that error: the thread is stopped, its half-written directory removed, latest
    unchanged."""
    from rtml_cli.batch import embeddings, sessions_delta

    events, items = data
    root = tmp_path / "root"
    base = run_precompute(events, root, items=items, as_of=START + timedelta(days=8), **FAST)

    def boom(*args, **kwargs):
        raise DataError(f"boom in {where}")

    if where == "main":
        monkeypatch.setattr(embeddings, "cf_similarity", boom)
    else:
        monkeypatch.setattr(sessions_delta, "build_session_delta", boom)
    with pytest.raises(DataError, match=f"boom in {where}"):
        run_precompute(events, root, items=items, warm_start=root, n_trees=10)
    assert _no_session_thread()
    assert sorted(p.name for p in (root / "runs").iterdir()) == [base.run_id]
    assert (root / "latest").resolve().name == base.run_id


def test_precompute_turns_numpys_huge_pages_off_while_it_runs(data, tmp_path):
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # NumPy 1.x
        from numpy.core.multiarray import _set_madvise_hugepage

    events, items = data
    flags = []

    def progress(step, done, total):
        flags.append(_set_madvise_hugepage(False))

    before = _set_madvise_hugepage(True)
    try:
        run_precompute(events, tmp_path / "root", items=items, progress=progress, **FAST)
        assert flags and not any(flags)
        assert _set_madvise_hugepage(True) is True  # restored
    finally:
        _set_madvise_hugepage(before)


def test_stopping_the_session_thread_interrupts_its_next_query_too():
    """DuckDB's interrupt stops only a query already running: a session thread caught
    between two queries must still be stopped, not left to run its next query to the end."""
    import threading
    import types
    from concurrent.futures import ThreadPoolExecutor

    import duckdb

    from rtml_cli.batch.precompute import _stop_session_delta

    con = duckdb.connect()
    cur = con.cursor()
    between = threading.Event()

    def two_queries():
        cur.sql("SELECT 1").fetchall()
        between.set()
        time.sleep(0.5)  # the first interrupt lands here, between the queries
        # minutes of work unless interrupted
        return cur.sql("SELECT sum(hash(i)) FROM range(100000000000) t(i)").fetchall()

    pool = ThreadPoolExecutor(max_workers=1)
    job = pool.submit(two_queries)
    between.wait(10)
    run = types.SimpleNamespace(session_job=job, session_con=cur)
    started = time.perf_counter()
    _stop_session_delta(run)
    assert job.done() and isinstance(job.exception(), duckdb.InterruptException)
    assert time.perf_counter() - started < 30
    assert run.session_job is None and run.session_con is None
    pool.shutdown()
    con.close()
