"""``rtml evaluate ope --plot``: each estimate with its 95% CI, and the ground truth when known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_cli.evaluation.ope.job import OpeResult


def plot_ope(result: OpeResult, path: str | Path) -> None:
    """A PNG: each estimate with its 95% CI, and the ground truth when known."""
    from rtml_cli.plotting import pyplot, save_png

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [e["estimator"] for e in result.estimates]
    values = np.array([e["value"] for e in result.estimates])
    lo = np.array([e["ci_low"] for e in result.estimates])
    hi = np.array([e["ci_high"] for e in result.estimates])
    err = np.vstack([values - lo, hi - values])
    ax.errorbar(range(len(names)), values, yerr=np.nan_to_num(err), fmt="o", capsize=4)
    if result.ground_truth is not None:
        ax.axhline(result.ground_truth["value"], color="tab:red", ls="--", label="on-policy value")
        ax.legend(loc="best")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("estimated value")
    ax.set_title(f"{result.policy['spec']} on {Path(result.log).name}")
    fig.tight_layout()
    save_png(fig, path)
