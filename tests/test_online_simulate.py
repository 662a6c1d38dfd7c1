"""The replay: no peeking, sharding, RESULTS, the CLI and its bad inputs."""

from __future__ import annotations

import json
from datetime import timedelta

import numpy as np
import polars as pl
import pytest

from rtml_cli.contracts import RESULTS
from rtml_cli.errors import ExitCode
from rtml_cli.online import simulate
from tests.online_fixtures import AS_OF, tiny_events, write_run, write_shop

ALL = (
    "popular",
    "batch",
    "session-embedding",
    "session-embedding-decay",
    "session-itemknn",
    "online-ranker",
)
FAST = dict(k=8, n_candidates=30, max_train_requests=300, train_window=timedelta(days=1))


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = write_shop(tmp_path_factory.mktemp("shop"))
    return base, pl.read_parquet(base / "events.parquet")


@pytest.fixture(scope="module")
def full(shop):
    base, events = shop
    return simulate(events, base / "root", strategies=ALL, keep_lists=True, **FAST)


def _lists_before(result, cutoff):
    keep = result.frame.filter(pl.col("strategy") == ALL[0])
    mask = (keep["ts"] <= cutoff).to_numpy()
    ids = keep["request_id"].to_numpy()[mask]
    return ids, {name: result.lists[name][mask] for name in ALL}


def test_results_follow_the_contract(full):
    frame = full.frame
    for col in RESULTS.required:
        assert col.name in frame.columns, col.name
        if not col.nullable:
            assert frame[col.name].null_count() == 0, col.name
    assert frame.height == full.info["requests"] * len(ALL)
    assert set(frame["segment"].unique()) <= {"anonymous", "new", "returning"}
    assert (frame["position"] >= 2).all()
    ranked = frame.filter(pl.col("rank").is_not_null())
    assert (ranked["rank"] <= 8).all() and ranked["hit"].all()
    assert np.allclose(ranked["rr"], 1 / ranked["rank"])
    assert frame.filter(pl.col("rank").is_null())["rr"].sum() == 0
    # the per-request metrics agree with the summary
    row = full.summary_for("session-itemknn")
    mine = frame.filter(pl.col("strategy") == "session-itemknn")
    assert row["hr"] == pytest.approx(mine["hit"].mean())
    assert row["requests"] == full.info["requests"]


def test_no_peeking_future_events_removed_or_shuffled(shop, full):
    """Predictions up to T are identical when everything after T is dropped or scrambled."""
    base, events = shop
    cutoff = AS_OF + timedelta(hours=10)
    future = events.filter(pl.col("ts") > cutoff)
    rng = np.random.default_rng(5)
    scrambled = future.with_columns(
        pl.Series("item_id", rng.permutation(future["item_id"].to_numpy())),
        pl.Series("session_id", rng.permutation(future["session_id"].to_numpy())),
    )
    ids, expected = _lists_before(full, cutoff)
    assert len(ids) > 50
    for variant in (
        events.filter(pl.col("ts") <= cutoff),
        pl.concat([events.filter(pl.col("ts") <= cutoff), scrambled]),
    ):
        again = simulate(variant, base / "root", strategies=ALL, keep_lists=True, **FAST)
        got_ids, got = _lists_before(again, cutoff)
        assert np.array_equal(got_ids, ids)
        for name in ALL:
            assert np.array_equal(got[name], expected[name]), name


def test_shards_concatenate_to_the_single_run(shop, full):
    base, events = shop
    parts = [
        simulate(events, base / "root", strategies=ALL, shard=(i, 3), **FAST).frame
        for i in (1, 2, 3)
    ]
    assert all(p.height for p in parts)
    joined = pl.concat(parts).sort("request_id", maintain_order=True)
    assert joined.drop("latency_us").equals(full.frame.drop("latency_us"))


def test_sharding_builds_the_replay_once(shop, full, monkeypatch):
    from rtml_cli.online import replay

    base, events = shop
    shards, prepare = [], replay.prepare

    def counted(*args, **kwargs):
        shards.append(kwargs.get("shard"))
        return prepare(*args, **kwargs)

    monkeypatch.setattr(replay, "prepare", counted)
    result = simulate(events, base / "root", strategies=("popular",), shard="2/3", **FAST)
    assert shards == [(2, 3)]  # no second pass to count every shard's requests
    assert result.info["requests_all_shards"] == full.info["requests"] > result.info["requests"]


