"""``rtml evaluate ope --plot``: each estimate with its 95% CI, and the ground truth when known."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.evaluation.ope.job import OpeResult


def plot_ope(result: OpeResult, path: str | Path) -> None:
    """A PNG: each estimate with its 95% CI, and the ground truth when known (the chart
    ``rtml report`` shows, drawn by ``rtml_cli.plotting.ope_figure``)."""
    from rtml_cli.plotting import ope_figure, save_png

    save_png(ope_figure(result.to_dict()), path)
