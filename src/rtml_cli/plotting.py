"""The one way rtml draws a chart: for every ``--plot`` PNG and for ``rtml report``.

matplotlib is optional (``pip install 'rtml[plot]'``): :func:`pyplot` loads it with the Agg
backend (no display needed, same pixels everywhere) and turns its absence into the one
``UsageError`` every ``--plot`` shows. :func:`save_png` writes through
``fsutil.atomic_path`` so a failed plot never leaves a half-written file under the name;
:func:`to_svg` renders the same figure as an SVG document for the report.

One style for every chart (:func:`figure`): the colour-blind-safe Okabe-Ito palette, series
told apart by colour *and* line style (so a grey printout still separates them), a
reference mark (a known shift, a budget, a true value) always black or grey with its own
line style and never a series colour, so no colour means two things in one chart. An
interval is drawn where the data has one: a band around a line, a bar around a point.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rtml_cli.errors import UsageError
from rtml_cli.fsutil import PNG_OUTPUT, atomic_path, check_output

# The shared style: the resolution of every rtml chart (a figure may keep its own dpi).
DPI = 110
INSTALL_HINT = "--plot needs matplotlib, which is not installed; run: pip install 'rtml[plot]'"

#: Okabe & Ito (2008), "Color Universal Design": distinguishable with every common form of
#: colour blindness. Series take them in this order; yellow is left out (too light on white).
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "green": "#009E73",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "sky": "#56B4E9",
    "yellow": "#F0E442",
    "black": "#000000",
}
SERIES_COLOURS = tuple(
    OKABE_ITO[n] for n in ("blue", "orange", "green", "vermillion", "purple", "sky")
)
SERIES_STYLES = ("-", "--", "-.", ":")
#: Reference marks: never a series colour.
REFERENCE = "#000000"
SECONDARY = "#767676"  # grey with 4.5:1 contrast on white
INTERVAL_ALPHA = 0.18


_STYLE: dict[str, Any] = {
    "font.size": 9.5,
    "font.family": "sans-serif",
    "axes.titlesize": 10.5,
    "axes.labelsize": 9.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#dddddd",
    "grid.linewidth": 0.6,
    "axes.edgecolor": "#444444",
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "svg.fonttype": "none",  # text stays text: smaller files, readable by screen readers
    "svg.hashsalt": "rtml",  # the same figure gives the same SVG
}


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a ``UsageError`` when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(INSTALL_HINT) from None
    plt.rcParams.update(_STYLE)  # type: ignore[arg-type]
    return plt


def available() -> bool:
    """Whether matplotlib can be loaded (the report draws its charts only then)."""
    try:
        pyplot()
    except UsageError:
        return False
    return True


def check_png_target(path: str | os.PathLike[str], *, option: str = "--plot") -> None:
    """Before any work: matplotlib must be installed (else the install hint, exit 2) and the
    ``--plot`` path must be one rtml may replace (else exit 73)."""
    pyplot()
    check_output(path, PNG_OUTPUT, option=option)


def figure(ncols: int = 1, *, width: float = 7.0, height: float = 3.6) -> tuple[Any, Any]:
    """A new figure in rtml's style: ``(fig, ax)``, or ``(fig, [ax, …])`` when ``ncols > 1``."""
    plt = pyplot()
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), constrained_layout=True)
    for ax in list(axes) if ncols > 1 else [axes]:
        _style_axes(ax)
    return fig, axes


def _style_axes(ax: Any) -> None:
    for key, value in (("top", False), ("right", False)):
        ax.spines[key].set_visible(value)
    ax.grid(True, color="#dddddd", linewidth=0.6)
    ax.set_axisbelow(True)


