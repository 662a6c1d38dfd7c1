"""`rtml precompute` / `rtml neighbors`: artifacts, point-in-time, warm start, cron safety, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.batch.artifacts import RUN_FILES, load_artifacts
from rtml_cli.batch.embeddings import cooccurrence, top_n_per_row
from rtml_cli.batch.precompute import KILL_AT_ENV, STEPS, run_precompute
from rtml_cli.errors import DataError, ExitCode, InputMissing, OutputError, UsageError
from rtml_cli.fsutil import root_lock

START = datetime(2024, 3, 1, tzinfo=timezone.utc)
N_BUNDLES, PER_BUNDLE = 8, 12
FAST = {"dim": 8, "n_trees": 10}


def make_events(n_sessions=400, days=10, seed=0, n_users=60) -> pl.DataFrame:
    """Sessions that browse one intent bundle each (bundle = item_id // PER_BUNDLE)."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_sessions):
        bundle = rng.integers(N_BUNDLES)
        t = START + timedelta(seconds=int(rng.integers(days * 86400)))
        user = None if rng.random() < 0.3 else f"u{rng.integers(n_users)}"
        for k in range(rng.integers(2, 7)):
            item = int(bundle * PER_BUNDLE + rng.integers(PER_BUNDLE))
            event = "view" if rng.random() < 0.8 else ("cart" if rng.random() < 0.6 else "purchase")
            rows.append((t + timedelta(seconds=30 * k), user, f"s{seed}-{s}", item, event))
    ts, user, sid, item, event = zip(*rows, strict=True)
    return pl.DataFrame(
        {"ts": ts, "user_id": user, "session_id": sid, "item_id": item, "event": event},
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "user_id": pl.Utf8,
            "session_id": pl.Utf8,
            "item_id": pl.Int64,
            "event": pl.Utf8,
        },
    ).sort("ts")


def catalogue() -> pl.DataFrame:
    ids = list(range(N_BUNDLES * PER_BUNDLE))
    return pl.DataFrame(
        {
            "item_id": ids,
            "category": [f"bundle-{i // PER_BUNDLE}" for i in ids],
            "title": [f"item {i}" for i in ids],
        }
    )


@pytest.fixture
def data(tmp_path: Path) -> tuple[Path, Path]:
    events = tmp_path / "events.parquet"
    items = tmp_path / "items.parquet"
    make_events().write_parquet(events)
    catalogue().write_parquet(items)
    return events, items


def checksums(run_dir: Path) -> dict:
    return json.loads((run_dir / "manifest.json").read_text())["outputs"]


# --- artifacts -------------------------------------------------------------------------


def test_artifacts_are_complete_and_readable_with_plain_polars_and_annoy(data, tmp_path):
    events, items = data
    result = run_precompute(events, tmp_path / "root", items=items, **FAST)
    run = tmp_path / "root" / "latest"
    assert run.resolve() == result.run_dir.resolve()
    for name in RUN_FILES:
        assert (run / name).exists(), name
    features = pl.read_parquet(run / "item_features.parquet")
    for column in ("item_id", "category", "first_seen", "last_seen", "popularity_rank"):
        assert column in features.columns
    for window in ("1d", "7d", "30d"):
        for kind in ("views", "carts", "purchases"):
            assert f"{kind}_{window}" in features.columns
    assert "conversion_rate_30d" in features.columns
    assert features["category"].null_count() == 0
    assert sorted(features["popularity_rank"].to_list()) == list(range(1, features.height + 1))
    frame = make_events()
    assert features["views_total"].sum() == frame.filter(pl.col("event") == "view").height
    users = pl.read_parquet(run / "user_features.parquet")
    assert users.height == frame["user_id"].drop_nulls().n_unique()
    assert {"recency_days", "top_categories", "purchases"} <= set(users.columns)
    from annoy import AnnoyIndex

    emb = np.load(run / "item_embeddings.npy")
    assert emb.dtype == np.float32 and emb.shape == (features.height, 8)
    index = AnnoyIndex(8, "angular")
    index.load(str(run / "items.ann"))
    assert index.get_n_items() == features.height
    art = load_artifacts(tmp_path / "root")
    assert art.n_items == features.height
    recs = art.batch_recs
    assert recs.group_by("user_id").len()["len"].max() == 50
    bought = frame.filter(pl.col("event") == "purchase").select("user_id", "item_id").unique()
    assert recs.join(bought, on=["user_id", "item_id"], how="inner").height == 0
    assert art.popular["rank"].to_list()[:3] == [1, 2, 3]
    assert result.manifest["index"]["recall_at_10"] >= 0.9
    assert [s["step"] for s in result.steps] == list(STEPS)


