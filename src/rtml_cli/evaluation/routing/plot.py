"""``--plot FILE.png``: cumulative regret and best-arm traffic share over time, per policy."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.evaluation.routing.runner import PolicyRun


def plot_report(report: dict, runs: list[PolicyRun], path: str | Path) -> Path:
    """The ``rtml evaluate bandits --plot`` chart of an evaluation, titled by its arms (the
    chart ``rtml report`` shows, drawn by ``rtml_cli.plotting.bandits_figure`` from the
    report's curves)."""
    from rtml_cli.plotting import bandits_figure, save_png

    path = Path(path)
    save_png(bandits_figure(report, reward=_reward_unit(report)), path)
    return path


def plot_runs(runs: list[PolicyRun], path: str | Path, *, title: str = "") -> Path:
    """Write the two-panel PNG of raw runs at full resolution; needs matplotlib."""
    from rtml_cli.plotting import bandits_figure, save_png

    doc = {
        "policies": [
            {
                "policy": run.policy,
                "curve": {
                    "requests": run.curve_requests.tolist(),
                    "regret_mean": run.curve_regret.tolist(),
                    "best_arm_share": run.curve_best_share.tolist(),
                },
            }
            for run in runs
        ]
    }
    fig = bandits_figure(doc)
    if title:
        fig.suptitle(title)
    path = Path(path)
    save_png(fig, path)
    return path


def _reward_unit(report: dict) -> str:
    """Planning mode counts clicks; a replay's reward is a hit of the next item."""
    if report.get("mode") == "results":
        return f"{report.get('reward', 'reward')} of the next item"
    return "clicks"
