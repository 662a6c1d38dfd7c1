"""``rtml evaluate contextual --plot``: each policy's cumulative regret over requests."""

from __future__ import annotations

from pathlib import Path

from rtml_cli.evaluation.contextual.job import ContextualResult


def plot_contextual(result: ContextualResult, path: str | Path) -> None:
    """A PNG of each policy's cumulative regret over requests (``plotting.contextual_figure``,
    the chart ``rtml report`` shows)."""
    from rtml_cli.plotting import contextual_figure, save_png

    save_png(contextual_figure(result.to_dict()), path)
