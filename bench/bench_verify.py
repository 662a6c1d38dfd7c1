"""What verifying a precompute run against its manifest costs (`load_artifacts`, issue #15).

On a published run of the `large` sample world, measures (median of --repeat, warm page
cache; each CLI figure is a fresh process):
- size checks only (``verify_outputs(checksums=False)``);
- sha256 of every output file (what a verification without a stamp costs), per file;
- ``load_artifacts`` with sizes only, with a full sha256 pass, and with a valid
  ``.verified.json`` stamp (the steady state: nothing re-hashed);
- `rtml neighbors` end to end, first call (no stamp) and later calls (stamp).

    python bench/bench_verify.py --artifacts ROOT [--no-write]

Make ROOT beforehand (~1 min + ~3 min on 2 cores)::

    rtml data sample --size large --out /tmp/large
    rtml precompute /tmp/large/events.parquet --out /tmp/large-root

Prints a Markdown section and puts it in bench/RESULTS.md (``replace_section``).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from results_md import replace_section  # noqa: E402

HEADING = "## Artifact verification (`load_artifacts`)"
RTML = [sys.executable, "-m", "rtml_cli"]


def timed(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def machine() -> dict:
    mem = subprocess.run(["free", "-g"], capture_output=True, text=True).stdout.splitlines()
    total = next((line.split()[1] for line in mem if line.startswith("Mem:")), "?")
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "mem_gb": total,
        "python": platform.python_version(),
        "arch": platform.machine(),
    }


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, required=True, help="precompute ROOT or run")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-write", action="store_true", help="do not touch RESULTS.md")
    opts = parser.parse_args()

    from rtml_cli.batch import artifacts as A
    from rtml_cli.batch.publish import sha256_file

    run = A.resolve_run_dir(opts.artifacts)
    manifest = A.read_manifest(run)
    stamp = run / A.VERIFIED_STAMP
    load_before = loadavg()
    sizes = {name: (run / name).stat().st_size for name in A.OUTPUT_FILES}
    total_mb = sum(sizes.values()) / 1e6
    for name in A.OUTPUT_FILES:  # warm the page cache: every figure below is warm
        sha256_file(run / name)

    per_file = {name: timed(lambda n=name: sha256_file(run / n), opts.repeat) for name in sizes}
    hash_all = sum(per_file.values())
    size_only = timed(lambda: A.verify_outputs(run, manifest, checksums=False), opts.repeat)
    load_sizes = timed(lambda: A.load_artifacts(run, checksums=False), opts.repeat)

    def load_unstamped():
        stamp.unlink(missing_ok=True)
        A.load_artifacts(run)

    load_full = timed(load_unstamped, opts.repeat)
    A.load_artifacts(run)  # writes the stamp
    load_stamped = timed(lambda: A.load_artifacts(run), opts.repeat)

    item = str(A.load_artifacts(run).item_ids[0])

    def neighbors():
        subprocess.run(
            [*RTML, "neighbors", item, "-a", str(run), "-f", "json"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def neighbors_unstamped():
        stamp.unlink(missing_ok=True)
        neighbors()

    cli_first = timed(neighbors_unstamped, opts.repeat)
    neighbors()
    cli_later = timed(neighbors, opts.repeat)
    load_after = loadavg()

    m = machine()
    rows = [
        f"| size checks only (stat × {len(sizes)}) | {size_only * 1e3:.2f} ms |",
        f"| sha256 of every output ({total_mb:,.0f} MB) | {hash_all:.2f} s "
        f"({total_mb / hash_all:,.0f} MB/s) |",
        f"| `load_artifacts`, sizes only (no sha256) | {load_sizes:.2f} s |",
        f"| `load_artifacts`, first load: sizes + sha256 of all, writes the stamp | "
        f"{load_full:.2f} s |",
        f"| `load_artifacts`, later loads: stamp matches, nothing re-hashed | "
        f"{load_stamped:.2f} s |",
        f"| `rtml neighbors`, first call (no stamp) | {cli_first:.2f} s |",
        f"| `rtml neighbors`, later calls (stamp) | {cli_later:.2f} s |",
    ]
    files = " · ".join(
        f"{name} {sizes[name] / 1e6:,.1f} MB {per_file[name]:.2f} s"
        for name in sorted(sizes, key=sizes.get, reverse=True)
    )
    wrap = lambda text: textwrap.fill(text, 92)  # noqa: E731
    section = "\n".join(
        [
            HEADING,
            "",
            wrap(
                f"`bench/bench_verify.py` on a full `rtml precompute` run of the `large` sample "
                f"world ({manifest['rows']['items']:,} items, {manifest['params']['dim']}-dim "
                f"embeddings, {manifest['rows']['batch_recs']:,} batch-rec rows; {total_mb:,.0f} MB "
                "of outputs). Warm page cache, median of "
                f"{opts.repeat}. Measured {m['date']}: `nproc` {m['nproc']}, `free -g` total "
                f"{m['mem_gb']} GB, {m['arch']}, Python {m['python']}; load average (1 min, "
                f"/proc/loadavg) {load_before} before / {load_after} after (machine shared with "
                "other engineers' jobs, so the figures are inflated)."
            ),
            "",
            "| step | time |",
            "|---|---|",
            *rows,
            "",
            wrap(f"sha256 per file: {files}."),
            "",
            wrap(
                f"Hashing every output on every load would add ~{hash_all:.2f} s "
                f"({hash_all / load_sizes:.0%} of a sizes-only `load_artifacts`; measured first "
                f"loads {load_full - load_sizes:+.2f} s) to every reader, and on a cold cache "
                "read all of `items.ann`, which a query otherwise touches only in part (the "
                "`rtml neighbors` figures are dominated by process start-up and the load from "
                "other jobs). So readers "
                "always check sizes (and the Annoy node count and dimension, and embeddings vs "
                "item index) and recompute sha256 only for files whose identity (device, inode, "
                "size, mtime, ctime) differs from the `.verified.json` stamp the last successful "
                "verification wrote in the run directory; a run directory the reader cannot write "
                "to is hashed on "
                "every load."
            ),
            "",
        ]
    )
    print(section)
    if not opts.no_write:
        replace_section(HEADING, section)


if __name__ == "__main__":
    main()
