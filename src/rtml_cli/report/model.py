"""What a report holds, independent of HTML or Markdown.

Every number a claim shows is a :class:`Num` that knows where it came from (``origin``): a
value read from an input (``("input", file, key, …)``), or an operation on other numbers
(``("diff", a, b)``, ``("ratio", a, b)``), or a statistic computed from RESULTS
(``("results", …)``, ``("bootstrap", …)``). A claim is a sequence of literal text, names
(:class:`Label`) and numbers, so a test can check that every number the verdict prints is
in the inputs or computed from them, and nothing else.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

#: How a number is printed, by what it is.
FORMATS = (
    "rate",
    "delta",
    "count",
    "percent",
    "ratio",
    "ms",
    "seconds",
    "hours",
    "value",
    "k",
    "tenths",
)


@dataclass(frozen=True)
class Num:
    """A number in the report, with how to print it and where it came from."""

    value: float
    fmt: str
    origin: tuple[Any, ...]

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise ValueError(f"unknown number format {self.fmt!r}")

    @property
    def text(self) -> str:
        return fmt_number(self.value, self.fmt)


@dataclass(frozen=True)
class Label:
    """A name in a sentence (strategy, policy, schedule, file): not a figure."""

    text: str


Part = str | Num | Label


def fmt_number(value: float, fmt: str) -> str:
    """The printed form of a figure (one place, so a test can re-derive it)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if fmt == "rate":
        return f"{value:.3f}"
    if fmt == "delta":
        return f"{value:+.3f}".replace("-", "\u2212")
    if fmt in ("count", "k"):
        return f"{round(value):,}"
    if fmt == "percent":
        return f"{value * 100:.0f}%"
    if fmt == "ratio":
        return f"{value:.2f}x"
    if fmt == "ms":
        return f"{value:.3g} ms" if abs(value) < 100 else f"{value:,.0f} ms"
    if fmt == "seconds":
        return f"{value:.3g} s" if abs(value) < 100 else f"{value:,.0f} s"
    if fmt == "tenths":
        return f"{value:,.1f}".replace("-", "\u2212")
    if fmt == "hours":
        return f"{value:g} h"
    return f"{value:.4g}"


@dataclass
class Claim:
    """One sentence of the verdict (or of a section), built from parts."""

    topic: str
    parts: list[Part]
    cannot_tell: bool = False
    weak: bool = False  # a warning attached (weak overlap, no interval)

    @property
    def text(self) -> str:
        return "".join(p if isinstance(p, str) else p.text for p in self.parts)

    @property
    def numbers(self) -> list[Num]:
        return [p for p in self.parts if isinstance(p, Num)]


@dataclass
class Table:
    caption: str
    columns: list[str]
    rows: list[list[str]]
    note: str = ""
    numeric: list[bool] = field(default_factory=list)


@dataclass
class Chart:
    """A plot: its SVG text (None when matplotlib is missing) and a text alternative."""

    name: str  # file stem, for --format md
    title: str
    alt: str
    svg: str | None


@dataclass
class Para:
    text: str
    kind: str = "text"  # text | missing (how to get a section) | warning


Block = Table | Chart | Para | Claim


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    subtitle: str
    verdict: list[Claim]
    sections: list[Section]
    notes: list[str] = field(default_factory=list)