def test_neighbours_fall_inside_the_same_intent_bundle(data, tmp_path):
    events, _ = data
    run_precompute(events, tmp_path / "root", **FAST)
    art = load_artifacts(tmp_path / "root")
    top = art.neighbors.filter(pl.col("rank") <= 5)
    same = (top["item_id"] // PER_BUNDLE == top["neighbor_id"] // PER_BUNDLE).mean()
    assert same > 0.95
    ids, emb_same = art.item_ids, []
    for idx in range(art.n_items):
        found = art.index.get_nns_by_item(idx, 6)[1:]
        emb_same += [ids[j] // PER_BUNDLE == ids[idx] // PER_BUNDLE for j in found]
    assert np.mean(emb_same) > 0.9


def test_point_in_time_events_at_or_after_as_of_change_nothing(data, tmp_path):
    events, _ = data
    as_of = START + timedelta(days=6)
    first = run_precompute(events, tmp_path / "a", as_of=as_of, **FAST)
    frame = make_events()
    late = make_events(n_sessions=50, seed=9).with_columns(
        pl.lit(as_of).alias("ts") + pl.duration(seconds=pl.int_range(0, pl.len()) % 3)
    )
    polluted = tmp_path / "polluted.parquet"
    pl.concat([frame, late]).write_parquet(polluted)
    second = run_precompute(polluted, tmp_path / "b", as_of=as_of, **FAST)
    assert second.rows["events_before_as_of"] == first.rows["events_before_as_of"]
    assert checksums(second.run_dir) == checksums(first.run_dir)
    features = pl.read_parquet(first.run_dir / "item_features.parquet")
    assert features["last_seen"].max() < as_of


def test_same_seed_same_checksums_and_rerun_is_a_noop(data, tmp_path):
    events, items = data
    a = run_precompute(events, tmp_path / "a", items=items, **FAST)
    b = run_precompute(events, tmp_path / "b", items=items, **FAST)
    assert checksums(a.run_dir) == checksums(b.run_dir)
    again = run_precompute(events, tmp_path / "a", items=items, **FAST)
    assert again.skipped and again.run_id == a.run_id
    forced = run_precompute(events, tmp_path / "a", items=items, force=True, **FAST)
    assert not forced.skipped
    assert checksums(forced.run_dir) == checksums(a.run_dir)
    other_seed = run_precompute(events, tmp_path / "c", items=items, seed=1, **FAST)
    assert checksums(other_seed.run_dir) != checksums(a.run_dir)


def test_same_as_of_with_other_inputs_needs_force(data, tmp_path):
    events, _ = data
    run_precompute(events, tmp_path / "root", **FAST)
    with pytest.raises(OutputError, match="--force"):
        run_precompute(events, tmp_path / "root", dim=6, n_trees=10)


# --- warm start ------------------------------------------------------------------------


def _overlap(a: pl.DataFrame, b: pl.DataFrame, keys: str, top: int) -> float:
    left = a.filter(pl.col("rank") <= top)
    right = b.filter(pl.col("rank") <= top)
    cols = [c for c in a.columns if c not in ("rank", "score")]
    return left.join(right, on=cols, how="inner").height / max(left.height, 1)


def test_warm_start_uses_new_events_only_and_agrees_with_a_full_run(data, tmp_path):
    events, items = data
    day8 = START + timedelta(days=8)
    base = run_precompute(events, tmp_path / "root", items=items, as_of=day8, **FAST)
    warm = run_precompute(
        events, tmp_path / "root", items=items, warm_start=tmp_path / "root", n_trees=10
    )
    full = run_precompute(events, tmp_path / "full", items=items, **FAST)
    assert warm.mode == "warm-delta" and warm.manifest["warm_start"]["run_id"] == base.run_id
    new_events = make_events().filter(pl.col("ts") >= day8).height
    assert warm.rows["events_read_for_model"] == new_events < full.rows["events_read_for_model"]
    w, f = load_artifacts(warm.run_dir), load_artifacts(full.run_dir)
    exact = [c for c in f.item_features.columns if c not in ("item_idx",)]
    assert (
        w.item_features.sort("item_id")
        .select(exact)
        .equals(f.item_features.sort("item_id").select(exact))
    )
    counts = ["user_id", "events", "views", "purchases", "last_seen", "recency_days"]
    wu, fu = w.user_features.sort("user_id"), f.user_features.sort("user_id")
    assert wu.select(counts).equals(fu.select(counts))
    assert (wu["top_categories"] == fu["top_categories"]).mean() > 0.95
    assert _overlap(w.neighbors, f.neighbors, "item_id", 10) > 0.8
    assert _overlap(w.batch_recs, f.batch_recs, "user_id", 10) > 0.5
    assert (tmp_path / "root" / "latest").resolve().name == warm.run_id
    again = run_precompute(events, tmp_path / "root", warm_start=tmp_path / "root", n_trees=10)
    assert again.skipped and again.run_id == warm.run_id  # nothing new: a no-op, exit 0


def test_chained_warm_starts_roll_window_counts_exactly(data, tmp_path):
    """Windows are rolled, not re-read: uneven gaps (hours, days) still give a full run's counts."""
    events, items = data
    root = tmp_path / "root"
    run_precompute(events, root, items=items, as_of=START + timedelta(days=2), **FAST)
    for gap_end in (timedelta(days=2, hours=7), timedelta(days=5), timedelta(days=9, hours=1)):
        warm = run_precompute(
            events, root, items=items, as_of=START + gap_end, warm_start=root, n_trees=10
        )
        full = run_precompute(
            events,
            tmp_path / f"full{gap_end.total_seconds():.0f}",
            items=items,
            as_of=START + gap_end,
            **FAST,
        )
        w, f = load_artifacts(warm.run_dir), load_artifacts(full.run_dir)
        exact = [c for c in f.item_features.columns if c != "item_idx"]
        assert (
            w.item_features.sort("item_id")
            .select(exact)
            .equals(f.item_features.sort("item_id").select(exact))
        ), gap_end
        assert w.item_features["views_1d"].sum() > 0


def test_warm_start_from_corrupt_missing_or_newer_run(data, tmp_path):
    events, _ = data
    base = run_precompute(events, tmp_path / "root", as_of=START + timedelta(days=8), **FAST)
    with pytest.raises(InputMissing):
        run_precompute(events, tmp_path / "x", warm_start=tmp_path / "nope", **FAST)
    (base.run_dir / "state" / "cooc.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot warm-start"):
        run_precompute(events, tmp_path / "x", warm_start=base.run_dir, n_trees=10)
    assert not (tmp_path / "x" / "latest").exists()
    later = run_precompute(events, tmp_path / "later", **FAST)
    with pytest.raises(UsageError, match="not older"):
        run_precompute(
            events, tmp_path / "y", as_of=START + timedelta(days=2), warm_start=later.run_dir
        )


# --- cron safety -----------------------------------------------------------------------


def test_locked_root_exits_75_naming_the_holder(data, tmp_path, invoke):
    events, _ = data
    with root_lock(tmp_path / "root"):
        result = invoke("precompute", events, "--out", tmp_path / "root", "--dim", "8")
    assert result.exit_code == ExitCode.TEMP_FAIL
    assert f"pid {os.getpid()}" in result.stderr
    assert not (tmp_path / "root" / "latest").exists()


_KILL_SCRIPT = """
import sys
from datetime import datetime
from rtml_cli.batch.precompute import run_precompute
run_precompute(sys.argv[1], sys.argv[2], dim=8, n_trees=10, keep=1, force=True)
"""


@pytest.mark.slow
def test_kill_9_at_every_step_leaves_latest_intact_and_the_next_run_succeeds(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    first = run_precompute(events, root, as_of=START + timedelta(days=8), **FAST)
    env = {**os.environ}
    for step in STEPS:
        env[KILL_AT_ENV] = step
        proc = subprocess.run(
            [sys.executable, "-c", _KILL_SCRIPT, str(events), str(root)],
            env=env,
            capture_output=True,
            timeout=120,
        )
        assert proc.returncode == -9, (step, proc.stderr.decode()[-500:])
        art = load_artifacts(root)  # latest still loads
        visible = [p.name for p in (root / "runs").iterdir() if not p.name.startswith(".")]
        if step == "prune":  # killed after the switch: the new run is latest, old one kept
            assert art.run_dir.name != first.run_id and first.run_id in visible
            continue
        assert art.run_dir.name == first.run_id, step
        if step != "switch":  # killed after publish, before switch: new run exists, not latest
            assert visible == [first.run_id], step
    final = run_precompute(events, root, keep=1, **FAST)
    assert final.skipped and load_artifacts(root).run_dir.name == final.run_id
    assert sorted(p.name for p in (root / "runs").iterdir()) == [final.run_id]


def test_keep_prunes_old_runs_but_never_latest(data, tmp_path):
    events, _ = data
    root = tmp_path / "root"
    ids = [
        run_precompute(events, root, as_of=START + timedelta(days=d), **FAST).run_id
        for d in (7, 8, 9)
    ]
    result = run_precompute(events, root, keep=2, **FAST)
    assert result.pruned == ids[:2]
    assert sorted(p.name for p in (root / "runs").iterdir()) == [ids[2], result.run_id]
    # an older as-of published later does not steal latest, and keep=1 keeps latest
    old = run_precompute(events, root, as_of=START + timedelta(days=5), keep=1, **FAST)
    assert not old.published
    assert load_artifacts(root).run_dir.name == result.run_id


# --- CLI -------------------------------------------------------------------------------


def test_cli_json_quiet_and_table(data, tmp_path, invoke):
    events, items = data
    args = ("precompute", events, "--out", tmp_path / "root", "--dim", "8", "--trees", "10")
    result = invoke(*args, "--items", items, "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["mode"] == "full" and not doc["skipped"] and doc["rows"]["items"] == 96
    quiet = invoke(*args, "--items", items, "--quiet")
    assert quiet.exit_code == ExitCode.OK and quiet.stdout == ""
    table = invoke(*args, "--items", items)
    assert table.exit_code == ExitCode.OK
    assert "nothing to do" in table.stderr and "recall@10" in table.stdout


def test_cli_neighbors(data, tmp_path, invoke):
    events, items = data
    run_precompute(events, tmp_path / "root", items=items, **FAST)
    result = invoke("neighbors", "5", "--artifacts", tmp_path / "root", "-k", "5")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "bundle-0" in result.stdout and "item 5" in result.stdout
    doc = json.loads(
        invoke("neighbors", "5", "-a", tmp_path / "root", "--by", "cf", "-f", "json").stdout
    )
    assert len(doc["neighbors"]) == 10
    assert sum(n["category"] == "bundle-0" for n in doc["neighbors"]) >= 9
    missing = invoke("neighbors", "99999", "-a", tmp_path / "root")
    assert missing.exit_code == ExitCode.NO_INPUT and "not in the precompute run" in missing.stderr
    assert invoke("neighbors", "5", "-a", tmp_path / "nope").exit_code == ExitCode.NO_INPUT


def _write(path: Path, frame: pl.DataFrame) -> Path:
    frame.write_parquet(path)
    return path


@pytest.mark.parametrize(
    ("case", "code", "message"),
    [
        ("missing", ExitCode.NO_INPUT, "does not exist"),
        ("not-parquet", ExitCode.DATA_ERR, "not a Parquet file"),
        ("no-column", ExitCode.DATA_ERR, "events contract"),
        ("null-item", ExitCode.DATA_ERR, "events contract"),
        ("empty", ExitCode.DATA_ERR, "no rows"),
        ("as-of-before", ExitCode.USAGE, "not after the first event"),
        ("one-item-sessions", ExitCode.DATA_ERR, "two different items"),
        ("dim-too-big", ExitCode.USAGE, "smaller than the number of items"),
        ("keep-zero", ExitCode.USAGE, "--keep"),
        ("unwritable", ExitCode.CANT_CREATE, "is a file"),
        ("bad-as-of", ExitCode.USAGE, "invalid timestamp"),
    ],
)
def test_bad_input_is_one_line_with_the_right_exit_code(
    data, tmp_path, invoke, case, code, message
):
    events, _ = data
    frame = make_events()
    root = tmp_path / "root"
    extra: list[str] = ["--dim", "8"]
    if case == "missing":
        events = tmp_path / "nope.parquet"
    elif case == "not-parquet":
        events = tmp_path / "x.parquet"
        events.write_text("ts,user_id\n")
    elif case == "no-column":
        events = _write(tmp_path / "x.parquet", frame.drop("session_id"))
    elif case == "null-item":
        events = _write(
            tmp_path / "x.parquet", frame.with_columns(pl.lit(None, pl.Int64).alias("item_id"))
        )
    elif case == "empty":
        events = _write(tmp_path / "x.parquet", frame.head(0))
    elif case == "as-of-before":
        extra += ["--as-of", "2020-01-01"]
    elif case == "one-item-sessions":
        events = _write(
            tmp_path / "x.parquet",
            frame.with_columns(pl.format("s{}", pl.int_range(0, pl.len())).alias("session_id")),
        )
    elif case == "dim-too-big":
        extra = ["--dim", "500"]
    elif case == "keep-zero":
        extra += ["--keep", "0"]
    elif case == "unwritable":
        root.write_text("a file, not a directory")
    elif case == "bad-as-of":
        extra += ["--as-of", "yesterday-ish"]
    result = invoke("precompute", events, "--out", root, *extra)
    assert result.exit_code == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rtml: error:")]
    assert len(errors) == 1 and message in errors[0]
    assert "Traceback" not in result.stderr
    if root.is_dir():
        assert not (root / "latest").exists()
        assert (
            [p.name for p in (root / "runs").glob("*")] == [] if (root / "runs").exists() else True
        )


# --- properties ------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.lists(st.integers(0, 6), min_size=1, max_size=8), min_size=1, max_size=8),
    st.integers(1, 4),
)
def test_cooccurrence_matches_brute_force(sessions, window):
    keys, items = [], []
    for s, seq in enumerate(sessions):
        keys += [s] * len(seq)
        items += seq
    counts = cooccurrence(
        np.array(keys),
        np.array(items),
        np.ones(len(items), np.float32),
        7,
        window=window,
        max_session_len=100,
    ).toarray()
    expected = np.zeros((7, 7))
    for seq in sessions:
        collapsed = [x for i, x in enumerate(seq) if i == 0 or seq[i - 1] != x]
        for i, a in enumerate(collapsed):
            for b in collapsed[i + 1 : i + 1 + window]:
                if a != b:
                    expected[a, b] += 1
                    expected[b, a] += 1
    np.testing.assert_allclose(counts, expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5))
def test_top_n_per_row_matches_sorting(seed, n):
    matrix = sp.random(8, 12, density=0.4, random_state=seed, format="csr")
    rows, cols, vals = top_n_per_row(matrix, n)
    dense = matrix.toarray()
    for r in range(8):
        nz = [(-dense[r, c], c) for c in range(12) if dense[r, c] != 0]
        expected = [c for _, c in sorted(nz)[:n]]
        assert cols[rows == r].tolist() == expected


# --- sample world and cron wrapper --------------------------------------------------------

SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"


@pytest.mark.slow
def test_sample_world_neighbours_stay_inside_the_intent_bundle(tmp_path):
    result = run_precompute(
        SHOP / "events.parquet", tmp_path / "root", items=SHOP / "items.parquet"
    )
    art = load_artifacts(tmp_path / "root")
    bundle = pl.read_parquet(SHOP / "items.parquet").select("item_id", "bundle")
    top = (
        art.neighbors.filter(pl.col("rank") <= 10)
        .join(bundle, on="item_id")
        .join(
            bundle.rename({"item_id": "neighbor_id", "bundle": "neighbor_bundle"}), on="neighbor_id"
        )
    )
    cf_same = (top["bundle"] == top["neighbor_bundle"]).mean()
    lookup = dict(zip(bundle["item_id"].to_list(), bundle["bundle"].to_list(), strict=True))
    ids = art.item_ids.tolist()
    emb_same = np.mean(
        [
            lookup[ids[i]] == lookup[ids[j]]
            for i in range(0, art.n_items, 5)
            for j in art.index.get_nns_by_item(i, 11)[1:]
        ]
    )
    n_bundles = bundle["bundle"].n_unique()
    # 16 bundles: a random neighbour would share the bundle ~1/16 of the time
    assert n_bundles >= 8
    assert cf_same > 0.9 and emb_same > 0.9, (cf_same, emb_same)
    assert result.manifest["index"]["recall_at_10"] >= 0.95


def test_cron_wrapper_logs_and_passes_the_exit_code_through(data, tmp_path):
    events, items = data
    script = Path(__file__).resolve().parent.parent / "examples" / "cron" / "rtml-precompute.sh"
    rtml = Path(sys.executable).parent / "rtml"
    env = {
        **os.environ,
        "RTML": str(rtml),
        "EVENTS": str(events),
        "ITEMS": str(items),
        "ROOT": str(tmp_path / "root"),
        "KEEP": "2",
    }
    ok = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr == ""
    logs = list((tmp_path / "root" / "logs").glob("precompute-*.log"))
    assert len(logs) == 1 and "exit 0" in logs[0].read_text()
    assert load_artifacts(tmp_path / "root").n_items == 96
    bad = subprocess.run(
        ["bash", str(script)],
        env={**env, "EVENTS": str(tmp_path / "missing.parquet"), "LOG_DIR": str(tmp_path / "l")},
        capture_output=True,
        text=True,
    )
    assert bad.returncode == ExitCode.NO_INPUT
    assert "failed with exit 66" in bad.stderr


def test_max_staleness_refuses_a_stopped_feed(tmp_path, invoke):
    """--max-staleness: a log whose newest event is too old is exit 76, nothing published;
    a fresh one runs."""
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    fresh = pl.DataFrame(
        {
            "ts": [now - timedelta(hours=h) for h in (30, 29, 28, 27, 3, 2)],
            "user_id": ["u1", "u1", "u2", "u2", "u1", "u2"],
            "session_id": ["s1", "s1", "s2", "s2", "s3", "s4"],
            "item_id": [1, 2, 1, 3, 2, 3],
            "event": ["view"] * 6,
        }
    )
    path = tmp_path / "events.parquet"
    fresh.write_parquet(path)
    args = ("precompute", path, "--dim", "2", "--trees", "2", "--max-staleness")
    ok = invoke(*args, "26h", "--out", tmp_path / "ok", "--quiet")
    assert ok.exit_code == ExitCode.OK, ok.stderr
    stale = invoke(*args, "1h", "--out", tmp_path / "stale")
    assert stale.exit_code == ExitCode.STALE_DATA == 76
    assert "the newest event is 2.0 hours old" in stale.stderr
    assert "more than --max-staleness 1h" in stale.stderr
    assert not (tmp_path / "stale" / "latest").exists()
    assert invoke(*args, "0s", "--out", tmp_path / "x").exit_code == ExitCode.USAGE


def test_precomputes_default_memory_cap_is_a_share_of_ram(monkeypatch):
    """Issue #10: the cap is RTML_MEMORY_LIMIT, else an eighth of the machine's memory (at
    least 1 GB); a flat 1 GB ran out of memory at ~100M events."""
    import os

    from rtml_cli.duck import share_of_ram

    total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    assert float(share_of_ram().removesuffix("GB")) == pytest.approx(
        max(1.0, total / 8 / 2**30), abs=0.06
    )
    assert share_of_ram(fraction=0.0) == "1.0GB"
