"""``rtml evaluate contextual --plot``: each policy's cumulative regret over requests."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.evaluation.contextual.job import ContextualResult
from rtml_cli.evaluation.contextual.logged import LogReplayResult


def plot_contextual(result: ContextualResult, path: str | Path) -> None:
    """A PNG of each policy's cumulative regret over requests (``plotting.contextual_figure``,
    the chart ``rtml report`` shows)."""
    from rtml_cli.plotting import contextual_figure, save_png

    save_png(contextual_figure(result.to_dict()), path)


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
