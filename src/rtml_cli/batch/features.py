"""Batch features in DuckDB SQL over the point-in-time view ``ev``.

All-time aggregates (totals, first/last seen, per-user item weights) are
mergeable, so a warm start adds the new events' aggregates to the previous
run's state; window counts (1d/7d/30d before as-of) are rolled forward from the
previous run's by adding the new events and subtracting the slices that left
each window, so a warm start reads O(new data) events, not the last 30 days.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np

from rtml_cli.batch.source import sql_ts

WINDOWS = {"1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
KINDS = {"views": "view", "carts": "cart", "purchases": "purchase"}
TOTALS = ("views_total", "carts_total", "purchases_total", "events_total")
EVENT_WEIGHT_SQL = "CASE event WHEN 'purchase' THEN 3.0 WHEN 'cart' THEN 2.0 ELSE 1.0 END"
POPULARITY_SQL = "views_7d + 2 * carts_7d + 4 * purchases_7d"


def utc(frame, *columns: str):
    """Mark DuckDB's naive-UTC timestamps as UTC."""
    import polars as pl

    return frame.with_columns(
        pl.col(c).dt.replace_time_zone("UTC") for c in columns if c in frame.columns
    )


def decay_sql(as_of: datetime, half_life_s: float) -> str:
    return f"pow(0.5, ({as_of.timestamp()!r} - epoch(ts)) / {half_life_s!r})"


def _since(since: datetime | None) -> str:
    return f"ts >= {sql_ts(since)}" if since is not None else "TRUE"


WINDOW_COLUMNS = tuple(f"{k}_{w}" for w in WINDOWS for k in KINDS)


def item_aggregates(con, as_of: datetime, since: datetime | None, previous=None):
    """Per item: window counts ending at as-of, and totals over events since ``since``.

    With ``previous`` (the warm-start run's item features, window counts ending at
    ``since``) the windows are rolled forward instead of re-read: see
    :func:`rolled_item_aggregates`.
    """
    if previous is not None and since is not None:
        return rolled_item_aggregates(con, as_of, since, previous)
    windows = []
    for wname, span in WINDOWS.items():
        for kname, event in KINDS.items():
            windows.append(
                f"count(*) FILTER (WHERE event = '{event}' AND ts >= {sql_ts(as_of - span)}) "
                f"AS {kname}_{wname}"
            )
    new = _since(since)
    totals = [
        f"count(*) FILTER (WHERE event = '{event}' AND {new}) AS {kname}_total"
        for kname, event in KINDS.items()
    ]
    scope = "TRUE"
    if since is not None:
        scope = f"ts >= {sql_ts(min(since, as_of - WINDOWS['30d']))}"
    frame = con.sql(
        f"""SELECT item_id, {", ".join(windows)}, {", ".join(totals)},
                   count(*) FILTER (WHERE {new}) AS events_total,
                   min(ts) FILTER (WHERE {new}) AS first_seen,
                   max(ts) FILTER (WHERE {new}) AS last_seen
            FROM ev WHERE {scope} GROUP BY item_id"""
    ).pl()
    return utc(frame, "first_seen", "last_seen")


def rolled_item_aggregates(con, as_of: datetime, since: datetime, previous):
    """Window counts rolled from the previous run's, reading only O(new days) of events.

    For a window of span w: count[as_of - w, as_of) = count[since - w, since)
    (the previous run's value) + count[since, as_of) - count[since - w, as_of - w).
    Exact integer arithmetic, so the result equals a full re-read; the events are
    read in four time slices of the length of the new data (the new events and
    the three slices leaving the 1d/7d/30d windows), which Parquet row-group
    statistics let DuckDB skip to. Items only in ``previous`` keep their counts
    (minus what left the windows); totals and first/last seen cover the new events.
    """
    import polars as pl

    parts = [f"SELECT item_id, event, ts, 'new' AS part FROM ev WHERE ts >= {sql_ts(since)}"]
    for wname, span in WINDOWS.items():
        parts.append(
            f"SELECT item_id, event, ts, '{wname}' AS part FROM ev "
            f"WHERE ts >= {sql_ts(since - span)} AND ts < {sql_ts(as_of - span)}"
        )
    deltas = []
    for wname in WINDOWS:
        for kname, event in KINDS.items():
            deltas.append(
                f"count(*) FILTER (WHERE event = '{event}' AND part = 'new') "
                f"- count(*) FILTER (WHERE event = '{event}' AND part = '{wname}') "
                f"AS {kname}_{wname}"
            )
    totals = [
        f"count(*) FILTER (WHERE event = '{event}' AND part = 'new') AS {kname}_total"
        for kname, event in KINDS.items()
    ]
    frame = con.sql(
        f"""SELECT item_id, {", ".join(deltas)}, {", ".join(totals)},
                   count(*) FILTER (WHERE part = 'new') AS events_total,
                   min(ts) FILTER (WHERE part = 'new') AS first_seen,
                   max(ts) FILTER (WHERE part = 'new') AS last_seen
            FROM ({" UNION ALL ".join(parts)}) GROUP BY item_id"""
    ).pl()
    frame = utc(frame, "first_seen", "last_seen")
    before = previous.select("item_id", *WINDOW_COLUMNS)
    merged = frame.join(before, on="item_id", how="full", coalesce=True, suffix="_prev")
    return merged.select(
        "item_id",
        *[
            (pl.col(c).fill_null(0) + pl.col(f"{c}_prev").fill_null(0)).cast(pl.Int64).alias(c)
            for c in WINDOW_COLUMNS
        ],
        *[pl.col(c).fill_null(0).cast(pl.Int64) for c in TOTALS],
        "first_seen",
        "last_seen",
    ).sort("item_id")


