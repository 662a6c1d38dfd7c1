"""``--plot FILE.png``: cumulative regret and best-arm traffic share over time, per policy."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.errors import UsageError
from rtml_cli.fsutil import PNG_OUTPUT, atomic_path


def plot_runs(runs: list, path: str | Path, *, title: str = "") -> Path:
    """Write a two-panel PNG; needs matplotlib (``pip install 'rtml[plot]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib, which is not installed; run: pip install 'rtml[plot]'"
        ) from None
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
    with atomic_path(path, PNG_OUTPUT, option="--plot") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
