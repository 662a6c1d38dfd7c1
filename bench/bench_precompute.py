"""Benchmark `rtml precompute` on the large sample world (>= 10M events, >= 100k items).

Measures, in one invocation (each job in its own subprocess, so peak RSS is the job's):
- the floor: DuckDB scanning the same Parquet and grouping by item;
- a full run at the world's end (wall, CPU, peak RSS, per-step times);
- a warm start with one new day: a full run at end - 1 day, then `--warm-start` to the end
  (a delta run: the default) and, for comparison, the self-contained warm start of the same
  day (`--full-every 1`, from the same base run into another ROOT);
- warm-start vs full agreement (CF neighbours, embedding kNN, Stage-1 lists, features);
- Annoy recall@10 vs exact cosine kNN, build time and index size (from the manifest).

    python bench/bench_precompute.py [--world DIR] [--work DIR] [--json OUT]

Generates the world with `rtml data sample --size large` when DIR has none.
Prints a Markdown section for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

RTML = [sys.executable, "-m", "rtml_cli"]


def children_usage() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024.0


def run_job(args: list[str]) -> dict:
    """Run one precompute in a fresh process: wall, CPU, peak RSS, manifest summary."""
    cpu0, _ = children_usage()
    wall0 = time.perf_counter()
    proc = subprocess.run(
        [*RTML, "precompute", *args, "--format", "json"], capture_output=True, text=True
    )
    wall = time.perf_counter() - wall0
    cpu1, _ = children_usage()
    if proc.returncode != 0:
        raise SystemExit(f"precompute failed ({proc.returncode}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    # ru_maxrss of children is the max over all children so far: read the job's own peak
    peak = max(step["peak_rss_mb"] for step in summary["steps"])
    return {"wall_s": wall, "cpu_s": cpu1 - cpu0, "peak_rss_mb": peak, "summary": summary}


def floor(events: Path) -> dict:
    """DuckDB reading the same Parquet and grouping by item: the job cannot beat this."""
    code = (
        "import duckdb,sys,time;t=time.perf_counter();c=time.process_time();"
        "duckdb.sql(f\"SELECT item_id, count(*) FROM read_parquet('{sys.argv[1]}') "
        'GROUP BY item_id").fetchall();'
        "print(time.perf_counter()-t, time.process_time()-c)"
    )
    out = subprocess.run([sys.executable, "-c", code, str(events)], capture_output=True, text=True)
    wall, cpu = map(float, out.stdout.split())
    return {"wall_s": wall, "cpu_s": cpu}


def overlap(a: pl.DataFrame, b: pl.DataFrame, key: str, other: str, top: int) -> float:
    left = a.filter(pl.col("rank") <= top).select(key, other)
    right = b.filter(pl.col("rank") <= top).select(key, other)
    return left.join(right, on=[key, other], how="inner").height / max(left.height, 1)


def embedding_agreement(warm, full, sample: int = 2000, k: int = 10) -> float:
    """Mean overlap of exact cosine top-k neighbour sets (by item id) on a sample of items."""
    common = np.intersect1d(warm.item_ids, full.item_ids)
    rng = np.random.default_rng(0)
    queries = rng.choice(common, size=min(sample, common.size), replace=False)

    def topk(art, ids):
        unit = art.embeddings / np.maximum(np.linalg.norm(art.embeddings, axis=1), 1e-12)[:, None]
        idx = art.to_idx(ids)
        sims = unit[idx] @ unit.T
        sims[np.arange(idx.size), idx] = -np.inf
        best = np.argpartition(-sims, k, axis=1)[:, :k]
        return [set(art.item_ids[row].tolist()) for row in best]

    got, want = topk(warm, queries), topk(full, queries)
    return float(np.mean([len(g & w) / k for g, w in zip(got, want, strict=True)]))


def bundle_purity(art, items: pl.DataFrame, sample: int = 2000, k: int = 10) -> dict:
    """Quality against the world's ground truth: share of top-k neighbours in the same bundle."""
    bundle = dict(zip(items["item_id"].to_list(), items["bundle"].to_list(), strict=True))
    category = dict(zip(items["item_id"].to_list(), items["category"].to_list(), strict=True))
    rng = np.random.default_rng(0)
    ids = art.item_ids
    same_b, same_c = [], []
    indexed = art.n_indexed or art.n_items  # a delta's kept index lacks the newest items
    for i in rng.choice(indexed, size=min(sample, indexed), replace=False):
        for j in art.index.get_nns_by_item(int(i), k + 1)[1:]:
            same_b.append(bundle.get(ids[i]) == bundle.get(ids[j]))
            same_c.append(category.get(ids[i]) == category.get(ids[j]))
    top = (
        art.neighbors.filter(pl.col("rank") <= k)
        .join(items.select("item_id", "bundle"), on="item_id")
        .join(
            items.select(pl.col("item_id").alias("neighbor_id"), pl.col("bundle").alias("nb")),
            on="neighbor_id",
        )
    )
    return {
        "embedding_same_bundle": float(np.mean(same_b)),
        "embedding_same_category": float(np.mean(same_c)),
        "cf_same_bundle": float((top["bundle"] == top["nb"]).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--world", type=Path, default=Path("/tmp/rtml-bench/large"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/rtml-bench/precompute"))
    parser.add_argument("--json", type=Path, default=None)
    opts = parser.parse_args()
    from rtml_cli.batch.artifacts import load_artifacts

    events, items = opts.world / "events.parquet", opts.world / "items.parquet"
    if not events.exists():
        subprocess.run(
            [*RTML, "data", "sample", "--size", "large", "--out", str(opts.world), "-q"],
            check=True,
        )
    world = json.loads((opts.world / "world.json").read_text())
    shutil.rmtree(opts.work, ignore_errors=True)
    load_before = os.getloadavg()
    base_floor = floor(events)

    full = run_job([str(events), "--items", str(items), "--out", str(opts.work / "full")])
    end = datetime.fromisoformat(full["summary"]["as_of"])
    day_before = (end - timedelta(days=1)).astimezone(timezone.utc).isoformat()
    base = run_job(
        [
            str(events),
            "--items",
            str(items),
            "--out",
            str(opts.work / "warm"),
            "--as-of",
            day_before,
        ]
    )
    warm = run_job(
        [
            str(events),
            "--items",
            str(items),
            "--out",
            str(opts.work / "warm"),
            "--warm-start",
            str(opts.work / "warm"),
        ]
    )
    base_run = opts.work / "warm" / "runs" / base["summary"]["run_id"]
    plain = run_job(
        [
            str(events),
            "--items",
            str(items),
            "--out",
            str(opts.work / "plain"),
            "--warm-start",
            str(base_run),
            "--full-every",
            "1",
        ]
    )
    load_after = os.getloadavg()
    fa, wa = load_artifacts(opts.work / "full"), load_artifacts(opts.work / "warm")
    features = ["item_id", "views_total", "views_1d", "views_7d", "views_30d", "purchases_30d"]
    same_features = (
        wa.item_features.sort("item_id")
        .select(features)
        .equals(fa.item_features.sort("item_id").select(features))
    )
    agreement = {
        "cf_neighbors_overlap_at_10": overlap(
            wa.neighbors, fa.neighbors, "item_id", "neighbor_id", 10
        ),
        "embedding_knn_overlap_at_10": embedding_agreement(wa, fa),
        "batch_recs_overlap_at_10": overlap(wa.batch_recs, fa.batch_recs, "user_id", "item_id", 10),
        "item_window_and_total_counts_identical": same_features,
    }
    catalogue = pl.read_parquet(items)
    quality = {"full": bundle_purity(fa, catalogue), "warm": bundle_purity(wa, catalogue)}
    index = full["summary"]["index"]
    result = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python {platform.python_version()}",
        "load_avg_before": load_before,
        "load_avg_after": load_after,
        "world": {k: world[k] for k in ("n_events", "n_items", "n_users", "n_sessions", "days")},
        "floor": base_floor,
        "full": {k: full[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
        "full_steps": full["summary"]["steps"],
        "base_for_warm": {k: base[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
        "warm": {k: warm[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
        "warm_steps": warm["summary"]["steps"],
        "warm_mode": warm["summary"]["mode"],
        "warm_delta": warm["summary"].get("delta"),
        "warm_index": warm["summary"]["index"],
        "plain": {k: plain[k] for k in ("wall_s", "cpu_s", "peak_rss_mb")},
        "plain_steps": plain["summary"]["steps"],
        "warm_rows": warm["summary"]["rows"],
        "full_rows": full["summary"]["rows"],
        "agreement": agreement,
        "quality": quality,
        "index": index,
    }
    if opts.json:
        opts.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(render(result))


def render(r: dict) -> str:
    full, warm, fl = r["full"], r["warm"], r["floor"]
    ag, ix, q = r["agreement"], r["index"], r["quality"]
    lines = [
        f"Measured {r['date']} on {r['machine']}; load average before/after "
        f"{r['load_avg_before'][0]:.1f} / {r['load_avg_after'][0]:.1f} (shared machine).",
        f"World: {r['world']['n_events']:,} events, {r['world']['n_items']:,} items, "
        f"{r['world']['n_users']:,} users, {r['world']['days']} days.",
        "",
        "| measure | target | wall (s) | CPU (s) | peak RSS (MB) |",
        "|---|---|---|---|---|",
        f"| floor: DuckDB scan + group by item | – | {fl['wall_s']:.1f} | {fl['cpu_s']:.1f} | – |",
        f"| full precompute | <= 90 s, <= 4096 MB | {full['wall_s']:.1f} | {full['cpu_s']:.1f} "
        f"| {full['peak_rss_mb']:.0f} |",
        f"| warm start, one new day ({r['warm_mode']}) | >= 5x cheaper | {warm['wall_s']:.1f} "
        f"| {warm['cpu_s']:.1f} | {warm['peak_rss_mb']:.0f} |",
        f"| self-contained warm start (`--full-every 1`) | – | {r['plain']['wall_s']:.1f} "
        f"| {r['plain']['cpu_s']:.1f} | {r['plain']['peak_rss_mb']:.0f} |",
        "",
        f"- ratio full / floor: {full['wall_s'] / fl['wall_s']:.1f}x wall, "
        f"{full['cpu_s'] / fl['cpu_s']:.1f}x CPU",
        f"- warm start is {full['wall_s'] / warm['wall_s']:.1f}x cheaper in wall time and "
        f"{full['cpu_s'] / warm['cpu_s']:.1f}x in CPU; it read "
        f"{r['warm_rows']['events_read_for_model']:,} events for the model vs "
        f"{r['full_rows']['events_read_for_model']:,}; the self-contained warm start is "
        f"{full['wall_s'] / r['plain']['wall_s']:.1f}x / {full['cpu_s'] / r['plain']['cpu_s']:.1f}x",
        _delta_line(r),
        f"- warm vs full agreement: CF neighbours overlap@10 {ag['cf_neighbors_overlap_at_10']:.3f}, "
        f"embedding kNN overlap@10 {ag['embedding_knn_overlap_at_10']:.3f}, Stage-1 lists "
        f"overlap@10 {ag['batch_recs_overlap_at_10']:.3f}, item counts identical: "
        f"{ag['item_window_and_total_counts_identical']}",
        "- quality vs the world's ground truth (share of top-10 neighbours in the same intent "
        f"bundle / category): full {q['full']['embedding_same_bundle']:.3f} / "
        f"{q['full']['embedding_same_category']:.3f} (embeddings), "
        f"{q['full']['cf_same_bundle']:.3f} (CF bundle); warm start "
        f"{q['warm']['embedding_same_bundle']:.3f} / {q['warm']['embedding_same_category']:.3f}, "
        f"{q['warm']['cf_same_bundle']:.3f}",
        f"- Annoy ({ix['n_trees']} trees, angular, search_k={ix['search_k']}): recall@10 "
        f"{ix['recall_at_10']:.3f} on {ix['recall_queries']} items, build {ix['build_seconds']:.1f} s, "
        f"{ix['bytes'] / 1e6:.0f} MB",
        "",
        "| step (full run) | wall (s) | CPU (s) | peak RSS (MB) |",
        "|---|---|---|---|",
    ]
    for step in r["full_steps"]:
        lines.append(
            f"| {step['step']} | {step['seconds']:.1f} | {step.get('cpu_seconds', 0):.1f} "
            f"| {step['peak_rss_mb']:.0f} |"
        )
    lines += [
        "",
        "| step | delta warm start wall (s) | CPU (s) | self-contained warm wall (s) | CPU (s) |",
        "|---|---|---|---|---|",
    ]
    plain = {step["step"]: step for step in r["plain_steps"]}
    for step in r["warm_steps"]:
        other = plain.get(step["step"], {})
        lines.append(
            f"| {step['step']} | {step['seconds']:.1f} | {step.get('cpu_seconds', 0):.1f} "
            f"| {other.get('seconds', 0):.1f} | {other.get('cpu_seconds', 0):.1f} |"
        )
    return "\n".join(lines)


def _delta_line(r: dict) -> str:
    delta, index = r.get("warm_delta"), r["warm_index"]
    if not delta:
        return f"- the warm start was {r['warm_mode']}, not a delta"
    move = index.get("move") or {}
    return (
        f"- delta run of {delta['base']} (chain {delta['chain']}): "
        f"{r['warm_rows'].get('delta_users', 0):,} users changed, "
        f"{r['warm_rows'].get('delta_batch_recs', 0):,} Stage-1 rows written of "
        f"{r['warm_rows']['batch_recs']:,}; embeddings moved "
        f"{move.get('mean_cosine_distance', float('nan')):.4f} mean cosine distance (p99 "
        f"{move.get('p99_cosine_distance', float('nan')):.4f}, max "
        f"{move.get('max_cosine_distance', float('nan')):.3f}, kNN@10 overlap "
        f"{move.get('knn_overlap_at_10', float('nan')):.3f}); index "
        + ("rebuilt" if index.get("rebuilt") else f"kept (built by {index.get('built_by')})")
    )


if __name__ == "__main__":
    main()
