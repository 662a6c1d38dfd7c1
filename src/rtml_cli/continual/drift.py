"""Distribution drift between a reference and a current sample, feature by feature.

Every feature is reduced to a :class:`FeatureDistribution` — the same bins counted
on both sides (numeric: quantile bins of the reference; categorical: the
reference's most frequent categories plus an ``(other)`` bin), with the raw
numeric values kept for the KS test. Each :class:`Detector` (``continual.detectors``:
``psi``, ``ks``, ``js``, the registry ``DETECTORS``) scores one such distribution and says
whether it drifted. On very large samples the KS test flags even negligible shifts; read
the statistic, or rely on psi/js there.

Histograms are computed by Polars (group-by counts, quantiles) and numpy
(``searchsorted`` + ``bincount``) over whole columns, never row by row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.continual.detectors import (
    DETECTORS,
    PSI_FLOOR,
    PSI_MODERATE,
    PSI_SIGNIFICANT,
    Detector,
    DetectorResult,
    FeatureDistribution,
    JSDetector,
    KSDetector,
    PSIDetector,
    make_detectors,
    parse_detectors,
)
from rtml_cli.errors import DataError, UsageError

OTHER = "(other)"
NULL = "(null)"
# Popularity histograms: about one bin per 25 current views. PSI's sampling noise is roughly
# bins / views, so this keeps it near 0.04 at any traffic level, well under 0.2, while a
# shift in what people view still moves mass between the top items and the tail.
VIEWS_PER_BIN = 25
MIN_BINS, MAX_BINS = 10, 1000


# The detectors live in continual.detectors (light to import: the CLI reads DETECTORS for its
# defaults); they are re-exported here, where callers have always found them.
__all__ = [
    "DETECTORS",
    "PSI_FLOOR",
    "PSI_MODERATE",
    "PSI_SIGNIFICANT",
    "Detector",
    "DetectorResult",
    "DriftReport",
    "FeatureDistribution",
    "FeatureDrift",
    "JSDetector",
    "KSDetector",
    "PSIDetector",
    "PopularityReport",
    "auto_bins",
    "categorical_distribution",
    "compare_files",
    "make_detectors",
    "numeric_distribution",
    "parse_detectors",
    "popularity_counts",
    "popularity_drift",
    "popularity_report",
    "popularity_windows",
    "scan_events",
    "score_distribution",
    "time_range",
]


def auto_bins(current_views: int) -> int:
    """Bins for a popularity histogram of ``current_views`` views (see ``VIEWS_PER_BIN``)."""
    return int(min(max(current_views // VIEWS_PER_BIN, MIN_BINS), MAX_BINS))


# --- building distributions ---------------------------------------------------------------


def numeric_distribution(
    name: str, reference: np.ndarray, current: np.ndarray, *, bins: int = 10
) -> FeatureDistribution:
    """Quantile bins of the reference (ties merged); values outside its range fall in the ends.

    ``reference``/``current`` are float arrays in which NaN marks a missing value; missing
    values get their own ``(null)`` bin when either side has any.
    """
    if bins < 2:
        raise UsageError(f"--bins must be at least 2, got {bins}")
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    ref_ok, cur_ok = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if len(ref_ok):
        edges = np.unique(np.quantile(ref_ok, np.linspace(0, 1, bins + 1)[1:-1]))
    else:
        edges = (
            np.unique(np.quantile(cur_ok, np.linspace(0, 1, bins + 1)[1:-1]))
            if len(cur_ok)
            else np.array([])
        )
    n_bins = len(edges) + 1
    ref_counts = np.bincount(np.searchsorted(edges, ref_ok, side="left"), minlength=n_bins)
    cur_counts = np.bincount(np.searchsorted(edges, cur_ok, side="left"), minlength=n_bins)
    labels = _interval_labels(edges)
    ref_null, cur_null = len(ref) - len(ref_ok), len(cur) - len(cur_ok)
    if ref_null or cur_null:
        labels.append(NULL)
        ref_counts = np.append(ref_counts, ref_null)
        cur_counts = np.append(cur_counts, cur_null)
    return FeatureDistribution(
        name,
        "numeric",
        tuple(labels),
        ref_counts.astype(np.int64),
        cur_counts.astype(np.int64),
        ref_ok,
        cur_ok,
    )


def _interval_labels(edges: np.ndarray) -> list[str]:
    if len(edges) == 0:
        return ["(-inf, inf)"]
    fmt = "{:.6g}".format
    labels = [f"(-inf, {fmt(edges[0])}]"]
    labels += [f"({fmt(a)}, {fmt(b)}]" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    labels.append(f"({fmt(edges[-1])}, inf)")
    return labels


def categorical_distribution(
    name: str,
    reference_counts: dict[Any, int],
    current_counts: dict[Any, int],
    *,
    max_categories: int = 100,
) -> FeatureDistribution:
    """Bins = the reference's ``max_categories`` most frequent categories + ``(other)``.

    ``(other)`` collects the reference's tail and every category the reference never
    saw, so a new category shows up as mass moving into ``(other)``. ``None`` is its
    own ``(null)`` category. Ties are broken by the category's text, so bins are
    deterministic.
    """
    if max_categories < 1:
        raise UsageError(f"--max-categories must be at least 1, got {max_categories}")
    ranked = sorted(reference_counts.items(), key=lambda kv: (-kv[1], _label(kv[0])))
    kept = [key for key, count in ranked[:max_categories] if count > 0]
    kept_set = set(kept)
    ref = [reference_counts[k] for k in kept]
    cur = [current_counts.get(k, 0) for k in kept]
    ref_other = sum(c for k, c in reference_counts.items() if k not in kept_set)
    cur_other = sum(c for k, c in current_counts.items() if k not in kept_set)
    labels = [_label(k) for k in kept]
    if ref_other or cur_other:
        labels.append(OTHER)
        ref.append(ref_other)
        cur.append(cur_other)
    if not labels:
        labels, ref, cur = [OTHER], [0], [0]
    cur_total = sum(current_counts.values())
    unseen = sum(c for k, c in current_counts.items() if k not in reference_counts)
    return FeatureDistribution(
        name,
        "categorical",
        tuple(labels),
        np.asarray(ref, dtype=np.int64),
        np.asarray(cur, dtype=np.int64),
        unseen_share=unseen / cur_total if cur_total else 0.0,
    )


def _label(key: Any) -> str:
    return NULL if key is None else str(key)


# --- comparing two Parquet samples ----------------------------------------------------------


@dataclass
class FeatureDrift:
    name: str
    kind: str
    dtype: str
    reference_rows: int
    current_rows: int
    results: dict[str, DetectorResult]
    unseen_share: float = 0.0
    top_bins: list[dict[str, Any]] = field(default_factory=list)  # bins that moved most

    @property
    def drift(self) -> bool:
        return any(r.drift for r in self.results.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.name,
            "feature_kind": self.kind,
            "dtype": self.dtype,
            "reference_rows": self.reference_rows,
            "current_rows": self.current_rows,
            "drift": self.drift,
            "unseen_share": self.unseen_share if self.kind == "categorical" else None,
            "detectors": {name: r.to_dict() for name, r in self.results.items()},
            "top_bins": self.top_bins,
        }


@dataclass
class DriftReport:
    reference: dict[str, Any]
    current: dict[str, Any]
    features: list[FeatureDrift]
    detectors: dict[str, float]  # name -> threshold
    skipped: list[dict[str, str]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def drift(self) -> bool:
        return any(f.drift for f in self.features)

    @property
    def drifted(self) -> list[str]:
        return [f.name for f in self.features if f.drift]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "drifted_features": self.drifted,
            "reference": self.reference,
            "current": self.current,
            "detectors": self.detectors,
            "params": self.params,
            "features": [f.to_dict() for f in self.features],
            "skipped": self.skipped,
        }


def score_distribution(
    dist: FeatureDistribution, detectors: Sequence[Detector], *, dtype: str = "", top: int = 3
) -> FeatureDrift:
    """Run every detector on one feature and keep the bins whose share moved most."""
    results = {d.name: d.score(dist) for d in detectors}
    ref, cur = dist.shares()
    order = np.argsort(-np.abs(cur - ref), kind="stable")[:top]
    top_bins = [
        {"bin": dist.bins[i], "reference_share": float(ref[i]), "current_share": float(cur[i])}
        for i in order
        if abs(cur[i] - ref[i]) > 0
    ]
    return FeatureDrift(
        dist.name,
        dist.kind,
        dtype,
        dist.reference_rows,
        dist.current_rows,
        results,
        dist.unseen_share,
        top_bins,
    )


def _scan(files: list[Path], what: str):
    import polars as pl

    try:
        frame = pl.scan_parquet([str(f) for f in files])
        schema = frame.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{what} cannot be read as Parquet: {str(exc).splitlines()[0]}") from None
    return frame, schema


def _is_identifier(name: str) -> bool:
    """``id``, ``user_id``, ``sessionId``: keys, not features (their drift is new traffic)."""
    lower = name.lower()
    return lower == "id" or lower.endswith("_id") or (name.endswith("Id") and len(name) > 2)


def _kind(dtype) -> str | None:
    if dtype.is_numeric():
        return "numeric"
    if dtype.is_temporal():
        return "temporal"
    if dtype.is_nested():
        return None
    return "categorical"  # strings, categoricals, enums, booleans, binary


def compare_files(
    reference: str | Path,
    current: str | Path,
    *,
    features: Sequence[str] | None = None,
    bins: int = 10,
    max_categories: int = 100,
    detectors: Sequence[Detector] | None = None,
) -> DriftReport:
    """Compare the columns REFERENCE and CURRENT share (Parquet files, globs or directories).

    Without ``features``, every common numeric and categorical column is compared;
    timestamps, identifiers (``id``, ``*_id``) and nested columns are skipped (listed in
    ``skipped``) — a timestamp always "drifts" between two periods, and new sessions and
    users are new traffic, not drift (item popularity is ``popularity_drift``'s job). Named ``features`` may include timestamps,
    compared as numbers (epoch microseconds).
    """

    from rtml_cli.fsutil import parquet_files

    if bins < 2:
        raise UsageError(f"--bins must be at least 2, got {bins}")
    if max_categories < 1:
        raise UsageError(f"--max-categories must be at least 1, got {max_categories}")
    detectors = list(detectors) if detectors is not None else make_detectors()
    ref_files = parquet_files(reference, what="REFERENCE")
    cur_files = parquet_files(current, what="CURRENT")
    ref_scan, ref_schema = _scan(ref_files, f"REFERENCE {reference}")
    cur_scan, cur_schema = _scan(cur_files, f"CURRENT {current}")
    common = [c for c in ref_schema.names() if c in cur_schema]
    if not common:
        raise DataError(
            f"REFERENCE and CURRENT have no columns in common (reference: "
            f"{', '.join(ref_schema.names()[:8]) or 'none'}; current: "
            f"{', '.join(cur_schema.names()[:8]) or 'none'})"
        )
    chosen, skipped = _choose_columns(ref_schema, cur_schema, common, features)
    ref_n = _count_rows(ref_scan, "REFERENCE")
    cur_n = _count_rows(cur_scan, "CURRENT")
    if ref_n == 0:
        raise DataError(f"REFERENCE {reference} has no rows")
    if cur_n == 0:
        raise DataError(f"CURRENT {current} has no rows")

    out = [
        score_distribution(
            _distribution(ref_scan, cur_scan, ref_schema, name, kind, bins, max_categories),
            detectors,
            dtype=str(ref_schema[name]),
        )
        for name, kind in chosen
    ]
    return DriftReport(
        reference={"path": str(reference), "files": len(ref_files), "rows": ref_n},
        current={"path": str(current), "files": len(cur_files), "rows": cur_n},
        features=out,
        detectors={d.name: d.threshold for d in detectors},
        skipped=skipped,
        params={"bins": bins, "max_categories": max_categories, "psi_floor": PSI_FLOOR},
    )


def _choose_columns(
    ref_schema: Any, cur_schema: Any, common: list[str], features: Sequence[str] | None
) -> tuple[list[tuple[str, str]], list[dict[str, str]]]:
    """The columns to compare with their kind, and the ones skipped with the reason why."""
    if features:
        missing = [f for f in features if f not in ref_schema or f not in cur_schema]
        if missing:
            raise UsageError(
                f"--features: {', '.join(missing)} not in both inputs; common columns: "
                f"{', '.join(common)}"
            )
        names = list(dict.fromkeys(features))
    else:
        names = common
    skipped: list[dict[str, str]] = []
    chosen: list[tuple[str, str]] = []
    problems = []
    for name in names:
        kind, cur_kind = _kind(ref_schema[name]), _kind(cur_schema[name])
        if kind is None or cur_kind is None:
            skipped.append({"feature": name, "reason": f"nested type {ref_schema[name]}"})
        elif kind != cur_kind:
            problems.append(
                f"{name}: {ref_schema[name]} in REFERENCE but {cur_schema[name]} in CURRENT"
            )
        elif kind == "temporal" and not features:
            skipped.append({"feature": name, "reason": "timestamp (name it in --features)"})
        elif _is_identifier(name) and not features:
            skipped.append({"feature": name, "reason": "identifier (name it in --features)"})
        else:
            chosen.append((name, "numeric" if kind == "temporal" else kind))
    if problems:
        raise DataError("REFERENCE and CURRENT disagree on column types", problems=problems)
    if not chosen:
        raise DataError(
            "no comparable columns: every common column is a timestamp, an identifier or "
            "nested (name timestamps and identifiers in --features to compare them)"
        )
    return chosen, skipped


def _distribution(ref_scan, cur_scan, ref_schema, name: str, kind: str, bins, max_categories):
    """One column's reference and current distributions (histogram bins or category counts)."""
    import polars as pl

    if kind != "numeric":
        return categorical_distribution(
            name,
            _value_counts(ref_scan, name),
            _value_counts(cur_scan, name),
            max_categories=max_categories,
        )
    expr = pl.col(name)
    if ref_schema[name].is_temporal():
        expr = expr.dt.epoch("us")
    expr = expr.cast(pl.Float64).fill_null(float("nan"))
    ref_vals = _collect(ref_scan.select(expr), "REFERENCE").to_series().to_numpy()
    cur_vals = _collect(cur_scan.select(expr), "CURRENT").to_series().to_numpy()
    return numeric_distribution(name, ref_vals, cur_vals, bins=bins)


def _collect(lazy, what: str):
    import polars as pl

    try:
        return lazy.collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise DataError(f"{what} cannot be read: {str(exc).splitlines()[0]}") from None


def _count_rows(scan, what: str) -> int:
    import polars as pl

    return int(_collect(scan.select(pl.len()), what).item())


def _value_counts(scan, name: str) -> dict[Any, int]:
    import polars as pl

    frame = _collect(
        scan.select(pl.col(name).cast(pl.String).alias("key")).group_by("key").len(), name
    )
    return dict(zip(frame["key"].to_list(), frame["len"].to_list(), strict=True))


# --- event-log features: item / category popularity between two windows --------------------


def popularity_counts(
    events, start: datetime, end: datetime, *, by: str = "item_id", event: str | None = "view"
) -> dict[Any, int]:
    """How many ``event`` rows each ``by`` value (item or category) got in ``[start, end)``.

    ``events`` is a Polars DataFrame or LazyFrame with ``ts`` and ``by`` columns;
    ``event=None`` counts every event type.
    """
    import polars as pl

    lazy = events.lazy() if isinstance(events, pl.DataFrame) else events
    cond = (pl.col("ts") >= start) & (pl.col("ts") < end)
    if event is not None:
        cond = cond & (pl.col("event") == event)
    frame = lazy.filter(cond).group_by(by).len().collect()
    return dict(zip(frame[by].to_list(), frame["len"].to_list(), strict=True))


def popularity_drift(
    events,
    reference: tuple[datetime, datetime],
    current: tuple[datetime, datetime],
    *,
    by: str = "item_id",
    event: str | None = "view",
    detectors: Sequence[Detector] | None = None,
    max_categories: int | None = None,
) -> FeatureDrift:
    """Did the share of views per item (or category) move between two windows of one log?

    This is the input-distribution signal a recommender's retraining trigger watches:
    when what people look at changes, yesterday's embeddings and popularity lists age.
    ``max_categories=None`` picks the number of bins from the current window's volume
    (:func:`auto_bins`). Raises ``DataError`` when a window holds no events.
    """
    detectors = list(detectors) if detectors is not None else make_detectors()
    ref = popularity_counts(events, *reference, by=by, event=event)
    cur = popularity_counts(events, *current, by=by, event=event)
    what = f"{event} events" if event else "events"
    for label, counts, (start, end) in (("reference", ref, reference), ("current", cur, current)):
        if not counts:
            raise DataError(
                f"the {label} window {start.isoformat()} – {end.isoformat()} holds no {what}"
            )
    bins = max_categories if max_categories is not None else auto_bins(sum(cur.values()))
    dist = categorical_distribution(f"{by} share", ref, cur, max_categories=bins)
    return score_distribution(dist, detectors, dtype="popularity")


def scan_events(events: str | Path, *, items: str | Path | None = None, by: str = "item_id"):
    """A LazyFrame over an events log (file, glob or directory) with a ``category`` column
    joined from ``items`` when ``by == "category"`` and the log has none.

    ``items`` defaults to ``items.parquet`` next to EVENTS (the sample world's layout).
    """
    import polars as pl

    from rtml_cli.fsutil import parquet_files

    files = parquet_files(events, what="EVENTS")
    lazy, schema = _scan(files, f"EVENTS {events}")
    missing = [c for c in ("ts", "item_id", "event") if c not in schema]
    if missing:
        raise DataError(
            f"EVENTS {events} lacks the column(s) {', '.join(missing)} of the events contract "
            "(see `rtml data contracts`)"
        )
    if not schema["ts"].is_temporal():
        raise DataError(f"EVENTS {events}: column ts is {schema['ts']}, expected a timestamp")
    if schema["ts"] == pl.Date:
        lazy = lazy.with_columns(pl.col("ts").cast(pl.Datetime("us")))
    if getattr(schema["ts"], "time_zone", None) is None:
        lazy = lazy.with_columns(pl.col("ts").dt.replace_time_zone("UTC"))
    if by != "category" or "category" in schema:
        return lazy
    if items is None:
        guess = Path(events).parent / "items.parquet" if Path(events).is_file() else None
        if guess is None or not guess.exists():
            raise UsageError(
                "--by category needs item categories: EVENTS has no category column; "
                "give --items ITEMS (a Parquet file with item_id and category)"
            )
        items = guess
    item_files = parquet_files(items, what="ITEMS")
    item_scan, item_schema = _scan(item_files, f"ITEMS {items}")
    if "item_id" not in item_schema or "category" not in item_schema:
        raise DataError(f"ITEMS {items} needs the columns item_id and category")
    if item_schema["item_id"] != schema["item_id"]:
        item_scan = item_scan.with_columns(pl.col("item_id").cast(schema["item_id"]))
    return lazy.join(
        item_scan.select("item_id", pl.col("category").cast(pl.String)), on="item_id", how="left"
    )


def time_range(lazy) -> tuple[datetime, datetime] | None:
    """(first, last) event time of a LazyFrame with ``ts``, or None when it has no rows."""
    import polars as pl

    frame = _collect(
        lazy.select(pl.col("ts").min().alias("a"), pl.col("ts").max().alias("b")), "EVENTS"
    )
    first, last = frame.row(0)
    return None if first is None else (first, last)


# --- `rtml drift popularity`: the windows of one log ----------------------------------------

POPULARITY_BY = {"item": "item_id", "category": "category"}


def _check_lengths(current: timedelta, reference: timedelta) -> None:
    if current.total_seconds() <= 0 or reference.total_seconds() <= 0:
        raise UsageError("--current and --reference must be positive durations, e.g. 1d and 7d")


def popularity_windows(
    span: tuple[datetime, datetime], end: datetime | None, current: timedelta, reference: timedelta
) -> tuple[tuple[datetime, datetime], tuple[datetime, datetime]]:
    """(reference, current) windows: ``current`` long ending at ``end`` (default: just after
    the last event of ``span``), the ``reference`` window just before it. Windows outside
    the data are a ``UsageError``."""
    _check_lengths(current, reference)
    stop = end if end is not None else span[1] + timedelta(microseconds=1)
    cur_win = (stop - current, stop)
    ref_win = (stop - current - reference, stop - current)
    if cur_win[0] > span[1] or ref_win[1] <= span[0] or ref_win[0] > span[1]:
        raise UsageError(
            f"the windows {ref_win[0].isoformat()} – {stop.isoformat()} fall outside the data "
            f"({span[0].isoformat()} – {span[1].isoformat()}): change --end"
        )
    return ref_win, cur_win


@dataclass
class PopularityReport:
    """``rtml drift popularity``: the drift of one log's view shares and its two windows."""

    by: str  # item | category
    result: FeatureDrift
    reference_window: tuple[datetime, datetime]
    current_window: tuple[datetime, datetime]
    detectors: dict[str, float]  # name -> threshold

    @property
    def drift(self) -> bool:
        return self.result.drift

    def to_dict(self) -> dict[str, Any]:
        payload = self.result.to_dict()
        # "detectors" holds each detector's result (statistic, threshold, drift) as in
        # `rtml drift compare`; the thresholds in force are also listed on their own
        payload.update(
            reference_window=list(self.reference_window),
            current_window=list(self.current_window),
            thresholds=self.detectors,
        )
        return payload


def popularity_report(
    events: str | Path,
    *,
    current: timedelta,
    reference: timedelta,
    detectors: Sequence[Detector],
    end: datetime | None = None,
    by: str = "item",
    event: str | None = "view",
    items: str | Path | None = None,
    max_categories: int | None = None,
) -> PopularityReport:
    """Share of ``event`` rows per item or category: the last ``current`` window (ending at
    ``end``) vs the ``reference`` window before it (``event=None``: every event type)."""
    if by not in POPULARITY_BY:
        raise UsageError(f"--by must be item or category, got {by!r}")
    _check_lengths(current, reference)
    column = POPULARITY_BY[by]
    lazy = scan_events(events, items=items, by=column)
    span = time_range(lazy)
    if span is None:
        raise DataError(f"EVENTS {events} has no rows")
    ref_win, cur_win = popularity_windows(span, end, current, reference)
    result = popularity_drift(
        lazy,
        ref_win,
        cur_win,
        by=column,
        event=event,
        detectors=detectors,
        max_categories=max_categories,
    )
    thresholds = {d.name: d.threshold for d in detectors}
    return PopularityReport(by, result, ref_win, cur_win, thresholds)
