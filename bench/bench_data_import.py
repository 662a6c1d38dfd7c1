"""Benchmark `rtml data import` (CSV, sessionized) and `rtml data validate` on a large log.

Generates a synthetic click log with DuckDB (N rows: ~N/20 users, ~N/100 items, one
event every ~1-40 minutes per user, so the importer has to cut sessions), then runs the
two commands as subprocesses and records wall time and peak RSS (ru_maxrss of the child).

    .venv/bin/python bench/bench_data_import.py --rows 10000000 [--memory-limit 512MB]
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb


def generate(path: Path, rows: int) -> None:
    users = max(rows // 20, 1)
    items = max(rows // 100, 1)
    con = duckdb.connect()
    con.execute(
        f"""
        COPY (
            SELECT 1700000000 + (i // {users}) * 60 * (1 + hash(i) % 40) + hash(i * 7) % 60 AS t,
                   'u' || (i % {users}) AS uid,
                   (hash(i * 13) % {items}) AS sku,
                   CASE WHEN hash(i * 17) % 20 = 0 THEN 'cart' ELSE 'view' END AS kind,
                   hash(i * 19) % 1000 / 10.0 AS price
            FROM range({rows}) r(i)
        ) TO '{path}' (HEADER, DELIMITER ',')
        """
    )
    con.close()


_MEASURE = (
    "import resource, subprocess, sys; "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command, measured in its own parent process."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], check=True, capture_output=True, text=True
    )
    return time.perf_counter() - started, int(done.stdout.strip()) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    parser.add_argument(
        "--memory-limit", default=None, help="RTML_MEMORY_LIMIT for the commands, e.g. 512MB"
    )
    args = parser.parse_args()
    if args.memory_limit:
        os.environ["RTML_MEMORY_LIMIT"] = args.memory_limit
    rtml = str(Path(sys.executable).with_name("rtml"))
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        src = Path(scratch) / "clicks.csv"
        out = Path(scratch) / "events.parquet"
        started = time.perf_counter()
        generate(src, args.rows)
        print(
            f"generated {args.rows:,} rows, {src.stat().st_size / 2**20:,.0f} MiB CSV "
            f"in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
        imp_s, imp_rss = run(
            [rtml, "data", "import", "--from-format", "csv", str(src), "--out", str(out),
             "--map", "ts=t,user_id=uid,item_id=sku,event=kind", "--ts-unit", "s", "--quiet"]
        )  # fmt: skip
        val_s, val_rss = run([rtml, "data", "validate", str(out), "--format", "json"])
        con = duckdb.connect()
        sessions = con.execute(
            f"SELECT count(DISTINCT session_id) FROM read_parquet('{out}')"
        ).fetchone()[0]
        size = out.stat().st_size / 2**20
        print(
            f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        )
        print(f"load average: {os.getloadavg()}")
        print(f"RTML_MEMORY_LIMIT: {os.environ.get('RTML_MEMORY_LIMIT', '(DuckDB default)')}")
        print(
            f"import:   {imp_s:6.1f}s  peak RSS {imp_rss:,.0f} MiB  -> {size:,.0f} MiB Parquet, {sessions:,} sessions"
        )
        print(f"validate: {val_s:6.1f}s  peak RSS {val_rss:,.0f} MiB")
        print(f"import throughput: {args.rows / imp_s / 1e6:.2f} M rows/s")


if __name__ == "__main__":
    main()