def test_deterministic_except_latency(shop, full):
    base, events = shop
    again = simulate(events, base / "root", strategies=ALL, **FAST)
    assert again.frame.drop("latency_us").equals(full.frame.drop("latency_us"))


def test_session_strategies_beat_batch_on_strangers(full):
    # the tiny shop's sessions stay in one bundle: the session is what predicts the next item
    for segment in ("anonymous", "all"):
        batch = full.summary_for("batch", segment)["hr"]
        assert full.summary_for("session-embedding", segment)["hr"] > batch + 0.03, segment
        for name in ("session-itemknn", "online-ranker"):
            assert full.summary_for(name, segment)["hr"] > batch + 0.1, (name, segment)


def test_unknown_items_are_counted_not_fatal(shop):
    base, events = shop
    late = events.filter(pl.col("ts") >= AS_OF).head(400)
    new_item = late.with_columns(
        pl.when(pl.int_range(pl.len()) % 5 == 0)
        .then(pl.lit(999_999))
        .otherwise(pl.col("item_id"))
        .alias("item_id")
    )
    result = simulate(new_item, base / "root", strategies=("popular", "online-ranker"), **FAST)
    assert result.info["unknown_items"] == 1
    assert result.info["unknown_item_events"] == 80
    assert result.info["requests_with_unknown_truth"] > 0
    assert result.frame.filter(pl.col("next_item_id").is_null())["hit"].sum() == 0


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def cli_shop(shop, tmp_path):
    base, _ = shop
    return base / "events.parquet", base / "root", tmp_path / "results.parquet"


def _args(events, root, *extra):
    return (
        "simulate",
        events,
        "--artifacts",
        root,
        "--k",
        "8",
        "--candidates",
        "30",
        "--train-window",
        "1d",
        *extra,
    )


def test_cli_table_json_and_results(invoke, cli_shop):
    events, root, out = cli_shop
    result = invoke(*_args(events, root, "--strategies", "popular,session-itemknn", "--out", out))
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "HR@8" in result.stdout and "session-itemknn" in result.stdout
    assert "by visitor segment" in result.stdout
    frame = pl.read_parquet(out)
    assert set(frame["strategy"].unique()) == {"popular", "session-itemknn"}
    result = invoke(*_args(events, root, "--strategies", "popular", "--format", "json"))
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert doc["summary"][0]["strategy"] == "popular"
    assert {"hr", "mrr", "ndcg", "coverage", "latency_p99_ms"} <= set(doc["summary"][0])


def test_cli_ablation_and_freshness_sweep(invoke, cli_shop):
    events, root, _ = cli_shop
    result = invoke(
        *_args(
            events,
            root,
            "--strategies",
            "online-ranker",
            "--ablation",
            "--freshness-sweep",
            "0s,1h",
            "--format",
            "json",
        )
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert [r["strategy"] for r in doc["ablation"]] == [
        "online-ranker-no-batch",
        "online-ranker-no-realtime",
        "online-ranker-no-streaming",
    ]
    assert [r["strategy"] for r in doc["freshness"]] == ["online-ranker@0s", "online-ranker@1h"]
    # real-time session features carry the ranker on this shop
    assert doc["ablation"][1]["hr_delta"] < -0.05


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (("--strategies", "popular,nope"), ExitCode.USAGE, "unknown strategy 'nope'"),
        (("--shard", "3/2"), ExitCode.USAGE, "invalid shard 3/2"),
        (("--shard", "x"), ExitCode.USAGE, "invalid shard"),
        (("--from", "2030-01-01"), ExitCode.DATA_ERR, "no requests to replay"),
        (("--from", "2024-03-05", "--to", "2024-03-04"), ExitCode.USAGE, "empty window"),
        (("--freshness", "soon"), ExitCode.USAGE, "invalid duration"),
        (("--k", "0"), ExitCode.USAGE, "--k must be at least 1"),
    ],
)
def test_cli_bad_options(invoke, cli_shop, extra, code, message):
    events, root, out = cli_shop
    result = invoke(*_args(events, root, "--out", out, *extra))
    assert result.exit_code == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rtml: error:") and message in lines[-1]
    assert not out.exists()
    assert not list(out.parent.glob(".tmp-*"))


