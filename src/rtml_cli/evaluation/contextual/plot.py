"""``rtml evaluate contextual --plot``: each policy's cumulative regret over requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_cli.evaluation.contextual.job import ContextualResult
from rtml_cli.evaluation.contextual.logged import LogReplayResult


def plot_contextual(result: ContextualResult, path: str | Path) -> None:
    """A PNG of each policy's cumulative regret over requests."""
    from rtml_cli.plotting import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in result.online:
        xs = np.linspace(0, run.requests, len(run.regret_curve) + 1)[1:]
        ax.plot(xs, run.regret_curve, label=run.policy)
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(f"{result.n_items} items, k={result.k}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    save_png(fig, path)


def plot_contextual_log(result: LogReplayResult, path: str | Path) -> None:
    """A PNG of each policy's replayed CTR over the log (cumulative, matched events)."""
    from rtml_cli.plotting import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in result.policies:
        xs = [p["events"] for p in run.ctr_curve]
        ys = [p["ctr"] for p in run.ctr_curve]
        ax.plot(xs, ys, label=f"{run.policy} ({run.matched_events:,} matched)")
    ax.set_xlabel("log events replayed")
    ax.set_ylabel(f"CTR of matched events ({result.method})")
    ax.set_title(f"{result.n_events:,} events, {result.n_actions} actions")
    ax.legend(loc="upper right")
    fig.tight_layout()
    save_png(fig, path)
