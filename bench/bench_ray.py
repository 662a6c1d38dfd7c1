"""Benchmark `rtml simulate --engine ray`: 1 worker vs 2 workers vs the local engine.

Runs the whole command as a user does (a child process each: read, prepare, replay,
summarise, write RESULTS) on the same artifacts and events, in one run:

1. ``--engine local`` (the baseline, no Ray);
2. ``--engine ray --shards 1`` on a local two-CPU Ray cluster (one task: one worker);
3. ``--engine ray --shards 2`` on the same cluster (two tasks: two workers);

and reports requests/s over the whole command's wall time, the 2-vs-1-worker ratio
(target >= 1.7x on 2 cores), the phases (the driver's prepare and writes, the tasks, each
task's read/setup/replay seconds and bytes read, from ``info.engine``), checks that the
three RESULTS files are equal but for ``latency_us``, and projects a 1B-request replay on
100 workers from the measured per-request cost and bytes. The cluster is started in this
process with ``ray.cluster_utils.Cluster`` on 127.0.0.1 (an existing cluster, as the
command is meant to be used) and shut down at the end. The `medium` world::

    rtml data sample --size medium --seed 0 --out /tmp/medium
    rtml precompute /tmp/medium/events.parquet --items /tmp/medium/items.parquet --out /tmp/medium-art
    .venv/bin/python bench/bench_ray.py --events /tmp/medium/events.parquet \\
        --artifacts /tmp/medium-art --start 2024-04-14T12:00:00Z [--no-write]

Other engineers share the cores: the load average before and after is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from results_md import RESULTS, replace_section

HEADING = "## Distributed replay (`rtml simulate --engine ray`)"
RTML = Path(sys.executable).parent / "rtml"
PROJECT_REQUESTS = 1_000_000_000
PROJECT_WORKERS = 100


NOTES = """\
Notes. The one build of the learning strategies (training the `online-ranker`) runs as a
Ray task submitted before the driver prepares: it reads the log and trains on a worker
while the driver reads and writes the shards. With more than one shard, each shard's
sessions go in 4 pieces, each piece in two jobs — the learning strategies (which wait for
the build) and the others (which do not) — that the workers take as they come free, at
most `--shards` at once (so `--shards 1` is one worker: the build, then its jobs, one
after another); a worker keeps the run's artifacts and built strategies between jobs.
What does not shrink with a second worker, whatever the load: starting Python and
connecting to the cluster, the driver's prepare, piece writes and summary (1,000
bootstrap replicates over every request). On a shared machine (load average above the
core count) two workers also do not get two cores, which the CPU seconds show.
The projection says where the design stops scaling before the workers do: every
task reads the whole count table (tens of GB for a billion requests' window), and the
driver prepares and summarises every request on one machine. Both are the next steps:
shards by time range as well as by session, each task reading only its range of a
time-partitioned count table plus the hour before it (or an online store serving the
counts), and the driver preparing nothing itself (tasks filter the partitioned log) and
only adding up per-shard metric sums (the bootstrap already works on per-session sums).
Reproduce with the command in the script's docstring."""


def ray_version() -> str:
    import ray

    return ray.__version__


def load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def run(args: list[str], out: Path) -> dict:
    """One whole `rtml simulate` in a child process; its JSON document and wall time."""
    started = time.perf_counter()
    proc = subprocess.run(
        [str(RTML), "simulate", *args, "--format", "json", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        sys.exit(f"rtml simulate failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    doc = json.loads(proc.stdout)
    doc["wall"] = wall
    return doc


def same_results(a: Path, b: Path) -> bool:
    import polars as pl

    return pl.read_parquet(a).drop("latency_us").equals(pl.read_parquet(b).drop("latency_us"))


def mib(n: float) -> str:
    return f"{n / 2**20:,.1f} MiB"


def projection(ray2: dict) -> list[str]:
    """1B requests on 100 workers, from the 2-worker run's per-request costs and bytes."""
    info, eng = ray2["info"], ray2["info"]["engine"]
    n = info["requests"]
    tasks = eng["tasks"]
    replay_us = sum(t["replay_seconds"] for t in tasks) / n * 1e6  # per request, one worker
    fixed = max(t["read_seconds"] + t["setup_seconds"] for t in tasks)
    build = eng.get("build_seconds") or 0.0  # the driver's, once (None: every task built)
    shard_bytes = eng["bytes"]["shard_files"] / n  # per request
    stream_bytes = eng["bytes"]["stream_table"] / n  # per request of the window
    per_worker = PROJECT_REQUESTS / PROJECT_WORKERS
    # the driver's work that grows with the requests (fixed costs: start-up, connecting)
    driver_s = eng["prepare_seconds"] + eng["write_seconds"] + eng["summarise_seconds"]
    driver_us = driver_s / n * 1e6
    task_s = fixed + per_worker * replay_us / 1e6
    return [
        f"| replay, per request and worker (measured) | {replay_us:,.0f} µs |",
        f"| fixed per job: artifacts, piece, count table, built strategies (measured) | "
        f"{fixed:.1f} s |",
        f"| build task, once, on a worker (read the log, train the ranker; measured) | "
        f"{build:.1f} s |",
        f"| each task's replay, {per_worker:,.0f} requests | {task_s / 3600:,.1f} h |",
        f"| bytes of its shard file per task ({shard_bytes:.0f} B per request) | "
        f"{mib(shard_bytes * per_worker)} |",
        f"| bytes of the count table, read by every task ({stream_bytes:.0f} B per request) | "
        f"{mib(stream_bytes * PROJECT_REQUESTS)} |",
        f"| driver: prepare, write shards, summarise ({driver_us:,.0f} µs per request, measured) | "
        f"{driver_us * PROJECT_REQUESTS / 1e6 / 3600:,.0f} h on one machine |",
    ]


def phases(name: str, doc: dict) -> str:
    eng = doc["info"].get("engine")
    if not eng:
        info = doc["info"]
        return (
            f"| {name} | – | – | – | – | – | in process: setup {info['setup_seconds']:.1f} s, "
            f"replay {info['replay_seconds']:.1f} s |"
        )
    jobs = eng["tasks"]

    def group(kind: str) -> str:
        mine = [t for t in jobs if t.get("strategies") == kind]
        if not mine:
            return ""
        keys = ("read_seconds", "setup_seconds", "replay_seconds", "cpu_seconds")
        total = {k: sum(t[k] for t in mine) for k in keys}
        return (
            f"{len(mine)} {kind} job(s): read {total['read_seconds']:.1f} s, setup "
            f"{total['setup_seconds']:.1f} s, replay {total['replay_seconds']:.1f} s, CPU "
            f"{total['cpu_seconds']:.1f} s"
        )

    busy: dict[int, float] = {}
    for t in jobs:
        busy[t.get("pid", 0)] = busy.get(t.get("pid", 0), 0.0) + t["ended"] - t["started"]
    workers = ", ".join(f"{b:.1f}" for b in sorted(busy.values(), reverse=True))
    tasks = "; ".join(x for x in (group("learning"), group("other")) if x)
    tasks += (
        f" ({eng.get('pieces', eng['shards'])} piece(s), {mib(eng['bytes']['shard_files'])}; "
        f"each worker busy {workers} s)"
    )
    build = eng.get("build_seconds")
    built = "in the tasks" if build is None else f"{build:.1f} s ({mib(eng['built_bytes'])})"
    return (
        f"| {name} | {eng['prepare_seconds']:.1f} s | {built} | {eng['write_seconds']:.1f} s | "
        f"{eng['tasks_seconds']:.1f} s | {eng['summarise_seconds']:.1f} s | {tasks} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", required=True)
    parser.add_argument("--artifacts", required=True)
    parser.add_argument("--start", required=True, help="first request (before the as-of is fine)")
    parser.add_argument("--end", default=None)
    parser.add_argument("--strategies", default=None, help="default: rtml simulate's")
    parser.add_argument("--world", default="medium", help="the world's name, for the notes")
    parser.add_argument("--no-write", action="store_true", help="print, do not edit RESULTS.md")
    parser.add_argument(
        "--subsection",
        metavar="TITLE",
        help="add the figures as a dated '### <date> UTC: TITLE' subsection at the end of the "
        "section (its history stays) instead of replacing the section",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="rounds (local, 1, 2 workers each); the fastest counts",
    )
    args = parser.parse_args()

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    common = [args.events, "--artifacts", args.artifacts, "--start", args.start]
    if args.end:
        common += ["--end", args.end]
    if args.strategies:
        common += ["--strategies", args.strategies]
    when = datetime.now(timezone.utc)
    load_before = load()
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    try:
        runs: dict[str, list[dict]] = {"local": [], "ray1": [], "ray2": []}
        from ray.cluster_utils import Cluster

        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": 2,
                "object_store_memory": 500 * 2**20,
                "node_ip_address": "127.0.0.1",
                "include_dashboard": False,
            },
        )
        try:
            ray_args = [*common, "--engine", "ray", "--address", cluster.address]
            for _ in range(args.repeat):  # alternate, so a burst of load hits every kind
                runs["local"].append(run(common, work / "local.parquet"))
                runs["ray1"].append(run([*ray_args, "--shards", "1"], work / "ray1.parquet"))
                runs["ray2"].append(run([*ray_args, "--shards", "2"], work / "ray2.parquet"))
        finally:
            cluster.shutdown()
        equal = same_results(work / "local.parquet", work / "ray1.parquet") and same_results(
            work / "local.parquet", work / "ray2.parquet"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load_after = load()
    local, ray1, ray2 = (min(runs[k], key=lambda d: d["wall"]) for k in ("local", "ray1", "ray2"))
    walls = {k: ", ".join(f"{d['wall']:.1f}" for d in v) for k, v in runs.items()}

    n = local["info"]["requests"]
    rate = {
        name: n / doc["wall"] for name, doc in (("local", local), ("ray1", ray1), ("ray2", ray2))
    }
    ratio = rate["ray2"] / rate["ray1"]
    # each round's own 1-vs-2-worker ratio (same load): how much the ratio moves run to run
    rounds = [a["wall"] / b["wall"] for a, b in zip(runs["ray1"], runs["ray2"], strict=True)]
    median = statistics.median(rounds)
    # with idle cores each worker would take about its jobs' CPU time: the tasks phase then
    # is their CPU seconds divided among the workers (the build task's mostly overlaps)
    est2 = ray2["wall"] - ray2["info"]["engine"]["tasks_seconds"]
    est2 += sum(t["cpu_seconds"] for t in ray2["info"]["engine"]["tasks"]) / 2
    est1 = ray1["wall"] - ray1["info"]["engine"]["tasks_seconds"]
    est1 += sum(t["cpu_seconds"] for t in ray1["info"]["engine"]["tasks"])
    tasks_ratio = ray1["info"]["engine"]["tasks_seconds"] / ray2["info"]["engine"]["tasks_seconds"]
    strategies = ", ".join(r["strategy"] for r in local["summary"] if r["segment"] == "all")
    title = HEADING if not args.subsection else f"### {when:%Y-%m-%d %H:%M} UTC: {args.subsection}"
    section = "\n".join(
        [
            title,
            "",
            f"`bench/bench_ray.py` on {when:%Y-%m-%d %H:%M} UTC, {platform.machine()}, "
            f"{os.cpu_count()} cores shared with other engineers' jobs, Python "
            f"{platform.python_version()}, Ray {ray_version()}; load average "
            f"(1/5/15 min) {load_before} before, {load_after} after. The `{args.world}` world, "
            f"replay from {args.start}, {n:,} requests, strategies {strategies}; each figure "
            "is one whole `rtml simulate … --out` in a child process (read, prepare, replay, "
            "summarise with 1,000 bootstrap replicates, write RESULTS), the Ray runs on a "
            "local two-CPU cluster already running (`--address`); "
            f"{args.repeat} round(s) alternating local, 1 and 2 workers, the fastest of each "
            "kind counts (its phases below).",
            "",
            "| run | wall time (fastest of the rounds) | requests/s (whole command) | every "
            "round's wall time |",
            "|---|---|---|---|",
            f"| `--engine local` (baseline) | {local['wall']:.1f} s | {rate['local']:,.0f} | "
            f"{walls['local']} s |",
            f"| `--engine ray --shards 1` (1 worker) | {ray1['wall']:.1f} s | {rate['ray1']:,.0f} | "
            f"{walls['ray1']} s |",
            f"| `--engine ray --shards 2` (2 workers) | {ray2['wall']:.1f} s | {rate['ray2']:,.0f} | "
            f"{walls['ray2']} s |",
            "",
            f"2 workers vs 1: **{ratio:.2f}x** on the whole command (target >= 1.7x: "
            f"{'met' if ratio >= 1.7 else '**missed**'}); {tasks_ratio:.2f}x on the tasks "
            "phase alone. Round by round (each round's 1 worker vs its 2 workers): "
            f"{', '.join(f'{r:.2f}x' for r in rounds)}, median **{median:.2f}x**"
            f"{'' if len(rounds) > 1 else ' (one round)'}. RESULTS of all three runs equal but for `latency_us`: "
            f"{'yes' if equal else '**NO**'}. Were the two cores idle (each task's wall time "
            f"= its CPU time, divided among the workers; the driver's as measured): "
            f"{est1 / est2:.2f}x (estimate).",
            "",
            "| run | driver: prepare | build task, on a worker while the driver prepares "
            "(pickled) | driver: write pieces + count table | tasks (first job submitted to "
            "last result) | driver: summarise | jobs, summed: the learning strategies (setup: "
            "unpickling the built ones) and the others (setup: building or unpickling them) |",
            "|---|---|---|---|---|---|---|",
            phases("local", local),
            phases("ray, 1 worker", ray1),
            phases("ray, 2 workers", ray2),
            "",
            *(
                []
                if args.subsection
                else [
                    f"**Projection: {PROJECT_REQUESTS:,} requests on {PROJECT_WORKERS} "
                    "workers** (linear in the measured figures of the 2-worker run; same "
                    "strategies, same traffic shape):",
                    "",
                    "| figure | projected |",
                    "|---|---|",
                    *projection(ray2),
                    "",
                    NOTES,
                    "",
                ]
            ),
        ]
    )
    print(section)
    if args.no_write:
        return
    if args.subsection:
        add_subsection(HEADING, section)
    else:
        replace_section(HEADING, section)


def add_subsection(heading: str, subsection: str) -> None:
    """Put ``subsection`` at the end of the section that starts with ``heading``."""
    text = RESULTS.read_text()
    start = text.index(heading + "\n")
    end = text.find("\n## ", start)
    end = len(text) if end < 0 else end + 1
    body = text[start:end].rstrip("\n") + "\n\n" + subsection.rstrip("\n") + "\n\n"
    RESULTS.write_text(text[:start] + body + text[end:])


if __name__ == "__main__":
    main()
