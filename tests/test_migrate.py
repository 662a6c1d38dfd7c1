"""`rtml migrate` (issue #17): a team's own clickstream export to the report in one command."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import ExitCode, UsageError
from rtml_cli.migrate import plan_split

SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"
PERSONA_MAP = "ts=event_time,user_id=visitor_id,item_id=sku,event=action,session_id=page_session"
OFFSET = timezone(timedelta(hours=1))


def _persona_csv(path: Path) -> Path:
    """The issue's persona, made from the sample world: renamed columns, +01:00 offsets,
    empty visitor ids when logged out, text skus, add_to_cart instead of cart. Four days,
    every other session (a few seconds of replay)."""
    log = (
        pl.read_parquet(SHOP / "events.parquet")
        .filter(pl.col("ts") >= datetime(2024, 3, 23, tzinfo=timezone.utc))
        .filter(pl.col("ts") < datetime(2024, 3, 27, tzinfo=timezone.utc))
        .filter(pl.col("session_id").cast(pl.String).str.slice(-1).is_in(list("02468")))
    )
    frame = log.select(
        event_time=pl.col("ts")
        .dt.convert_time_zone("Etc/GMT-1")
        .dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+01:00"),
        visitor_id=pl.col("user_id").cast(pl.String).fill_null(""),
        sku="SKU-" + pl.col("item_id").cast(pl.String),
        action=pl.col("event").replace({"cart": "add_to_cart"}),
        page_session="s" + pl.col("session_id").cast(pl.String),
    )
    frame.write_csv(path)
    return path


def _baseline_csv(path: Path, events_csv: Path, as_of: datetime) -> Path:
    """The team's nightly lists: each known visitor's most viewed skus before ``as_of``, a
    fallback list (empty user_id), a visitor rtml never sees and a sku it does not know."""
    log = pl.read_csv(events_csv, infer_schema_length=0).with_columns(
        pl.col("event_time").str.to_datetime(time_zone="UTC")
    )
    history = log.filter(pl.col("event_time") < as_of)
    per_user = (
        history.filter(pl.col("visitor_id").is_not_null())
        .group_by("visitor_id", "sku")
        .len()
        .sort(["visitor_id", "len", "sku"], descending=[False, True, False])
        .group_by("visitor_id", maintain_order=True)
        .head(20)
        .with_columns(rank=pl.int_range(1, pl.len() + 1).over("visitor_id"))
        .select(user_id="visitor_id", rank="rank", item_id="sku")
    )
    popular = history.group_by("sku").len().sort(["len", "sku"], descending=[True, False]).head(20)
    fallback = popular.select(
        user_id=pl.lit(None, pl.String), rank=pl.int_range(1, pl.len() + 1), item_id="sku"
    )
    known_sku = popular["sku"][0]
    strangers = pl.DataFrame(
        {"user_id": ["nobody-we-know"] * 2, "rank": [1, 2], "item_id": [known_sku, "NOT-A-SKU"]}
    )
    pl.concat(
        [per_user.cast({"rank": pl.Int64}), fallback.cast({"rank": pl.Int64}), strangers]
    ).write_csv(path)
    return path


@pytest.fixture(scope="module")
def persona(tmp_path_factory):
    """The persona's CSV and the team's lists, and one full migrate run on them."""
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    root = tmp_path_factory.mktemp("persona")
    events = _persona_csv(root / "clicks.csv")
    # the holdout is the last day: the lists are the team's as of its start
    last = pl.read_csv(events, infer_schema_length=0)["event_time"].max()
    as_of = (datetime.fromisoformat(last) - timedelta(days=1)).astimezone(timezone.utc)
    baseline = _baseline_csv(root / "team_lists.csv", events, as_of)
    out = root / "migration"
    args = [
        "migrate", str(events), "--out", str(out), "--map", PERSONA_MAP,
        "--map-event", "add_to_cart=cart", "--holdout", "1d", "--baseline-recs", str(baseline),
        "--seeds", "5", "--bootstrap", "100", "--format", "json",
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    return {"root": root, "events": events, "baseline": baseline, "out": out, "args": args,
            "result": result}  # fmt: skip


def test_the_persona_csv_goes_to_a_report_with_one_mapping_option(persona):
    result = persona["result"]
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert (doc["kind"], doc["schema"]) == ("migrate", 1)
    steps = {s["step"]: s for s in doc["steps"]}
    assert [s["step"] for s in doc["steps"]] == [
        "import", "validate", "precompute", "simulate", "drift", "evaluate", "report",
    ]  # fmt: skip
    assert all(s["status"] == "ran" for s in doc["steps"]), doc["steps"]
    out = persona["out"]
    # carts are kept, not silently lost
    imported = json.loads((out / "json" / "import.json").read_text())
    assert imported["events_mapped"]["add_to_cart"]["to"] == "cart"
    assert imported["events_mapped"]["add_to_cart"]["rows"] > 0
    counts = pl.read_parquet(out / "events.parquet")["event"].value_counts()
    assert set(counts["event"]) == {"view", "cart", "purchase"}
    # the split: history before the last day, replayed with every stage and the team's lists
    split = doc["split"]
    assert split["holdout"] == "1d" and split["history_events"] > split["holdout_events"] > 0
    assert doc["control"] == "baseline" and doc["strategies"][0] == "baseline"
    assert {"batch", "session-embedding", "online-ranker"} <= set(doc["strategies"])
    for step in steps.values():  # outputs are relative to DIR (DIR can move)
        for path in step["outputs"].values():
            assert not Path(path).is_absolute() and (out / path).exists(), path
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert (out / "report.md").read_text().startswith("<!-- rtml report -->")
    assert doc["report"] == {"html": str(out / "report.html"), "markdown": str(out / "report.md")}


def test_the_verdict_carries_intervals_and_the_teams_baseline(persona):
    doc = json.loads(persona["result"].stdout)
    verdict = doc["verdict"]
    stage2 = next(c for c in verdict if c["topic"] == "Stage 1 → 2")
    assert "(baseline)" in stage2["text"] and "95% CI" in stage2["text"]
    assert "over " in stage2["text"] and "requests with a truth" in stage2["text"]
    assert any("95% CI" in c["text"] for c in verdict if c["topic"] == "Stage 2 → 3")
    # no click figure without --hit-to-click: replay rewards are hits, not clicks
    assert not any("click" in c["text"].lower() for c in verdict)
    markdown = (persona["out"] / "report.md").read_text()
    sim = json.loads((persona["out"] / "json" / "simulate.json").read_text())
    own = sim["info"]["rankers"]["baseline"]["served_from"]["own"]
    assert f"{own:,} requests got the visitor's own list" in markdown
    assert "1 of the" in markdown and "list rows name items the log does not know" in markdown


def test_unknown_baseline_users_and_items_are_counted_not_errors(persona):
    sim = json.loads((persona["out"] / "json" / "simulate.json").read_text())
    baseline = sim["info"]["rankers"]["baseline"]
    assert baseline["unknown_item_rows"] == 1  # NOT-A-SKU
    served = baseline["served_from"]
    assert served["own"] > 0 and served["fallback"] > 0 and served["popular"] == 0
    assert sum(served.values()) == sim["info"]["requests"]


def test_a_rerun_reuses_every_step_and_a_new_option_reruns_only_what_depends_on_it(
    persona, tmp_path
):
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    args = persona["args"]
    again = CliRunner().invoke(app, args)
    assert again.exit_code == ExitCode.OK, again.stderr
    assert {s["status"] for s in json.loads(again.stdout)["steps"]} == {"reused"}
    # the business translation is a report option: only the report reruns
    clicks = CliRunner().invoke(app, [*args, "--hit-to-click", "0.1"])
    assert clicks.exit_code == ExitCode.OK, clicks.stderr
    doc = json.loads(clicks.stdout)
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert status.pop("report") == "ran" and set(status.values()) == {"reused"}
    claim = next(c["text"] for c in doc["verdict"] if c["topic"] == "Business translation")
    assert claim.startswith("Assuming 10% of hits@20 become clicks (your --hit-to-click")
    assert "more clicks per 1,000 requests with a truth than baseline (95% CI" in claim


def test_skipped_steps_use_earlier_outputs_or_say_what_is_missing(persona, tmp_path, invoke):
    fresh = tmp_path / "fresh"
    missing = invoke(
        "migrate", persona["events"], "--out", fresh, "--map", PERSONA_MAP,
        "--map-event", "add_to_cart=cart", "--holdout", "1d", "--skip", "precompute",
    )  # fmt: skip
    assert missing.exit_code == ExitCode.NO_INPUT
    assert "run once without --skip precompute" in missing.stderr
    assert sum(line.startswith("rtml: error") for line in missing.stderr.splitlines()) == 1
    bad = invoke("migrate", persona["events"], "--out", fresh, "--skip", "evaluation")
    assert bad.exit_code == ExitCode.USAGE and "no such step" in bad.stderr


@pytest.mark.parametrize(
    ("extra", "code", "words"),
    [
        (["--holdout", "30d"], ExitCode.USAGE, "is as long as the log or longer"),
        (["--as-of", "2020-01-01"], ExitCode.USAGE, "at or before the first event"),
        (["--as-of", "2030-01-01"], ExitCode.USAGE, "after the last event"),
        (["--holdout", "1d", "--as-of", "2024-03-25"], ExitCode.USAGE, "not both"),
    ],
)
def test_impossible_splits_are_one_line_errors(persona, tmp_path, invoke, extra, code, words):
    result = invoke(
        "migrate", persona["events"], "--out", tmp_path / "m", "--map", PERSONA_MAP,
        "--map-event", "add_to_cart=cart", *extra,
    )  # fmt: skip
    assert result.exit_code == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("rtml: error")]
    assert len(errors) == 1 and words in errors[0]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "m" / "report.html").exists()


def test_unmapped_cart_events_are_an_error_naming_the_option(persona, tmp_path, invoke):
    result = invoke("migrate", persona["events"], "--out", tmp_path / "m", "--map", PERSONA_MAP)
    assert result.exit_code == ExitCode.DATA_ERR
    assert "add_to_cart" in result.stderr and "--map-event add_to_cart=cart" in result.stderr
    assert not (tmp_path / "m" / "events.parquet").exists()


def test_a_baseline_whose_items_are_all_unknown_is_an_error(persona, tmp_path, invoke):
    alien = tmp_path / "alien.csv"
    alien.write_text("user_id,rank,item_id\nu1,1,X-1\nu1,2,X-2\n")
    result = invoke(
        "migrate", persona["events"], "--out", tmp_path / "m", "--map", PERSONA_MAP,
        "--map-event", "add_to_cart=cart", "--holdout", "1d", "--baseline-recs", alien,
        "--skip", "drift,evaluate,report",
    )  # fmt: skip
    assert result.exit_code == ExitCode.DATA_ERR
    assert "none of the 2 items in --baseline-recs" in result.stderr


def test_a_directory_rtml_did_not_write_is_refused(persona, tmp_path, invoke):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "todo.txt").write_text("keep me")
    result = invoke("migrate", persona["events"], "--out", mine, "--map", PERSONA_MAP)
    assert result.exit_code == ExitCode.CANT_CREATE
    assert sorted(p.name for p in mine.iterdir()) == ["todo.txt"]


# ------------------------------------------------------------------------------ the split
T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)


@settings(max_examples=200, deadline=None)
@given(
    span_h=st.integers(1, 24 * 60),
    holdout_h=st.integers(1, 24 * 90),
    as_of_h=st.one_of(st.none(), st.integers(-48, 24 * 90)),
)
def test_the_split_leaves_history_and_a_holdout_or_refuses(span_h, holdout_h, as_of_h):
    first, last = T0, T0 + timedelta(hours=span_h)

    def count_before(ts: datetime) -> int:  # one event per hour
        return max(0, min(span_h + 1, int((ts - first).total_seconds() // 3600) + 1))

    as_of = None if as_of_h is None else T0 + timedelta(hours=as_of_h, minutes=30)
    try:
        split = (
            plan_split(first, last, count_before, holdout=timedelta(hours=holdout_h), as_of=as_of)
            if as_of is None
            else plan_split(first, last, count_before, holdout=None, as_of=as_of)
        )
    except UsageError as exc:
        assert "the log spans" in str(exc)
        if as_of is None:
            assert holdout_h >= span_h
        else:
            assert as_of <= first or as_of > last
        return
    assert first < split.as_of <= last < split.end
    assert split.history_events > 0 and split.holdout_events > 0
    assert split.history_events + split.holdout_events == span_h + 1


def test_mapping_options_come_from_the_config_file(persona, tmp_path, invoke):
    config = tmp_path / "rtml.toml"
    config.write_text(f'[migrate]\nmap = ["{PERSONA_MAP}"]\nmap-event = ["add_to_cart=cart"]\n')
    out = tmp_path / "m"
    # the import runs from the file's options; the 30-day holdout then stops the run
    result = invoke(
        "--config", config, "migrate", persona["events"], "--out", out, "--holdout", "30d"
    )
    assert result.exit_code == ExitCode.USAGE, result.stderr
    imported = json.loads((out / "json" / "import.json").read_text())
    assert imported["events_mapped"]["add_to_cart"]["to"] == "cart"
    state = json.loads((out / "migrate.json").read_text())
    assert [(s["step"], s["status"]) for s in state["steps"]] == [
        ("import", "ran"),
        ("validate", "ran"),
    ]


# ------------------------------------------------------------- review: resume and refusals
def _copy_dir(persona, tmp_path) -> Path:
    """A copy of the persona's finished DIR (its recorded paths are relative to DIR)."""
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(persona["out"], copy, symlinks=True)
    return copy


