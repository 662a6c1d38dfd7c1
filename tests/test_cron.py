"""The example cron wrappers (examples/cron/): a lock, one log line per run, an output that
exists only when the run succeeded, and rtml's exit code passed through (issue #13 item 7)."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtml_cli.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
CRON = REPO / "examples" / "cron"
SHOP = REPO / "sample_data" / "shop"
EVENTS = SHOP / "events.parquet"
RTML = Path(sys.executable).parent / "rtml"


def _wrapper(name: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CRON / f"rtml-{name}.sh"), *args],
        env={**os.environ, "RTML": str(RTML), "EVENTS": str(EVENTS), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def _runs(log_dir: Path, name: str) -> list[str]:
    return (log_dir / f"{name}.runs.log").read_text().splitlines()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small precompute root, made by the precompute wrapper itself."""
    root = tmp_path_factory.mktemp("cron") / "root"
    done = _wrapper(
        "precompute",
        {"ROOT": str(root)},
        "--as-of",
        "2024-03-22T16:00:00Z",
        "--dim",
        "8",
        "--trees",
        "5",
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
    (line,) = _runs(root / "logs", "precompute")
    assert " precompute exit=0 " in line
    out = Path(line.split(" out=")[1].split(" log=")[0])
    assert json.loads(out.read_text())["kind"] == "precompute"
    return root


def test_simulate_wrapper_keeps_one_document_per_run(artifacts, tmp_path):
    env = {"ARTIFACTS": str(artifacts), "OUT_DIR": str(tmp_path / "sim")}
    args = ("--end", "2024-03-22T20:00:00Z", "--strategies", "popular,session-embedding")
    done = _wrapper("simulate", env, *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    (line,) = _runs(tmp_path / "sim" / "logs", "simulate")
    assert " simulate exit=0 " in line
    docs = list((tmp_path / "sim").glob("simulate-*.json"))
    assert len(docs) == 1 and json.loads(docs[0].read_text())["kind"] == "simulate"
    assert len(list((tmp_path / "sim").glob("results-*.parquet"))) == 1


def test_retrain_wrapper(tmp_path):
    env = {"OUT_DIR": str(tmp_path / "re")}
    args = ("--start", "2024-03-22", "--end", "2024-03-23", "--schedules", "stateful:1d,never")
    done = _wrapper("retrain", env, *args, "--sample", "2")
    assert done.returncode == 0 and done.stderr == "", done.stderr
    (doc,) = (tmp_path / "re").glob("retrain-*.json")
    assert json.loads(doc.read_text())["kind"] == "retrain"
    assert " retrain exit=0 " in _runs(tmp_path / "re" / "logs", "retrain")[0]


def test_drift_wrapper_passes_10_through_and_runs_the_hook(tmp_path):
    marker = tmp_path / "hook-ran"
    env = {"OUT_DIR": str(tmp_path / "dr"), "ON_DRIFT": f"touch '{marker}'"}
    done = _wrapper("drift", env, "--end", "2024-03-25")
    assert done.returncode == ExitCode.DRIFT and done.stderr == "", done.stderr
    assert marker.exists()
    (doc,) = (tmp_path / "dr").glob("drift-*.json")
    assert json.loads(doc.read_text())["drift"] is True
    lines = _runs(tmp_path / "dr" / "logs", "drift")
    assert " drift exit=10 " in lines[0] and "ON_DRIFT exit=0" in lines[1]


def test_a_held_lock_skips_the_run_with_75(tmp_path):
    logs = tmp_path / "dr" / "logs"
    logs.mkdir(parents=True)
    with (logs / "drift.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = _wrapper("drift", {"OUT_DIR": str(tmp_path / "dr")}, "--end", "2024-03-25")
    assert done.returncode == ExitCode.TEMP_FAIL
    assert "another run holds" in done.stderr and len(done.stderr.splitlines()) == 1
    assert "exit=75 skipped" in _runs(logs, "drift")[0]
    assert not list((tmp_path / "dr").glob("drift-*.json"))


def test_a_failed_run_leaves_no_document(tmp_path):
    env = {"OUT_DIR": str(tmp_path / "re"), "EVENTS": str(tmp_path / "missing.parquet")}
    done = _wrapper("retrain", env)
    assert done.returncode == ExitCode.NO_INPUT
    assert done.stderr.startswith("rtml retrain failed with exit 66; see ")
    assert sorted(p.name for p in (tmp_path / "re").iterdir()) == ["logs"]
    (line,) = _runs(tmp_path / "re" / "logs", "retrain")
    assert " retrain exit=66 " in line and " out=- " in line
    (log,) = (tmp_path / "re" / "logs").glob("retrain-*.log")
    assert "rtml: error:" in log.read_text()
