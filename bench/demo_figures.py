"""Every demo command's JSON, with run-to-run noise removed: the figures a refactor must keep.

    python bench/demo_figures.py OUTDIR [--rtml PATH]

Runs the commands of ``examples/demo.sh`` with ``--format json`` into OUTDIR/work and
writes OUTDIR/<step>.json with timings, latencies, memory, creation times and the work
path removed. Compare two revisions with ``diff -r BEFORE AFTER`` (issue #14: a restructure must not move a figure).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CUTOFF, DAY_AFTER = "2024-03-22T16:00:00Z", "2024-03-23T16:00:00Z"
# keys whose values are measurements of the machine, not results
VOLATILE = re.compile(
    r"(seconds|_s$|elapsed|latency|_ms$|^ms_|p50|p95|p99|peak_rss|rss|created_at|"
    r"build_seconds|cpu|wall|throughput|per_second|requests_per_s|verified|time_ratio)",
    re.IGNORECASE,
)


def steps(work: Path) -> list[tuple[str, list[str]]]:
    shop, obd = "sample_data/shop", work / "obd"
    return [
        ("data-contracts", ["data", "contracts", "--format", "json"]),
        (
            "data-sample",
            [
                "data",
                "sample",
                "--out",
                f"{work}/world",
                "--size",
                "tiny",
                "--seed",
                "7",
                "--format",
                "json",
            ],
        ),
        (
            "import-random",
            [
                "data",
                "import",
                "--from-format",
                "obd",
                "sample_data/obd/random/men/men.csv.gz",
                "--out",
                f"{obd}/random.parquet",
                "--format",
                "json",
            ],
        ),
        (
            "import-bts",
            [
                "data",
                "import",
                "--from-format",
                "obd",
                "sample_data/obd/bts/men/men.csv.gz",
                "--out",
                f"{obd}/bts.parquet",
                "--format",
                "json",
            ],
        ),
        ("validate-bts", ["data", "validate", f"{obd}/bts.parquet", "--format", "json"]),
        ("validate-events", ["data", "validate", f"{shop}/events.parquet", "--format", "json"]),
        (
            "precompute",
            [
                "precompute",
                f"{shop}/events.parquet",
                "--items",
                f"{shop}/items.parquet",
                "--out",
                f"{work}/artifacts",
                "--keep",
                "3",
                "--format",
                "json",
            ],
        ),
        (
            "neighbors",
            [
                "neighbors",
                "100000",
                "--artifacts",
                f"{work}/artifacts",
                "-k",
                "8",
                "--format",
                "json",
            ],
        ),
        (
            "precompute-replay",
            [
                "precompute",
                f"{shop}/events.parquet",
                "--items",
                f"{shop}/items.parquet",
                "--out",
                f"{work}/replay-artifacts",
                "--as-of",
                CUTOFF,
                "--format",
                "json",
            ],
        ),
        (
            "simulate",
            [
                "simulate",
                f"{shop}/events.parquet",
                "--artifacts",
                f"{work}/replay-artifacts",
                "--to",
                DAY_AFTER,
                "--ablation",
                "--freshness-sweep",
                "0s,1h",
                "--out",
                f"{work}/results.parquet",
                "--format",
                "json",
            ],
        ),
        (
            "evaluate-planning",
            [
                "evaluate",
                "--arm",
                "control=0.040",
                "--arm",
                "new=0.045",
                "--seeds",
                "100",
                "--format",
                "json",
            ],
        ),
        (
            "evaluate-results",
            [
                "evaluate",
                f"{work}/results.parquet",
                "--arms",
                "batch,session-embedding,online-ranker",
                "--reward",
                "hit",
                "--format",
                "json",
            ],
        ),
        (
            "ope-obd",
            [
                "evaluate",
                "ope",
                f"{obd}/random.parquet",
                "--policy",
                f"log:{obd}/bts.parquet",
                "--ground-truth",
                f"{obd}/bts.parquet",
                "--format",
                "json",
            ],
        ),
        (
            "ope-linear",
            [
                "evaluate",
                "ope",
                f"{shop}/bandit.parquet",
                "--policy",
                "linear:0.1",
                "--bootstrap",
                "500",
                "--format",
                "json",
            ],
        ),
        ("contextual", ["evaluate", "contextual", shop, "--format", "json"]),
        (
            "drift",
            [
                "drift",
                "popularity",
                f"{shop}/events.parquet",
                "--end",
                "2024-03-25",
                "--format",
                "json",
            ],
        ),
        (
            "retrain",
            [
                "retrain",
                f"{shop}/events.parquet",
                "--start",
                "2024-03-21",
                "--end",
                "2024-03-27",
                "--schedules",
                "stateless:1d,stateful:1d,triggered,never",
                "--sample",
                "4",
                "--format",
                "json",
            ],
        ),
    ]


def scrub(value, work: str):
    if isinstance(value, dict):
        return {k: scrub(v, work) for k, v in value.items() if not VOLATILE.search(str(k))}
    if isinstance(value, list):
        return [scrub(v, work) for v in value]
    if isinstance(value, str):
        # verdicts quote measured time ratios ("at 1/3 of its training time")
        value = re.sub(r"\d+/\d+ of its training time", "N/M of its training time", value)
        return value.replace(work, "$WORK")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rtml", default=str(Path(sys.executable).parent / "rtml"))
    parser.add_argument("--only", help="comma-separated step names")
    args = parser.parse_args()
    work = args.out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    only = set(args.only.split(",")) if args.only else None
    failed = 0
    for name, argv in steps(work.resolve()):
        if only and name not in only:
            continue
        proc = subprocess.run([args.rtml, *argv], cwd=REPO, capture_output=True, text=True)
        if proc.returncode not in (0, 10):
            print(f"{name}: exit {proc.returncode}: {proc.stderr.strip()[-300:]}", file=sys.stderr)
            failed += 1
            continue
        doc = scrub(json.loads(proc.stdout), str(work.resolve()))
        doc = {"exit_code": proc.returncode, "output": doc}
        (args.out / f"{name}.json").write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        print(f"{name}: exit {proc.returncode}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
