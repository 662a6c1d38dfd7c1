"""Issue #13 item 1: the host's time zone never changes a result.

DuckDB casts a zoned timestamp to TIMESTAMP in its session zone; a connection that forgot
``SET TimeZone = 'UTC'`` moved precompute's as-of (and run id, and 1d/7d/30d windows) by the
host's UTC offset. Every command now opens DuckDB through ``rtml_cli.duck.connect``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_batch_precompute import make_events

ZONES = ("UTC", "America/New_York", "Asia/Kolkata")


def _rtml(tz: str, *args) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "rtml_cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TZ": tz, "NO_COLOR": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _without_timings(value):
    if isinstance(value, dict):
        return {
            k: _without_timings(v)
            for k, v in value.items()
            if not any(
                t in k
                for t in (
                    "latency",
                    "seconds",
                    "per_second",
                    "elapsed",
                    "_ms",
                    "results",
                    "command",
                )
            )
        }
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


@pytest.mark.slow
def test_precompute_and_simulate_give_the_same_answer_in_every_time_zone(tmp_path: Path):
    events = tmp_path / "events.parquet"
    make_events(n_sessions=600, days=10).write_parquet(events)
    runs, replays = {}, {}
    for tz in ZONES:
        root = tmp_path / tz.replace("/", "_")
        args = ("--dim", "8", "--trees", "5", "--as-of", "2024-03-08T00:00:00Z")
        summary = json.loads(_rtml(tz, "precompute", events, "--out", root, *args, "-f", "json"))
        manifest = json.loads((root / "latest" / "manifest.json").read_text())
        runs[tz] = (summary["run_id"], manifest["as_of"], manifest["outputs"])
        doc = json.loads(_rtml(tz, "simulate", events, "--artifacts", root, "-f", "json"))
        replays[tz] = _without_timings(doc)
    assert runs["UTC"][0] == "20240308T000000.000000Z"
    for tz in ZONES[1:]:
        assert runs[tz] == runs["UTC"], tz  # same run id, as-of and every output's sha256
        assert replays[tz] == replays["UTC"], tz
