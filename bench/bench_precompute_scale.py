"""Benchmark `rtml precompute` from ~2M to ~100M events: wall time and peak RSS per size.

Each point is the whole command as a user runs it (`python -m rtml_cli precompute EVENTS
--items ITEMS --out DIR --format json`, default settings) in its own child process; peak
RSS is that child's own ``ru_maxrss`` (``os.wait4``), DuckDB included (it runs in-process).
Worlds are generated when missing: ``medium`` (~2M events), ``large`` (~10.5M) and
``large --scale 3`` / ``--scale 10`` (~31M / ~105M: the large world's users and sessions
copied under new ids, `rtml data sample --scale`).

    python bench/bench_precompute_scale.py [--points medium,large,large-x3,large-x10]
        [--data DIR] [--work DIR] [--json OUT] [--no-write]

Writes the section "`rtml precompute` at scale" of bench/RESULTS.md (unless --no-write),
with the machine, the date and the load average before and after each point.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import replace_section

HEADING = "## `rtml precompute` at scale (issue #10: memory bounded by items and users)"
RTML = [sys.executable, "-m", "rtml_cli"]
TARGET_S, TARGET_MB = 15 * 60, 6 * 1024  # 100M events


def world(data: Path, point: str) -> Path:
    """The world directory of a point (``SIZE`` or ``SIZE-xN``), generated when missing."""
    size, _, scale = point.partition("-x")
    out = data / point
    if not (out / "world.json").exists():
        subprocess.run(
            [*RTML, "data", "sample", "--size", size, "--scale", scale or "1", "--out", str(out),
             "-q", "--format", "json"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return out


def run_child(args: list[str]) -> tuple[int, float, float, float, str, str]:
    """(exit code, wall s, CPU s, peak RSS MB, stdout, stderr) of one child process."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        # wait4: this child's own rusage (RUSAGE_CHILDREN is the max over every child)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return (
            proc.returncode,
            wall,
            usage.ru_utime + usage.ru_stime,
            usage.ru_maxrss / 1024.0,
            out.read(),
            err.read(),
        )


def measure(point: str, data: Path, work: Path) -> dict:
    src = world(data, point)
    summary = json.loads((src / "world.json").read_text())
    out = work / point
    shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()
    code, wall, cpu, peak, stdout, stderr = run_child(
        [*RTML, "precompute", str(src / "events.parquet"), "--items", str(src / "items.parquet"),
         "--out", str(out), "--format", "json"]
    )  # fmt: skip
    if code != 0:
        raise SystemExit(f"precompute on {point} failed ({code}): {stderr[-2000:]}")
    result = json.loads(stdout)
    shutil.rmtree(out, ignore_errors=True)  # ~1 GB a run: keep the disk for the next point
    return {
        "point": point,
        "events": result["rows"]["events_before_as_of"],
        "users": result["rows"]["users"],
        "items": result["rows"]["items"],
        "world_users": summary["n_users"],
        "wall_s": round(wall, 1),
        "cpu_s": round(cpu, 1),
        "peak_rss_mb": round(peak),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "steps": result["steps"],
    }


def render(points: list[dict], memory_limit: str) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        HEADING,
        "",
        "`bench/bench_precompute_scale.py` — the whole `rtml precompute EVENTS --items ITEMS "
        "--out DIR --format json` (default settings: `--dim 64 --trees 50 --top-k 50 "
        f"--neighbors 50`, DuckDB memory limit {memory_limit}) in a child process per point; "
        "peak RSS is the child's own `ru_maxrss` (DuckDB runs in-process). Measured "
        f"{now} on {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}; shared machine (load averages below).",
        "",
        "| world | events | users | wall (s) | CPU (s) | peak RSS (MB) | load before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in points:
        lines.append(
            f"| {p['point']} | {p['events']:,} | {p['users']:,} | {p['wall_s']} | {p['cpu_s']} "
            f"| {p['peak_rss_mb']:,} | {p['load_before'][0]} / {p['load_after'][0]} |"
        )
    steps = [s["step"] for s in points[0]["steps"]] if points else []
    lines += ["", "Step wall times (s):", ""]
    lines.append("| step | " + " | ".join(p["point"] for p in points) + " |")
    lines.append("|---|" + "---|" * len(points))
    for name in steps:
        cells = []
        for p in points:
            found = [s for s in p["steps"] if s["step"] == name]
            cells.append(f"{found[0]['seconds']:.1f}" if found else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", default="medium,large,large-x3,large-x10")
    parser.add_argument("--data", type=Path, default=Path("/tmp/rtml-bench/scale"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtml-bench/scale-runs"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    opts = parser.parse_args()
    opts.data.mkdir(parents=True, exist_ok=True)
    points = []
    for point in opts.points.split(","):
        points.append(measure(point, opts.data, opts.work))
        print(json.dumps({k: v for k, v in points[-1].items() if k != "steps"}), flush=True)
    from rtml_cli.duck import share_of_ram

    memory_limit = os.environ.get(
        "RTML_MEMORY_LIMIT", f"{share_of_ram()} (precompute's default: an eighth of RAM, >= 1GB)"
    )
    section = render(points, memory_limit)
    if opts.json:
        opts.json.write_text(json.dumps(points, indent=2) + "\n")
    print(section)
    if not opts.no_write:
        replace_section(HEADING, section)


if __name__ == "__main__":
    main()