def _args(persona, out, *extra):
    args = list(persona["args"])
    args[args.index("--out") + 1] = str(out)
    return [*args, *extra]


def test_a_copied_dir_resumes_from_its_own_files_in_another_working_directory(
    persona, tmp_path, monkeypatch
):
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    copy = _copy_dir(persona, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    result = CliRunner().invoke(app, _args(persona, Path("..") / "copy"))
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    # (the report may rerun: an earlier test asked for --hit-to-click in the same DIR)
    assert {s["status"] for s in doc["steps"] if s["step"] != "report"} == {"reused"}
    assert doc["report"]["html"] == str(copy.resolve() / "report.html")


def test_a_new_seed_at_the_same_split_rebuilds_precompute_and_skipping_the_report_prints_no_verdict(
    persona, tmp_path
):
    """The precompute run of the same as-of made with another seed is rebuilt, not refused
    (exit 73); with --skip report the earlier verdict is not shown as this run's."""
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    copy = _copy_dir(persona, tmp_path)
    args = _args(persona, copy, "--seed", "1", "--skip", "drift,evaluate,report")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    status = {s["step"]: s["status"] for s in doc["steps"]}
    assert status["precompute"] == "ran" and status["simulate"] == "ran"
    assert status["report"] == "skipped" and doc["verdict"] == []
    skipped = next(s for s in doc["steps"] if s["step"] == "evaluate")
    assert skipped["note"] == "earlier outputs used, made from other inputs than this run's"
    assert "--skip evaluate: its outputs" in result.stderr


def test_bad_strategies_and_baseline_files_are_refused_before_dir_exists(persona, tmp_path, invoke):
    out = tmp_path / "never"
    common = ["migrate", persona["events"], "--out", out, "--map", PERSONA_MAP]
    bogus = invoke(*common, "--map-event", "add_to_cart=cart", "--strategies", "bogus")
    assert bogus.exit_code == ExitCode.USAGE and "bogus" in bogus.stderr
    gone = invoke(*common, "--baseline-recs", tmp_path / "nope.csv")
    assert gone.exit_code == ExitCode.NO_INPUT
    ranks = tmp_path / "no_rank.csv"
    ranks.write_text("user_id,item_id\nu1,SKU-1\n")
    norank = invoke(*common, "--baseline-recs", ranks)
    assert norank.exit_code == ExitCode.DATA_ERR and "lacks column(s) rank" in norank.stderr
    missing = invoke("migrate", tmp_path / "no-such.csv", "--out", out)
    assert missing.exit_code == ExitCode.NO_INPUT
    assert not out.exists()


def test_a_dir_that_cannot_be_written_is_exit_73_not_an_internal_error(
    persona, tmp_path, invoke, monkeypatch
):
    import rtml_cli.fsutil as fsutil

    def denied(directory, command):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(fsutil, "write_output_marker", denied)
    result = invoke("migrate", persona["events"], "--out", tmp_path / "ro", "--map", PERSONA_MAP)
    assert result.exit_code == ExitCode.CANT_CREATE
    assert result.stderr.startswith("rtml: error: cannot write to --out")
    assert len(result.stderr.strip().splitlines()) == 1


def test_csv_lists_the_steps_and_the_verdict(persona):
    from typer.testing import CliRunner

    from rtml_cli.cli import app

    args = [a if a != "json" else "csv" for a in persona["args"]]
    result = CliRunner().invoke(app, [*args, "--quiet"])
    assert result.exit_code == ExitCode.OK, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    tables = [r["table"] for r in rows]
    assert tables.count("steps") == 7 and tables.count("verdict") >= 3
    assert any("(baseline)" in r["text"] for r in rows if r["table"] == "verdict")