def merge_item_totals(new, old):
    """Add a previous run's all-time item totals to this run's (warm start)."""
    import polars as pl

    if old is None:
        return new
    old = old.select("item_id", *TOTALS, "first_seen", "last_seen")
    merged = new.join(old, on="item_id", how="full", coalesce=True, suffix="_old")
    window_cols = [f"{k}_{w}" for w in WINDOWS for k in KINDS]
    return merged.select(
        "item_id",
        *[pl.col(c).fill_null(0) for c in window_cols],
        *[(pl.col(c).fill_null(0) + pl.col(f"{c}_old").fill_null(0)).alias(c) for c in TOTALS],
        pl.min_horizontal("first_seen", "first_seen_old").alias("first_seen"),
        pl.max_horizontal("last_seen", "last_seen_old").alias("last_seen"),
    )


def item_features(index, aggregates, catalogue):
    """The published item features, one row per item_idx, with popularity rank."""
    import polars as pl

    frame = index.join(aggregates, on="item_id", how="left")
    counts = [c for c in aggregates.columns if c.endswith(("_1d", "_7d", "_30d", "_total"))]
    frame = frame.with_columns(pl.col(c).fill_null(0).cast(pl.Int64) for c in counts)
    if catalogue is not None:
        frame = frame.with_columns(pl.col("item_id").cast(pl.Utf8).alias("item_key")).join(
            catalogue, on="item_key", how="left"
        )
        frame = frame.drop("item_key")
    else:
        frame = frame.with_columns(
            pl.lit(None, dtype=pl.Utf8).alias("category"),
            pl.lit(None, dtype=pl.Utf8).alias("title"),
        )

    def rate(num: str, den: str, name: str):
        return pl.when(pl.col(den) > 0).then(pl.col(num) / pl.col(den)).otherwise(None).alias(name)

    frame = frame.with_columns(
        rate("carts_30d", "views_30d", "cart_rate_30d"),
        rate("purchases_30d", "views_30d", "conversion_rate_30d"),
        rate("purchases_total", "views_total", "conversion_rate_total"),
        pl.sql_expr(POPULARITY_SQL).cast(pl.Float64).alias("popularity_score"),
    )
    frame = frame.sort(
        # ties by item_id, not item_idx: the rank must not depend on the run lineage
        ["popularity_score", "events_total", "item_id"],
        descending=[True, True, False],
    ).with_columns(pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("popularity_rank"))
    frame = frame.sort("item_idx")
    lead = ["item_idx", "item_id", "category", "title"]
    return frame.select(*lead, pl.exclude(lead))


def user_aggregates(con, since: datetime | None):
    """Per user with events since ``since``: counts and first/last seen, sorted by user_id.

    Sorted because a parallel GROUP BY emits groups in any order, and the state
    written from this must be byte-identical across identical runs.
    """
    frame = con.sql(
        f"""SELECT user_id, count(*) AS events,
                   count(*) FILTER (WHERE event = 'view') AS views,
                   count(*) FILTER (WHERE event = 'cart') AS carts,
                   count(*) FILTER (WHERE event = 'purchase') AS purchases,
                   count(DISTINCT session_id) AS sessions,
                   min(ts) AS first_seen, max(ts) AS last_seen
            FROM ev WHERE user_id IS NOT NULL AND {_since(since)} GROUP BY user_id
            ORDER BY user_id"""
    ).pl()
    return utc(frame, "first_seen", "last_seen")