def series_style(index: int) -> dict[str, Any]:
    """Colour and line style of the ``index``-th series: 6 colours, then a new line style."""
    return {
        "color": SERIES_COLOURS[index % len(SERIES_COLOURS)],
        "linestyle": SERIES_STYLES[(index // len(SERIES_COLOURS)) % len(SERIES_STYLES)],
    }


@dataclass
class Series:
    """One line of a chart: its points and, where the data has one, a 95% interval."""

    label: str
    x: Sequence[Any]
    y: Sequence[float | None]
    low: Sequence[float | None] | None = None
    high: Sequence[float | None] | None = None


def _nan(values: Sequence[float | None]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def lines(ax: Any, series: Sequence[Series], *, markers: bool = True) -> None:
    """Each series as a line (with its interval as a band of the same colour)."""
    for index, line in enumerate(series):
        style = series_style(index)
        ax.plot(
            list(line.x),
            _nan(line.y),
            marker="o" if markers else None,
            markersize=3.5,
            linewidth=1.6,
            label=line.label,
            **style,
        )
        if line.low is not None and line.high is not None:
            ax.fill_between(
                list(line.x),
                _nan(line.low),
                _nan(line.high),
                color=style["color"],
                alpha=INTERVAL_ALPHA,
                linewidth=0,
            )


def points(
    ax: Any,
    labels: Sequence[str],
    values: Sequence[float | None],
    low: Sequence[float | None] | None = None,
    high: Sequence[float | None] | None = None,
    *,
    horizontal: bool = False,
) -> None:
    """One point per label with its interval as a bar (estimates, medians with ranges)."""
    import numpy as np

    v = np.array(_nan(values))
    err = None
    if low is not None and high is not None:
        err = np.nan_to_num(np.vstack([v - np.array(_nan(low)), np.array(_nan(high)) - v]))
        err = np.clip(err, 0, None)
    where = range(len(labels))
    colour = SERIES_COLOURS[0]
    if horizontal:
        ax.errorbar(v, list(where), xerr=err, fmt="o", capsize=4, color=colour)
        ax.set_yticks(list(where), list(labels))
        ax.invert_yaxis()
    else:
        ax.errorbar(list(where), v, yerr=err, fmt="o", capsize=4, color=colour)
        ax.set_xticks(list(where), list(labels))


def bars(
    ax: Any,
    labels: Sequence[str],
    values: Sequence[float | None],
    low: Sequence[float | None] | None = None,
    high: Sequence[float | None] | None = None,
) -> None:
    """Horizontal bars (one colour: the bars are one quantity), intervals as error bars."""
    import numpy as np

    v = np.array(_nan(values))
    err = None
    if low is not None and high is not None:
        err = np.clip(
            np.nan_to_num(np.vstack([v - np.array(_nan(low)), np.array(_nan(high)) - v])), 0, None
        )
    where = list(range(len(labels)))
    ax.barh(where, v, xerr=err, color=SERIES_COLOURS[0], capsize=4, error_kw={"ecolor": REFERENCE})
    ax.set_yticks(where, list(labels))
    ax.invert_yaxis()
    ax.axvline(0, color=REFERENCE, linewidth=0.8)


def reference_line(
    ax: Any, value: Any, label: str | None, *, vertical: bool = False, style: str = "--"
) -> None:
    """A reference mark (black, its own line style): a known shift, a budget, a true value."""
    draw = ax.axvline if vertical else ax.axhline
    draw(value, color=REFERENCE, linestyle=style, linewidth=1.2, label=label)


def event_marks(ax: Any, times: Sequence[Any], label: str) -> None:
    """Grey dotted vertical lines (detector firings); one legend entry for all of them."""
    for index, when in enumerate(times):
        ax.axvline(
            when, color=SECONDARY, linestyle=":", linewidth=1.2, label=label if index == 0 else None
        )


def save_png(
    fig: Any,
    path: str | os.PathLike[str],
    *,
    dpi: float | str = DPI,
    option: str = "--plot",
) -> None:
    """Write ``fig`` as a PNG at ``path`` atomically, then close it (also on failure).

    ``dpi="figure"`` keeps the figure's own resolution.
    """
    plt = pyplot()
    try:
        with atomic_path(path, PNG_OUTPUT, option=option) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi)
    finally:
        plt.close(fig)


_SVG_PROLOGUE = re.compile(r"^.*?(?=<svg)", re.S)


def to_svg(fig: Any) -> str:
    """``fig`` as a standalone SVG document (no metadata, deterministic), then closed."""
    plt = pyplot()
    buffer = io.StringIO()
    try:
        fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": "rtml"})
    finally:
        plt.close(fig)
    text = _SVG_PROLOGUE.sub("", buffer.getvalue(), count=1)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + text


# ------------------------------------------------------------------ charts of rtml documents
# Each takes the JSON document a command prints (or the same dict in memory) and returns a
# figure; the command's --plot saves it as PNG, `rtml report` embeds it as SVG.


def wilson(successes: float, trials: float, z: float = 1.959964) -> tuple[float, float] | None:
    """The 95% Wilson score interval of a rate; None without trials."""
    if not trials:
        return None
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * ((p * (1 - p) / trials + z * z / (4 * trials * trials)) ** 0.5) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _timestamps(values: Sequence[Any]) -> list[Any]:
    from datetime import datetime

    return [datetime.fromisoformat(v) if isinstance(v, str) else v for v in values]


def retrain_figure(doc: dict[str, Any]) -> Any:
    """HR@K per step and schedule (95% Wilson band from each step's hits and requests), the
    known shift as a black dashed line, detector firings as grey dotted lines."""
    fig, ax = figure(width=8.0, height=3.8)
    series = []
    for row in doc["schedules"]:
        pts = [s for s in doc["steps"] if s["schedule"] == row["schedule"]]
        bands = [wilson(p.get("hits") or 0, p.get("requests") or 0) for p in pts]
        series.append(
            Series(
                row["schedule"],
                _timestamps([p["start"] for p in pts]),
                [p["hr"] for p in pts],
                [b[0] if b else None for b in bands],
                [b[1] if b else None for b in bands],
            )
        )
    lines(ax, series)
    fired = sorted(
        {c["time"] for c in doc.get("checks") or [] if c.get("fired")},
    )
    if fired:
        event_marks(ax, _timestamps(fired), "a drift trigger fired")
    if doc.get("shift_time"):
        reference_line(ax, _timestamps([doc["shift_time"]])[0], "known shift", vertical=True)
    ax.set_ylabel(f"HR@{doc['k']} of the next step (share of requests)")
    ax.set_xlabel("start of the step (UTC)")
    ax.set_title("Accuracy per step by retraining schedule (bands: 95% intervals)")
    ax.legend(loc="best")
    # (autofmt_xdate would warn under the constrained layout on matplotlib < 3.8)
    ax.tick_params(axis="x", labelrotation=30)
    for label in ax.get_xticklabels():
        label.set_horizontalalignment("right")
    return fig


def retrain_cost_figure(doc: dict[str, Any]) -> Any:
    """Training time against HR@K per schedule (HR with its 95% Wilson interval)."""
    fig, ax = figure(width=7.0, height=3.4)
    for index, row in enumerate(doc["schedules"]):
        hits = sum(s.get("hits") or 0 for s in doc["steps"] if s["schedule"] == row["schedule"])
        band = wilson(hits, row.get("requests") or 0)
        err = None
        if band is not None and row.get("hr") is not None:
            err = [[max(row["hr"] - band[0], 0)], [max(band[1] - row["hr"], 0)]]
        ax.errorbar(
            [row.get("train_seconds") or 0.0],
            [row["hr"] if row.get("hr") is not None else float("nan")],
            yerr=err,
            fmt="os^Dv<>"[index % 7],
            capsize=4,
            color=series_style(index)["color"],
            label=row["schedule"],
        )
    ax.set_xlabel("training time over the period (seconds)")
    ax.set_ylabel(f"HR@{doc['k']} (share of requests)")
    ax.set_title("Cost vs accuracy per schedule")
    ax.legend(loc="best")
    return fig


def ope_figure(doc: dict[str, Any]) -> Any:
    """Each estimator's value with its 95% CI; the on-policy value (black dashed) when known,
    the logging policy's own value (grey dotted)."""
    from pathlib import Path

    fig, ax = figure(width=7.0, height=3.5)
    rows = doc["estimates"]
    points(
        ax,
        [e["estimator"] for e in rows],
        [e["value"] for e in rows],
        [e.get("ci_low") for e in rows],
        [e.get("ci_high") for e in rows],
    )
    if doc.get("ground_truth"):
        reference_line(ax, doc["ground_truth"]["value"], "on-policy value (its own log)")
    if doc.get("logged_value") is not None:
        ax.axhline(
            doc["logged_value"], color=SECONDARY, linestyle=":", label="logging policy's value"
        )
    ax.set_ylabel("estimated value (reward per event)")
    ax.set_xlabel("estimator (bars: 95% bootstrap CI)")
    ax.set_title(f"{doc['policy']['spec']} on {Path(str(doc['log'])).name}", fontsize=9)
    ax.legend(loc="best")
    return fig


def bandits_figure(doc: dict[str, Any], *, reward: str = "clicks") -> Any:
    """Cumulative regret and the best arm's traffic share over requests, per policy (means
    over the seeds, from each policy's ``curve``)."""
    fig, (left, right) = figure(2, width=9.0, height=3.8)
    runs = [p for p in doc["policies"] if p.get("curve")]
    lines(
        left,
        [Series(p["policy"], p["curve"]["requests"], p["curve"]["regret_mean"]) for p in runs],
        markers=False,
    )
    lines(
        right,
        [Series(p["policy"], p["curve"]["requests"], p["curve"]["best_arm_share"]) for p in runs],
        markers=False,
    )
    left.set(xlabel="requests served", ylabel=f"cumulative regret ({reward})")
    right.set(xlabel="requests served", ylabel="share of traffic to the best arm", ylim=(0, 1.02))
    left.legend(loc="best")
    arms = " vs ".join(a["arm"] for a in doc.get("arms", []))
    if arms:
        fig.suptitle(f"{arms}: mean over {doc.get('seeds')} runs x {doc.get('horizon'):,} requests")
    return fig


def decision_figure(doc: dict[str, Any]) -> Any:
    """Requests until each policy decided: the median over seeds, the bar from the 5th to the
    95th percentile."""
    fig, ax = figure(width=7.0, height=0.5 + 0.42 * len(doc["policies"]))
    rows = [p for p in doc["policies"] if p.get("requests_to_decision")]
    points(
        ax,
        [p["policy"] for p in rows],
        [p["requests_to_decision"].get("median") for p in rows],
        [p["requests_to_decision"].get("p5") for p in rows],
        [p["requests_to_decision"].get("p95") for p in rows],
        horizontal=True,
    )
    ax.set_xlabel("requests until a decision (median; bar: 5th-95th percentile over seeds)")
    ax.set_title("How long each evaluation takes to decide")
    return fig


def contextual_figure(doc: dict[str, Any]) -> Any:
    """Each contextual policy's cumulative regret (expected clicks lost) over requests."""
    import numpy as np

    fig, ax = figure(width=7.0, height=3.8)
    series = []
    for run in doc["online"]:
        curve = run.get("regret_curve") or []
        xs = np.linspace(0, run["requests"], len(curve) + 1)[1:].tolist()
        series.append(Series(run["policy"], xs, curve))
    lines(ax, series, markers=False)
    ax.set_xlabel("requests served")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(f"{doc['n_items']} items, k={doc['k']}")
    ax.legend(loc="upper left")
    return fig
