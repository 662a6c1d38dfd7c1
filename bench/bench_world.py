"""Benchmark: generate the `large` sample world; record wall time and peak RSS.

Runs ``rtml data sample --size large`` in a child process (so the peak RSS is the
generator's alone) into a temporary directory, then writes the figures under the
"World generation" heading of bench/RESULTS.md (replacing an older entry).

    .venv/bin/python bench/bench_world.py [--size large] [--seed 0] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## World generation (`rtml data sample`)"
TARGET_S = 300.0  # "generates in minutes on 2 cores"


def run(size: str, seed: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="rtml-bench-world-") as tmp:
        out = Path(tmp) / "world"
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "rtml_cli", "data", "sample", "--out", str(out),
             "--size", size, "--seed", str(seed), "--format", "json"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"generation failed ({proc.returncode}): {proc.stderr.strip()}")
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(proc.stdout)
        disk = sum(p.stat().st_size for p in out.iterdir())
    return {
        "size": size,
        "seed": seed,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak_kib / 1024),
        "events": summary["n_events"],
        "sessions": summary["n_sessions"],
        "items": summary["n_items"],
        "users": summary["n_users"],
        "bandit_rows": summary["click_model"]["bandit_rows"],
        "disk_mib": round(disk / 2**20, 1),
        "events_per_s": round(summary["n_events"] / wall),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }


def render(r: dict) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    verdict = "met" if r["wall_s"] <= TARGET_S else f"MISSED (target {TARGET_S:.0f} s)"
    return f"""{HEADING}

`bench/bench_world.py` — `rtml data sample --size {r["size"]} --seed {r["seed"]}` in a child
process, into a temporary directory. Measured {now} on {platform.machine()}, {os.cpu_count()} cores,
Python {platform.python_version()}; shared machine, load average {r["load_before"][0]} before and
{r["load_after"][0]} after the run (other engineers' jobs were running).

| figure | value |
|---|---|
| events | {r["events"]:,} |
| sessions | {r["sessions"]:,} |
| items | {r["items"]:,} |
| users | {r["users"]:,} |
| bandit rows (each of 2 logs) | {r["bandit_rows"]:,} |
| wall time | {r["wall_s"]} s |
| throughput | {r["events_per_s"]:,} events/s |
| peak RSS | {r["peak_rss_mib"]:,} MiB |
| files on disk | {r["disk_mib"]} MiB |

Target "large (>= 10M events, >= 100k items) generates in minutes on 2 cores with bounded
memory": {verdict}. Memory is bounded by one day of sessions at a time (the event log is
written a day per Parquet row group), plus per-session ground truth (one row per session) kept for
`sessions.parquet`.
"""


def write(section: str) -> None:
    replace_section(HEADING, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="large")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    args = parser.parse_args()
    result = run(args.size, args.seed)
    section = render(result)
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
