"""Shared state of one report build: the inputs, the options, the bootstrap, the charts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rtml_cli.report.inputs import Document, Inputs
from rtml_cli.report.model import Chart, Num
from rtml_cli.report.stats import Estimate, SessionBootstrap


@dataclass
class Options:
    """What the user chose: ``rtml report --budget-ms --bootstrap --seed --title``."""

    title: str = "Batch to online: migration report"
    budget_ms: float = 100.0
    bootstrap: int = 1000
    seed: int = 0
    charts: bool = True
    command: str | None = None  # the report's own command line, for the appendix
    # --hit-to-click: the share of hits@K that would become clicks (an assumption the user
    # states); without it the report shows no click figure
    hit_to_click: float | None = None


@dataclass
class Context:
    inputs: Inputs
    options: Options
    _bootstrap: SessionBootstrap | None = field(default=None, init=False)

    # ------------------------------------------------------------------------ numbers
    def file_index(self, path: Any) -> int:
        for index, item in enumerate(self.inputs.files):
            if item.path == path:
                return index
        raise KeyError(path)

    def num(self, document: Document, keys: tuple[Any, ...], fmt: str) -> Num | None:
        """The number at ``keys`` in ``document`` (None when absent or null)."""
        value: Any = document.doc
        for key in keys:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return None
        if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return Num(float(value), fmt, ("input", self.file_index(document.path), *keys))

    def option(self, name: str, fmt: str) -> Num:
        return Num(float(getattr(self.options, name)), fmt, ("option", name))

    # ----------------------------------------------------------------------- bootstrap
    @property
    def bootstrap(self) -> SessionBootstrap | None:
        results = self.inputs.results
        if results is None or self.options.bootstrap <= 0:
            return None
        if self._bootstrap is None:
            self._bootstrap = SessionBootstrap(
                results.frame, n=self.options.bootstrap, seed=self.options.seed
            )
        return self._bootstrap

    def interval(self, estimate: Estimate, spec: tuple[Any, ...], fmt: str) -> tuple[Num, Num]:
        """The bounds of ``estimate`` as numbers whose origin says how to recompute them."""
        assert estimate.low is not None and estimate.high is not None
        return (
            Num(estimate.low, fmt, ("bootstrap", "low", *spec)),
            Num(estimate.high, fmt, ("bootstrap", "high", *spec)),
        )

    # -------------------------------------------------------------------------- charts
    def chart(self, name: str, title: str, alt: str, make: Callable[[], Any]) -> Chart:
        """A chart drawn by ``make()`` (a matplotlib figure), or its text only without
        matplotlib."""
        if not self.options.charts:
            return Chart(name, title, alt, None)
        from rtml_cli.plotting import to_svg

        return Chart(name, title, alt, to_svg(make()))


def diff(a: Num, b: Num, fmt: str = "delta") -> Num:
    return Num(a.value - b.value, fmt, ("diff", a, b))


def ratio(a: Num, b: Num, fmt: str = "ratio") -> Num | None:
    if not b.value:
        return None
    return Num(a.value / b.value, fmt, ("ratio", a, b))


def scaled(a: Num, factor: float, fmt: str) -> Num:
    return Num(a.value * factor, fmt, ("scale", a, factor))
