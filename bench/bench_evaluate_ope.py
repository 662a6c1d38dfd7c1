"""Benchmark `rtml evaluate ope` and `rtml evaluate contextual` (figures in bench/RESULTS.md).

Targets (issue #6): OPE on 10k events with 1000 bootstrap resamples and all six
estimators in a few seconds; `evaluate contextual` on the sample world under ~30 s.

    .venv/bin/python bench/bench_evaluate_ope.py [--world sample_data/shop]
"""

from __future__ import annotations

import argparse
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_ope(tmp: Path, n: int, n_actions: int, n_boot: int) -> dict:
    from rtml_cli.evaluation.ope import evaluate_ope

    rng = np.random.default_rng(0)
    behaviour = rng.dirichlet(np.ones(n_actions))
    action = rng.choice(n_actions, size=n, p=behaviour)
    frame = pl.DataFrame(
        {
            "ts": np.datetime64("2024-01-01", "us") + np.arange(n) * 1_000_000,
            "action": action,
            "position": rng.integers(1, 4, n),
            "reward": (rng.random(n) < 0.05).astype(float),
            "propensity": behaviour[action],
            "ctx_0": rng.normal(size=n),
        }
    )
    path = tmp / "log.parquet"
    frame.write_parquet(path)
    out = {}
    for spec, model in (("uniform", "mean"), ("greedy:0.1", "mean"), ("uniform", "logistic")):
        t0 = time.perf_counter()
        evaluate_ope(path, spec, n_boot=n_boot, reward_model=model, seed=0)
        out[f"{spec} / {model}"] = time.perf_counter() - t0
    return out


def bench_contextual(world: str | None, tmp: Path, requests: int) -> tuple[str, float]:
    from rtml_cli.data.clickmodel import ClickModel
    from rtml_cli.evaluation import contextual as C

    if world is None:
        rng = np.random.default_rng(0)
        model = ClickModel.random(rng, n_users=2000, n_items=200, n_positions=5)
        model.save(tmp / "click_model.npz")
        for name, behaviour in (("bandit", "popularity"), ("bandit_random", "uniform")):
            log = C.simulate_log(model, 20_000, k=3, rng=rng, behaviour=behaviour)
            pl.DataFrame(log).write_parquet(tmp / f"{name}.parquet")
        world, label = str(tmp), "random world 2000 users x 200 items"
    else:
        label = world
    t0 = time.perf_counter()
    C.evaluate_contextual(world, requests=requests, k=3, n_boot=200, seed=0)
    return label, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", default=None, help="sample world dir (default: a random world)")
    ap.add_argument("--requests", type=int, default=20_000)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, secs in bench_ope(Path(tmp), 10_000, 34, 1000).items():
            print(f"ope 10k events, 34 actions, 6 estimators, 1000 bootstrap, {name}: {secs:.2f} s")
        label, secs = bench_contextual(args.world, Path(tmp), args.requests)
        print(
            f"contextual {label}, {args.requests} requests x 5 policies, online+offline: {secs:.2f} s"
        )
    print(f"peak RSS: {_peak_mib():.0f} MiB")


if __name__ == "__main__":
    main()
