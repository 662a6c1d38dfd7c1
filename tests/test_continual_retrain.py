"""`rtml retrain`: the report and verdict, the popularity signal on the sample world, bad input,
and (slow) an end-to-end run with the real precompute and replay on the sample world."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import polars as pl
import pytest

from rtml_cli.continual.engine import simulate_schedules
from rtml_cli.continual.report import ratio_text, summarize
from rtml_cli.continual.retrain import PopularitySignal, default_window, shift_time_of
from rtml_cli.continual.schedules import parse_schedules
from rtml_cli.errors import ExitCode

try:  # tests/ is a package in some checkouts, a plain directory on sys.path in others
    from tests.test_continual_schedules import (
        DAY,
        END,
        SHIFT,
        START,
        FakeEvaluator,
        FakeTrainer,
        _fake_drift,
        _world,
    )
except ImportError:
    from test_continual_schedules import (
        DAY,
        END,
        SHIFT,
        START,
        FakeEvaluator,
        FakeTrainer,
        _fake_drift,
        _world,
    )

SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"
EVENTS = SHOP / "events.parquet"


# --- report and verdict ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def summary():
    ts, items = _world()
    sim = simulate_schedules(
        parse_schedules("stateless:1d:3d,stateful:1d,triggered:psi,never", step=DAY),
        trainer=FakeTrainer(ts, items),
        evaluator=FakeEvaluator(ts, items),
        start=START,
        end=END,
        step=DAY,
        drift=_fake_drift(ts, items),
    )
    return summarize(sim, k=5, shift_time=SHIFT)


def test_summary_accuracy_and_costs(summary) -> None:
    rows = {r["schedule"]: r for r in summary["schedules"]}
    assert summary["baseline"] == "stateless:1d:3d"  # the only stateless schedule
    never = rows["never"]
    assert never["hr_before_shift"] > 0.4 and never["hr_after_shift"] == 0.0
    assert never["updates"] == 0 and never["train_seconds"] == 0
    for spec in ("stateless:1d:3d", "stateful:1d", "triggered:psi"):
        assert rows[spec]["hr_last_step"] > 0.4, spec
        assert rows[spec]["hr"] > never["hr"], spec
    assert rows["stateless:1d:3d"]["rows_ratio_vs_baseline"] == 1.0
    assert rows["stateful:1d"]["rows_ratio_vs_baseline"] < 0.5
    assert len(summary["steps"]) == 4 * 11
    assert {u["mode"] for u in summary["updates"]} == {"initial", "full", "warm"}


def test_summary_detector_timing(summary) -> None:
    trig = next(r for r in summary["schedules"] if r["schedule"] == "triggered:psi")
    assert trig["checks"] == 10
    assert trig["false_alarms"] == 0
    assert trig["detected_in_time"] is True
    assert 0 < trig["detection_delay_hours"] <= 48
    assert trig["first_fire_after_shift"] > SHIFT


def test_verdict_names_cost_and_decay(summary) -> None:
    verdict = summary["verdict"]
    assert "never updating lost 100% of HR@5 after the shift" in verdict
    assert "triggered:psi updated" in verdict and "0 false alarms" in verdict
    assert "of stateless:1d:3d's HR@5" in verdict


def test_ratio_text() -> None:
    assert ratio_text(1 / 12) == "1/12"
    assert ratio_text(1.0) == "the same"
    assert ratio_text(0.7) == "0.70x"
    assert ratio_text(2.5) == "2.50x"
    assert ratio_text(0.0) == "none"
    assert ratio_text(None) == "–"


def test_plot_and_outputs(summary, tmp_path) -> None:
    from rtml_cli.continual.outputs import write_retrain_outputs as write_outputs
    from rtml_cli.continual.report import plot

    plot(summary, tmp_path / "hr.png")
    assert (tmp_path / "hr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "out"
    write_outputs(summary, out)
    write_outputs(summary, out)  # replaced as a whole, atomically
    assert sorted(p.name for p in out.iterdir()) == [
        ".rtml-output.json",  # marks it as retrain's, so a rerun may replace it
        "checks.parquet",
        "steps.parquet",
        "summary.json",
        "updates.parquet",
    ]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["verdict"] == summary["verdict"]
    assert pl.read_parquet(out / "steps.parquet").height == len(summary["steps"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


# --- the input-distribution signal on the sample world ----------------------------------------


def test_popularity_signal_fires_at_the_shift_only() -> None:
    """Documented distance: ks fires at the first daily check after the shift (it sees the
    shift's first day) and on no earlier day of the sample world. Item-level PSI fires then
    too, but the world's trending bursts (1-3 h, ~3 a day) also move it: its false alarms are
    counted, not hidden (4 of the 13 days before the shift on the committed world)."""
    world = json.loads((SHOP / "world.json").read_text())
    shift = shift_time_of(world)
    views = pl.read_parquet(EVENTS).filter(pl.col("event") == "view").sort("ts")
    signal = PopularitySignal(views.select("ts", "item_id"))
    first = views["ts"][0].replace(hour=0, minute=0, second=0, microsecond=0)
    fired: dict[str, list] = {"psi": [], "ks": []}
    for detector, threshold in (("psi", 0.2), ("ks", 0.1)):
        day = first + 8 * DAY
        while day <= shift + DAY:
            reading = signal(
                detector, threshold, reference=(day - 8 * DAY, day - DAY), current=(day - DAY, day)
            )
            if reading.fired:
                fired[detector].append(day)
            day += DAY
    assert fired["ks"] == [shift + DAY]
    assert shift + DAY in fired["psi"]
    false_alarms = [t for t in fired["psi"] if t <= shift]
    assert len(false_alarms) <= 6  # of 13 days; measured 4


def test_default_window() -> None:
    first = datetime(2024, 3, 4, 0, 2, tzinfo=timezone.utc)
    last = datetime(2024, 3, 31, 23, 59, tzinfo=timezone.utc)
    start, end = default_window(first, last, DAY, None, None)
    assert start == datetime(2024, 3, 11, tzinfo=timezone.utc)
    assert end == datetime(2024, 3, 31, tzinfo=timezone.utc)
    start, end = default_window(first, last, timedelta(hours=6), None, None)
    assert (end - start) % timedelta(hours=6) == timedelta(0)


# --- bad input (fails before any training) ----------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--schedules", "stateless:1d,hourly"], ExitCode.USAGE, "unknown schedule 'hourly'"),
        (["--schedules", "stateful:1d,stateful:24h"], ExitCode.USAGE, "listed twice"),
        (["--drift", "kl"], ExitCode.USAGE, "--drift 'kl' is not a detector"),
        (["--threshold", "0"], ExitCode.USAGE, "out of range for ks"),
        (["--drift", "performance", "--threshold", "2"], ExitCode.USAGE, "out of range"),
        (["--step", "0s"], ExitCode.USAGE, "--step must be a positive duration"),
        (["--full-every", "-2"], ExitCode.USAGE, "--full-every must be >= 0"),
        (["--k", "0"], ExitCode.USAGE, "--k must be at least 1"),
        (["--sample", "0"], ExitCode.USAGE, "--sample must be at least 1"),
        (["--start", "2023-01-01"], ExitCode.USAGE, "no history"),
        (["--start", "2024-05-01", "--end", "2024-05-03"], ExitCode.USAGE, "outside the data"),
        (["--start", "2024-03-20", "--end", "2024-03-19"], ExitCode.USAGE, "must be after"),
        (["--start", "2024-03-20", "--end", "2024-03-21T12:00"], ExitCode.USAGE, "whole number"),
        (["--start", "yesterday"], ExitCode.USAGE, "invalid timestamp"),
        (["--reference", "1h"], ExitCode.USAGE, "must be at least one --step"),
    ],
)
def test_cli_rejects(invoke, args, code, message) -> None:
    result = invoke("retrain", EVENTS, *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith("rtml: error:")


def test_cli_bad_inputs(invoke, tmp_path) -> None:
    missing = invoke("retrain", tmp_path / "nope.parquet")
    assert missing.exit_code == ExitCode.NO_INPUT
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert invoke("retrain", tmp_path / "bad.parquet").exit_code == ExitCode.DATA_ERR
    # A gap: two days without events inside the window.
    frame = pl.read_parquet(EVENTS)
    gap = frame.filter(
        (pl.col("ts") < datetime(2024, 3, 20, tzinfo=timezone.utc))
        | (pl.col("ts") >= datetime(2024, 3, 22, tzinfo=timezone.utc))
    )
    gap.write_parquet(tmp_path / "gap.parquet")
    result = invoke(
        "retrain", tmp_path / "gap.parquet", "--start", "2024-03-18", "--end", "2024-03-24"
    )
    assert result.exit_code == ExitCode.DATA_ERR
    assert "2 of 6 steps hold no events (first: 2024-03-20" in result.stderr
    bad_world = tmp_path / "world.json"
    bad_world.write_text("{not json")
    result = invoke("retrain", EVENTS, "--world", bad_world)
    assert result.exit_code == ExitCode.DATA_ERR and "not readable JSON" in result.stderr


# --- end to end on the sample world (real precompute + replay) --------------------------------


@pytest.fixture(scope="module")
def shop_run(tmp_path_factory):
    from rtml_cli.continual.retrain import run_retrain

    schedules = parse_schedules(
        "stateless:2d,stateful:2d,triggered:ks,triggered:performance,never",
        step=2 * DAY,
    )
    _, result = run_retrain(
        EVENTS,
        schedules,
        step=2 * DAY,
        start=datetime(2024, 3, 18, tzinfo=timezone.utc),
        end=datetime(2024, 3, 30, tzinfo=timezone.utc),
        k=20,
        sample=3,
        precompute_params={"n_trees": 10, "dim": 64},
        work_dir=tmp_path_factory.mktemp("retrain-work"),
    )
    return result


@pytest.mark.slow
def test_sample_world_never_decays_stateless_recovers(shop_run) -> None:
    rows = {r["schedule"]: r for r in shop_run["schedules"]}
    assert shop_run["shift_time"] == datetime(2024, 3, 24, tzinfo=timezone.utc)
    never = rows["never"]
    # never: at least 15% relative HR lost after the shift (measured 29%).
    assert never["hr_after_shift"] < 0.85 * never["hr_before_shift"]
    stateless = rows["stateless:2d"]
    # recovers: beats never after the shift (measured +10%, last step +15%).
    assert stateless["hr_after_shift"] > 1.05 * never["hr_after_shift"]
    assert stateless["hr_last_step"] > 1.08 * never["hr_last_step"]
    for spec in ("stateful:2d", "triggered:ks", "triggered:performance"):
        assert rows[spec]["updates"] >= 1, spec


@pytest.mark.slow
def test_sample_world_warm_started_schedules_recover(shop_run) -> None:
    rows = {r["schedule"]: r for r in shop_run["schedules"]}
    never = rows["never"]
    for spec in ("stateful:2d", "triggered:ks", "triggered:performance"):
        assert rows[spec]["hr_after_shift"] > 1.08 * never["hr_after_shift"], spec


@pytest.mark.slow
def test_sample_world_detectors_and_costs(shop_run) -> None:
    rows = {r["schedule"]: r for r in shop_run["schedules"]}
    for spec in ("triggered:ks", "triggered:performance"):
        row = rows[spec]
        assert row["false_alarms"] == 0, spec
        assert row["detected_in_time"], spec  # within 2 steps (4 days) of the shift
    # Stateful updates read far fewer rows than stateless ones. Their training seconds are
    # wall-clock figures and are compared in bench/bench_retrain.py, not here: on a loaded
    # machine the order of two short timings is not a property of the code.
    stateful, stateless = rows["stateful:2d"], rows["stateless:2d"]
    assert stateful["updates"] == stateless["updates"]
    assert stateful["rows"] < 0.25 * stateless["rows"]
    assert stateful["train_seconds"] > 0 and stateless["train_seconds"] > 0


@pytest.mark.parametrize("command", [["drift"], ["drift", "popularity"], ["retrain"]])
def test_help_and_readme(invoke, command) -> None:
    result = invoke(*command, "--help")
    assert result.exit_code == ExitCode.OK and "Usage" in result.stdout
    readme = (SHOP.parent.parent / "README.md").read_text()
    assert f"`rtml {' '.join(command)}" in readme