def test_cli_missing_and_incompatible_artifacts(invoke, cli_shop, tmp_path):
    events, root, out = cli_shop
    result = invoke(*_args(events, tmp_path / "nowhere", "--out", out))
    assert result.exit_code == ExitCode.NO_INPUT
    assert "run `rtml precompute`" in result.stderr
    old = tmp_path / "old"
    run = old / "runs" / "r1"
    run.mkdir(parents=True)
    (run / "manifest.json").write_text(json.dumps({"format_version": 0, "as_of": "2024-01-01"}))
    (old / "latest").symlink_to("runs/r1")
    result = invoke(*_args(events, old, "--out", out))
    assert result.exit_code == ExitCode.DATA_ERR
    assert "incompatible" in result.stderr
    result = invoke(*_args(tmp_path / "none.parquet", root, "--out", out))
    assert result.exit_code == ExitCode.NO_INPUT
    assert not out.exists()


def test_cli_events_missing_columns(invoke, cli_shop, tmp_path):
    _, root, out = cli_shop
    bad = tmp_path / "bad.parquet"
    pl.DataFrame({"ts": [1], "item_id": [1]}).write_parquet(bad)
    result = invoke(*_args(bad, root, "--out", out))
    assert result.exit_code == ExitCode.DATA_ERR
    assert "lack required column" in result.stderr
    assert not out.exists()


def test_fresh_streaming_features_beat_stale_ones_during_a_burst(tmp_path):
    """A site-wide trend only the stream can see: 0s-fresh counts serve it better than
    1h-stale ones. Deterministic (fixed seeds); the margin is modest because a session
    stops being a burst request once it has seen the burst item."""
    bursts = tuple((item, 24.0 * day + 10, 2.0, 0.5) for day, item in enumerate((7, 23, 38, 52)))
    events = tiny_events(n_sessions=3000, bursts=bursts, seed=1)
    write_run(tmp_path / "root", events)
    start = AS_OF + timedelta(hours=10)
    result = simulate(
        events,
        tmp_path / "root",
        strategies=("online-ranker@0s", "online-ranker@1h", "online-ranker-no-streaming"),
        start=start,
        end=start + timedelta(hours=2),
        k=8,
        n_candidates=30,
        train_window=timedelta(days=3),
        max_train_requests=1500,
    )
    fresh = result.summary_for("online-ranker@0s")
    stale = result.summary_for("online-ranker@1h")
    blind = result.summary_for("online-ranker-no-streaming")
    assert fresh["requests"] > 200
    assert fresh["hr"] > stale["hr"] + 0.01
    assert fresh["hr"] >= blind["hr"]
    weights = result.info["rankers"]["online-ranker@0s"]["weights"]
    assert weights["log_views_5m"] > 0.2  # the fresh model learned to trust the 5-minute count


def test_cli_shards_concatenate(invoke, cli_shop, tmp_path):
    events, root, out = cli_shop
    strategies = ("--strategies", "popular,batch,session-itemknn")
    assert invoke(*_args(events, root, *strategies, "--out", out, "-q")).exit_code == 0
    parts = []
    for i in (1, 2):
        part = tmp_path / f"part{i}.parquet"
        result = invoke(*_args(events, root, *strategies, "--shard", f"{i}/2", "--out", part))
        assert result.exit_code == ExitCode.OK, result.stderr
        assert f"shard {i}/2" in result.stdout
        parts.append(pl.read_parquet(part))
    joined = pl.concat(parts).sort("request_id", maintain_order=True).drop("latency_us")
    assert joined.equals(pl.read_parquet(out).drop("latency_us"))


def test_cli_warns_when_the_window_starts_before_the_as_of(invoke, cli_shop):
    events, root, _ = cli_shop
    result = invoke(
        *_args(events, root, "--strategies", "popular", "--from", "2024-03-03T12:00:00Z", "-q")
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "rtml: warning: the replay starts before the artifacts' as-of" in result.stderr


def test_cli_unwritable_results_is_cant_create(invoke, cli_shop, tmp_path):
    events, root, _ = cli_shop
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    result = invoke(*_args(events, root, "--strategies", "popular", "--out", blocker / "r.parquet"))
    assert result.exit_code == ExitCode.CANT_CREATE
    assert result.stderr.strip().splitlines()[-1].startswith("rtml: error: cannot create")


def test_string_item_ids_in_the_log_match_integer_artifact_ids(shop, full):
    base, events = shop
    as_text = events.with_columns(pl.col("item_id").cast(pl.String))
    again = simulate(as_text, base / "root", strategies=ALL, **FAST)
    assert again.frame.drop("latency_us", "next_item_id").equals(
        full.frame.drop("latency_us", "next_item_id")
    )
    assert again.info["unknown_items"] == 0
