"""``--plot FILE.png``: cumulative regret and best-arm traffic share over time, per policy."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.evaluation.routing.runner import PolicyRun


def plot_report(report: dict, runs: list[PolicyRun], path: str | Path) -> Path:
    """The ``rtml evaluate bandits --plot`` chart of an evaluation, titled by its arms."""
    arms = " vs ".join(a["arm"] for a in report["arms"])
    title = f"{arms}: {report['seeds']} runs x {report['horizon']:,} requests"
    return plot_runs(runs, path, title=title)


def plot_runs(runs: list[PolicyRun], path: str | Path, *, title: str = "") -> Path:
    """Write a two-panel PNG; needs matplotlib (``pip install 'rtml[plot]'``)."""
    from rtml_cli.plotting import pyplot, save_png

    plt = pyplot()
    path = Path(path)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for run in runs:
        left.plot(run.curve_requests, run.curve_regret, label=run.policy)
        right.plot(run.curve_requests, run.curve_best_share, label=run.policy)
    left.set(xlabel="requests", ylabel="cumulative regret (mean over seeds)")
    right.set(xlabel="requests", ylabel="share of traffic to the best arm so far", ylim=(0, 1.02))
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    save_png(fig, path)
    return path
