"""Benchmark `rtml evaluate`'s runner: seeds x requests x policies, and MABWiser run the usual way.

Target (issue #5): 100 seeds x 1,000,000 requests x 5 policies in <= 30 s on 2 cores.

rtml's runner is vectorised over seeds: each step routes one *batch* of requests for
all seeds at once ((seeds, arms) arrays), as production bandits update once per batch.
It is timed twice:

* ``no-stop``: no policy ever ends its experiment, so every policy routes all
  1,000,000 requests of every seed adaptively — the worst case, and the figure the
  target is about;
* ``default``: what `rtml evaluate` does — a run ends at its decision and the winner
  serves the rest of the stream in one step.

MABWiser (pip install 'rtml[bench]') is run the ordinary way: one ``predict()`` per
request and one ``partial_fit`` per batch of the same size, one seed at a time. It
would take hours at full size, so it runs on ``--mabwiser-requests`` requests x
``--mabwiser-seeds`` seeds and the ratio is of time per (request x seed).

    python bench/bench_evaluate.py            # prints a Markdown block for bench/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone

import numpy as np

from rtml_cli.evaluation.routing.arms import BernoulliArms
from rtml_cli.evaluation.routing.policies import Settings, make_policy
from rtml_cli.evaluation.routing.runner import run_policy

POLICIES = ("ab", "epsilon-greedy", "ucb1", "thompson", "top-two-thompson")
RATES = np.array([0.040, 0.045])


def time_rtml(seeds: int, requests: int, batch: int, stop: bool) -> dict[str, tuple[float, float]]:
    arms = BernoulliArms(["control", "new"], RATES)
    settings = Settings(n_arms=2, baseline=0.040, mde=0.005)
    out = {}
    for name in POLICIES:
        cpu = time.process_time()
        started = time.perf_counter()
        run = run_policy(
            make_policy(name, settings),
            arms,
            horizon=requests,
            seeds=seeds,
            batch_size=batch,
            seed=0,
            stop=stop,
        )
        out[name] = (
            time.perf_counter() - started,
            float(run.best_traffic.mean() / requests),
            time.process_time() - cpu,
        )
    return out


def time_mabwiser(seeds: int, requests: int, batch: int) -> dict[str, tuple[float, float]]:
    from mabwiser.mab import MAB, LearningPolicy

    policies = {
        "ab": LearningPolicy.Random(),
        "epsilon-greedy": LearningPolicy.EpsilonGreedy(epsilon=0.1),
        "ucb1": LearningPolicy.UCB1(alpha=1.0),
        "thompson": LearningPolicy.ThompsonSampling(),
    }
    out = {}
    for name, learning_policy in policies.items():
        started = time.perf_counter()
        best = 0
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            mab = MAB([0, 1], learning_policy, seed=seed)
            mab.fit([0, 1], [0, 0])  # MABWiser must be fitted before predict
            for _ in range(0, requests, batch):
                decisions = [mab.predict() for _ in range(batch)]
                rewards = (rng.random(batch) < RATES[decisions]).astype(int)
                mab.partial_fit(decisions, rewards)
                best += sum(decisions)
        out[name] = (time.perf_counter() - started, best / (seeds * requests))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--mabwiser-seeds", type=int, default=2)
    parser.add_argument("--mabwiser-requests", type=int, default=20_000)
    parser.add_argument("--skip-mabwiser", action="store_true")
    args = parser.parse_args()

    time_rtml(2, 1_000, args.batch_size, stop=False)  # warm-up: imports, first-call costs
    load_before = os.getloadavg()
    no_stop = time_rtml(args.seeds, args.requests, args.batch_size, stop=False)
    default = time_rtml(args.seeds, args.requests, args.batch_size, stop=True)
    mab = None
    if not args.skip_mabwiser:
        try:
            mab = time_mabwiser(args.mabwiser_seeds, args.mabwiser_requests, args.batch_size)
        except ImportError:
            print("mabwiser not installed (pip install 'rtml[bench]'); skipping", file=sys.stderr)
    load_after = os.getloadavg()

    total_no_stop = sum(v[0] for v in no_stop.values())
    total_default = sum(v[0] for v in default.values())
    cpu_no_stop = sum(v[2] for v in no_stop.values())
    unit = args.seeds * args.requests
    print("## rtml evaluate (bench/bench_evaluate.py)\n")
    print(
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
        f"{platform.machine()}, Python {platform.python_version()}, numpy {np.__version__}; "
        f"load average before/after {load_before[0]:.1f}/{load_after[0]:.1f} "
        "(machine shared with other engineers' jobs)."
    )
    print(
        f"\nArms 0.040 vs 0.045, {args.seeds} seeds x {args.requests:,} requests, "
        f"batch {args.batch_size} requests per policy update.\n"
    )
    print(
        "| policy | no-stop (s) | default (s) | best-arm share (no-stop) | MABWiser us/request | rtml us/request (no-stop) | ratio |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in POLICIES:
        t_ns, share, _ = no_stop[name]
        t_d = default[name][0]
        ours = t_ns / unit * 1e6
        if mab and name in mab:
            theirs = mab[name][0] / (args.mabwiser_seeds * args.mabwiser_requests) * 1e6
            cells = f"{theirs:.2f} | {ours:.4f} | {theirs / ours:,.0f}x"
        else:
            cells = f"– | {ours:.4f} | –"
        print(f"| {name} | {t_ns:.2f} | {t_d:.2f} | {share:.3f} | {cells} |")
    verdict = "meets" if total_no_stop <= 30 else "MISSES"
    print(
        f"| **total** | **{total_no_stop:.1f}** | **{total_default:.1f}** | | | | |\n\n"
        f"Target <= 30 s for {len(POLICIES)} policies: no-stop {total_no_stop:.1f} s wall, "
        f"{cpu_no_stop:.1f} s CPU ({verdict} it); default {total_default:.1f} s wall."
    )
    if mab:
        print(
            f"MABWiser measured on {args.mabwiser_seeds} seeds x {args.mabwiser_requests:,} requests "
            "per policy (predict per request, partial_fit per batch); it has no top-two Thompson; "
            "`ab` = its Random policy."
        )


if __name__ == "__main__":
    main()
