"""Benchmark: `rtml retrain` on the `medium` world, 30 simulated days, daily steps, 4 schedules.

Generates the medium world (``rtml data sample --size medium``) unless ``--world DIR``
is given, runs ``rtml retrain`` in a child process over the last ``--days`` days with
``stateless:1d,stateful:1d,triggered:psi,never`` and records the wall time, each schedule's
training cost and its ratio against stateless daily retraining under the
"Continual learning" heading of bench/RESULTS.md (replacing an older entry).

    .venv/bin/python bench/bench_retrain.py [--world DIR] [--days 30] [--sample 4] [--no-write]
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
from datetime import datetime, timedelta, timezone
from pathlib import Path

from results_md import replace_section

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
HEADING = "## Continual learning (`rtml retrain`)"
TARGET_S = 600.0  # "the whole comparison of 4 schedules in <= 10 minutes"
SCHEDULES = "stateless:1d,stateful:1d,triggered,never"


def _rtml(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "rtml_cli", *args], capture_output=True, text=True, check=False
    )


def run(world: Path | None, days: int, sample: int, seed: int, extra: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="rtml-bench-retrain-") as tmp:
        gen_s = None
        if world is None:
            world = Path(tmp) / "world"
            t0 = time.perf_counter()
            proc = _rtml("data", "sample", "--out", str(world), "--size", "medium",
                         "--seed", str(seed), "--quiet")  # fmt: skip
            if proc.returncode != 0:
                raise SystemExit(f"world generation failed: {proc.stderr.strip()}")
            gen_s = round(time.perf_counter() - t0, 1)
        meta = json.loads((world / "world.json").read_text())
        end = datetime.fromisoformat(meta["end"].replace("Z", "+00:00"))
        start = end - timedelta(days=days)
        load_before = os.getloadavg()
        t0 = time.perf_counter()
        proc = _rtml(
            "retrain", str(world / "events.parquet"), "--start", start.isoformat(),
            "--end", end.isoformat(), "--step", "1d", "--schedules", SCHEDULES,
            "--sample", str(sample), "--seed", str(seed), "--format", "json", *extra,
        )  # fmt: skip
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"rtml retrain failed ({proc.returncode}): {proc.stderr.strip()}")
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        summary = json.loads(proc.stdout)
    return {
        "world": "medium" if gen_s is not None else str(world),
        "events": meta.get("n_events"),
        "items": meta.get("n_items"),
        "days": days,
        "sample": sample,
        "extra": extra,
        "generate_s": gen_s,
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(peak_kib / 1024),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "summary": summary,
    }


def render(r: dict) -> str:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    s = r["summary"]
    verdict = "met" if r["wall_s"] <= TARGET_S else f"MISSED (target {TARGET_S:.0f} s)"
    rows = []
    for sch in s["schedules"]:
        rows.append(
            f"| {sch['schedule']} | {sch['hr']:.4f} | {sch.get('hr_before_shift') or 0:.4f} | "
            f"{sch.get('hr_after_shift') or 0:.4f} | {sch['updates']} | {sch['rows']:,} | "
            f"{sch['train_seconds']:.1f} | {sch.get('time_ratio_vs_baseline', 0) or 0:.3f} | "
            f"{sch.get('rows_ratio_vs_baseline', 0) or 0:.4f} |"
        )
    table = "\n".join(rows)
    extra = " ".join(r["extra"]) or "(defaults)"
    return f"""{HEADING}

`bench/bench_retrain.py` — `rtml retrain` on the {r["world"]} world ({r["events"]:,} events,
{r["items"]:,} items), the last {r["days"]} days in daily steps, schedules `{SCHEDULES}`,
replaying one session in {r["sample"]} (`--sample {r["sample"]}`), options {extra}, in a child
process. Measured {now} on {platform.machine()}, {os.cpu_count()} cores, Python
{platform.python_version()}; shared machine, load average {r["load_before"][0]} before and
{r["load_after"][0]} after the run (a load above ~1 means other jobs shared the 2 cores).

| schedule | HR@{s["k"]} | HR before shift | HR after shift | updates | rows read | train s | train time vs stateless:1d | rows vs stateless:1d |
|---|---|---|---|---|---|---|---|---|
{table}

Wall time of the whole comparison: **{r["wall_s"]} s** (peak RSS {r["peak_rss_mib"]:,} MiB).
Target "4 schedules over 30 days in <= 10 minutes on 2 cores": {verdict}.

Verdict printed by the run: {s["verdict"]}
"""


def write(section: str) -> None:
    replace_section(HEADING, section)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--world", type=Path, help="an existing world directory (default: generate medium)"
    )
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sample", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="print, do not update RESULTS.md")
    parser.add_argument("extra", nargs="*", help="more `rtml retrain` options, after --")
    args = parser.parse_args()
    result = run(args.world, args.days, args.sample, args.seed, args.extra)
    (RESULTS.parent / "out").mkdir(exist_ok=True)
    (RESULTS.parent / "out" / "retrain_summary.json").write_text(
        json.dumps(result, indent=2, default=str) + "\n"
    )
    section = render(result)
    print(section)
    if not args.no_write:
        write(section)


if __name__ == "__main__":
    main()