def merge_user_totals(new, old):
    import polars as pl

    if old is None:
        return new
    sums = ("events", "views", "carts", "purchases", "sessions")
    merged = new.join(old, on="user_id", how="full", coalesce=True, suffix="_old")
    return merged.select(
        "user_id",
        *[(pl.col(c).fill_null(0) + pl.col(f"{c}_old").fill_null(0)).alias(c) for c in sums],
        pl.min_horizontal("first_seen", "first_seen_old").alias("first_seen"),
        pl.max_horizontal("last_seen", "last_seen_old").alias("last_seen"),
    ).sort("user_id")  # a full join's row order is not fixed


def user_items(con, as_of: datetime, half_life_s: float, since: datetime | None, old=None):
    """Per (user, item): time-decayed engagement weight, purchased flag, last time.

    Sorted by user_id, item_id. A warm start decays the previous run's weights to
    the new as-of and merges only the (user, item) pairs the new events touch;
    the other rows are carried over (purchases are excluded from recommendations).
    """
    import polars as pl

    fresh = utc(
        con.sql(
            # ordered sum: a parallel float sum adds in a different order each run, and the
            # last bit of weight changed between identical runs (state/user_items.parquet)
            f"""SELECT user_id, item_id,
                       sum({EVENT_WEIGHT_SQL} * {decay_sql(as_of, half_life_s)}
                           ORDER BY ts, event) AS weight,
                       bool_or(event = 'purchase') AS purchased, max(ts) AS last_ts
                FROM ev WHERE user_id IS NOT NULL AND {_since(since)} GROUP BY ALL
                ORDER BY user_id, item_id"""
        ).pl(),
        "last_ts",
    )
    if old is None:
        return fresh
    if since is None:
        raise ValueError("user_items: a previous history (old) needs since, its run's as-of")
    factor = 0.5 ** ((as_of - since).total_seconds() / half_life_s)
    decay = pl.col("weight") * factor
    old = old.select(fresh.columns)
    # split by user (a small hash set of active users), not by (user, item) pair: the
    # rows of users without new events are carried over in order, and the two sorted
    # parts are merged in one linear pass instead of re-sorting the whole history
    is_active = pl.col("user_id").is_in(fresh["user_id"].unique().implode())
    old = old.with_columns(is_active.alias("_active"))
    carried = old.filter(~pl.col("_active")).drop("_active")
    touched = old.filter(pl.col("_active")).drop("_active")
    merged = (
        pl.concat([touched.with_columns(decay), fresh])
        .group_by("user_id", "item_id")
        .agg(pl.col("weight").sum(), pl.col("purchased").any(), pl.col("last_ts").max())
        .select(fresh.columns)
        .sort("user_id", "item_id")
    )
    return carried.with_columns(decay).merge_sorted(merged, ["user_id", "item_id"])


def user_features(totals, history, categories, as_of: datetime):
    """Per known user: activity counts, recency and top-3 categories of their weighted history.

    ``categories`` maps item_id -> category (None when there is no catalogue).
    """
    import polars as pl

    frame = totals.with_columns(
        ((pl.lit(as_of) - pl.col("last_seen")).dt.total_microseconds() / 86_400e6).alias(
            "recency_days"
        )
    )
    if categories is not None:
        top = (
            history.select("user_id", "item_id", "weight")
            .join(categories, on="item_id", how="inner")
            .filter(pl.col("category").is_not_null())
            .group_by("user_id", "category")
            .agg(pl.col("weight").sum())
            .sort(["user_id", "weight", "category"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True)
            .agg(pl.col("category").head(3).alias("top_categories"))
        )
        frame = frame.join(top, on="user_id", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.List(pl.Utf8)).alias("top_categories"))
    return frame.sort("user_id")


def session_arrays(con, as_of: datetime, half_life_s: float, since: datetime | None):
    """(session key, item_idx, decay weight) sorted by session then time, from table ``idx``."""
    frame = con.sql(
        f"""SELECT hash(e.session_id) AS s, i.item_idx,
                   CAST({decay_sql(as_of, half_life_s)} AS FLOAT) AS w
            FROM ev e JOIN idx i ON e.item_id = i.item_id
            WHERE {_since(since)}
            ORDER BY s, e.ts, i.item_idx"""
    ).fetchnumpy()
    return (
        np.asarray(frame["s"]),
        np.asarray(frame["item_idx"], dtype=np.int64),
        np.asarray(frame["w"], dtype=np.float32),
    )
