"""`--baseline-recs`: the team's own lists as the `baseline` strategy, point in time (#17)."""

from __future__ import annotations

import json
from datetime import timedelta

import polars as pl
import pytest

from rtml_cli.errors import DataError, ExitCode, InputMissing, UsageError
from rtml_cli.online import simulate
from tests.online_fixtures import AS_OF, tiny_events, write_run

FAST = dict(k=8, n_candidates=30, max_train_requests=300, train_window=timedelta(days=1))


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    base = tmp_path_factory.mktemp("baseline")
    events = tiny_events()
    events.write_parquet(base / "events.parquet")
    write_run(base / "root", events)
    run = base / "root" / "latest"
    recs = pl.read_parquet(run / "batch_recs.parquet").select("user_id", "rank", "item_id")
    popular = pl.read_parquet(run / "popular.parquet").select(
        pl.lit(None, dtype=pl.String).alias("user_id"), pl.col("rank"), pl.col("item_id")
    )
    pl.concat([recs, popular.cast(recs.schema)]).write_parquet(base / "team.parquet")
    return base, events


def test_rtml_batch_lists_as_the_team_lists_score_exactly_like_batch(shop):
    """Fed rtml's own batch lists (and its popularity list as the fallback), the baseline
    serves exactly what `batch` serves."""
    base, events = shop
    result = simulate(
        events, base / "root", strategies=["batch"], baseline_recs=base / "team.parquet", **FAST
    )
    assert result.strategies == ["baseline", "batch"]
    frame = result.frame.sort(["request_id", "strategy"])
    ours = frame.filter(pl.col("strategy") == "baseline")["rank"].to_list()
    theirs = frame.filter(pl.col("strategy") == "batch")["rank"].to_list()
    assert ours == theirs
    served = result.info["rankers"]["baseline"]["served_from"]
    assert sum(served.values()) == result.info["requests"]
    assert served["own"] > 0 and served["fallback"] > 0 and served["popular"] == 0


def test_lists_are_served_point_in_time(shop, tmp_path):
    """A list computed after a request never serves it: the visitor gets the fallback."""
    base, events = shop
    later = pl.read_parquet(base / "team.parquet").with_columns(
        pl.when(pl.col("user_id").is_null())
        .then(pl.lit(AS_OF - timedelta(days=1)))
        .otherwise(pl.lit(AS_OF + timedelta(days=90)))
        .alias("as_of")
    )
    later.write_parquet(tmp_path / "later.parquet")
    result = simulate(
        events, base / "root", strategies=["popular"], baseline_recs=tmp_path / "later.parquet",
        **FAST,
    )  # fmt: skip
    served = result.info["rankers"]["baseline"]["served_from"]
    assert served["own"] == 0 and served["fallback"] == result.info["requests"]


def test_unknown_items_are_counted_and_none_known_is_an_error(shop, tmp_path):
    base, events = shop
    team = pl.read_parquet(base / "team.parquet")
    bad = team.head(5).with_columns(
        pl.lit(999_999_999, dtype=team.schema["item_id"]).alias("item_id")
    )
    mixed = pl.concat([team, bad])
    mixed.write_parquet(tmp_path / "mixed.parquet")
    result = simulate(
        events, base / "root", strategies=["popular"], baseline_recs=tmp_path / "mixed.parquet",
        **FAST,
    )  # fmt: skip
    assert result.info["rankers"]["baseline"]["unknown_item_rows"] == 5
    team.with_columns(pl.lit(999_999_999).alias("item_id")).write_parquet(tmp_path / "x.parquet")
    with pytest.raises(DataError, match="none of the 1 items"):
        simulate(events, base / "root", strategies=["popular"], baseline_recs=tmp_path / "x.parquet", **FAST)  # fmt: skip


def test_bad_baseline_inputs(shop, tmp_path):
    base, events = shop
    run = dict(strategies=["popular"], **FAST)
    with pytest.raises(InputMissing):
        simulate(events, base / "root", baseline_recs=tmp_path / "nope.parquet", **run)
    pl.DataFrame({"user": ["u1"], "item_id": [1]}).write_parquet(tmp_path / "cols.parquet")
    with pytest.raises(DataError, match="lacks column"):
        simulate(events, base / "root", baseline_recs=tmp_path / "cols.parquet", **run)
    with pytest.raises(UsageError, match="--baseline-recs FILE"):
        simulate(events, base / "root", strategies=["baseline"], **FAST)


def test_cli_caption_and_json(invoke, shop):
    base, _ = shop
    args = ["simulate", base / "events.parquet", "--artifacts", base / "root", "--k", "8"]
    args += ["--strategies", "batch", "--baseline-recs", base / "team.parquet"]
    text = " ".join(invoke(*args).stdout.split())
    assert "baseline (your lists):" in text and "got the visitor's own list" in text
    doc = json.loads(invoke(*args, "--format", "json", "--quiet").stdout)
    assert [r["strategy"] for r in doc["summary"] if r["segment"] == "all"] == ["baseline", "batch"]
    missing = invoke(*args[:-2], "--baseline-recs", base / "nope.csv")
    assert missing.exit_code == ExitCode.NO_INPUT


def test_from_picks_the_newest_run_at_or_before_it(invoke, tmp_path):
    """With two runs in ROOT, --from picks the run whose as-of is the newest at or before it
    (latest already knows the window) and says which; with none, latest and a warning."""
    from rtml_cli.errors import ExitCode

    events = tiny_events()
    path = tmp_path / "events.parquet"
    events.write_parquet(path)
    root = tmp_path / "root"
    for as_of in (AS_OF, AS_OF + timedelta(days=1)):
        args = ("precompute", path, "--out", root, "--as-of", as_of.isoformat())
        done = invoke(*args, "--dim", "4", "--trees", "2", "--quiet")
        assert done.exit_code == ExitCode.OK, done.stderr
    args = ["simulate", path, "--artifacts", root, "--strategies", "popular", "--k", "8"]
    result = invoke(*args, "--from", AS_OF.isoformat(), "--format", "json", "--quiet")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    from rtml_cli.batch.artifacts import run_id_for

    assert doc["info"]["run"] == run_id_for(AS_OF)
    assert doc["info"]["as_of"].startswith(AS_OF.isoformat()[:19])
    assert "using run" in result.stderr and "newest in" in result.stderr
    early = invoke(*args, "--from", (AS_OF - timedelta(days=2)).isoformat(), "--quiet")
    assert early.exit_code == ExitCode.OK
    assert "starts before the artifacts' as-of" in early.stderr
