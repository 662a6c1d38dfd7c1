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


def user_features(totals, top, as_of: datetime):
    """Per known user: activity counts, recency and top-3 categories of their weighted history.

    ``top`` is :func:`user_top_categories` (None when there is no catalogue).
    """
    import polars as pl

    frame = totals.with_columns(
        ((pl.lit(as_of) - pl.col("last_seen")).dt.total_microseconds() / 86_400e6).alias(
            "recency_days"
        )
    )
    if top is not None:
        frame = frame.join(top, on="user_id", how="left")
    else:
        frame = frame.with_columns(pl.lit(None, dtype=pl.List(pl.Utf8)).alias("top_categories"))
    return frame.sort("user_id")


HISTORY = "_history"  # the DuckDB table of per (user, item) histories (user_items_table)


def user_items_table(con, as_of: datetime, half_life_s: float, since: datetime | None, old=None):
    """DuckDB table ``_history``: :func:`user_items`, sorted by user_id, item_id.

    A full run builds it without leaving DuckDB (it has a row per user and item: it grows
    with the events); a warm start merges the previous run's history as
    :func:`user_items` does and hands the result to DuckDB.
    """
    if old is None:
        weight = exact_sum_sql(f"{EVENT_WEIGHT_SQL} * {decay_sql(as_of, half_life_s)}")
        con.sql(
            f"""CREATE OR REPLACE TEMP TABLE {HISTORY} AS
                SELECT user_id, item_id, {weight} AS weight,
                       bool_or(event = 'purchase') AS purchased, max(ts) AS last_ts
                FROM ev WHERE user_id IS NOT NULL AND {_since(since)}
                GROUP BY user_id, item_id ORDER BY user_id, item_id"""
        )
        return
    frame = user_items(con, as_of, half_life_s, since, old)
    con.register("_history_frame", frame)
    try:
        con.sql(
            f"""CREATE OR REPLACE TEMP TABLE {HISTORY} AS
                SELECT user_id, item_id, weight, purchased, CAST(last_ts AS TIMESTAMP) AS last_ts
                FROM _history_frame"""
        )
    finally:
        con.unregister("_history_frame")


def write_user_items(con, path) -> None:
    """``state/user_items.parquet`` from table ``_history`` (what a warm start reads back)."""
    from rtml_cli.duck import sql_str

    con.sql(
        f"""COPY (SELECT user_id, item_id, weight, purchased,
                         CAST(last_ts AS TIMESTAMPTZ) AS last_ts FROM {HISTORY})
            TO {sql_str(str(path))} (FORMAT PARQUET)"""
    )


def user_top_categories(con, categories, active=None):
    """Per user in ``_history``: the 3 categories of most history weight (ties by name).

    ``categories`` maps item_id -> category; ``active`` (a frame of user_id) limits it
    to those users.
    """
    con.register("_categories", categories.select("item_id", "category"))
    scope = ""
    if active is not None:
        con.register("_top_users", active.select("user_id"))
        scope = "SEMI JOIN _top_users a ON h.user_id = a.user_id"
    try:
        return con.sql(
            f"""SELECT user_id,
                       list(category ORDER BY weight DESC, category)[1:3] AS top_categories
                FROM (SELECT h.user_id, c.category, {exact_sum_sql("h.weight")} AS weight
                      FROM {HISTORY} h {scope} JOIN _categories c ON h.item_id = c.item_id
                      WHERE c.category IS NOT NULL GROUP BY h.user_id, c.category)
                GROUP BY user_id"""
        ).pl()
    finally:
        con.unregister("_categories")
        if active is not None:
            con.unregister("_top_users")


# Float sums over events are taken as integers (the value times 2**60, 128-bit): exact, so
# the result is the same in any order DuckDB's parallel aggregation adds them (a float sum
# is not, and identical runs must write identical files); 2**60 keeps every bit of a float32
# weight above 2**-37 and of a float64 weight above 2**-8.
FIXED_POINT = 2**60
_SCALE = f"CAST({FIXED_POINT} AS DOUBLE)"


def exact_sum_sql(value: str) -> str:
    """SQL for the sum of the DOUBLE expression ``value``, exact and independent of order."""
    return f"CAST(sum(CAST(({value}) * {_SCALE} AS HUGEINT)) AS DOUBLE) / {_SCALE}"


def cooccurrence_sql(
    con,
    as_of: datetime,
    half_life_s: float,
    since: datetime | None,
    n_items: int,
    *,
    window: int,
    max_session_len: int,
):
    """Session co-occurrence counts in DuckDB from table ``idx``: (CSR matrix, events read).

    The same counts as :func:`rtml_cli.batch.embeddings.cooccurrence` over the events
    sorted by session then time (consecutive repeats collapsed, each session capped at its
    first ``max_session_len`` items, a pair weighted by the time decay of its later event),
    but the per-event work (sort, windows, pairs) stays in DuckDB, which spills past its
    memory cap: Python only receives the item x item counts.
    """
    import scipy.sparse as sp

    leads = ", ".join(
        f"lead(item_idx, {lag}) OVER w AS b{lag}, lead(w, {lag}) OVER w AS w{lag}"
        for lag in range(1, window + 1)
    )
    lags = range(1, window + 1)
    # a DuckDB table: a join against a registered frame costs about twice as much
    con.sql("CREATE OR REPLACE TEMP TABLE _cidx AS SELECT item_id, item_idx FROM idx")
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _cooc_directed AS
            WITH ordered AS (
                SELECT hash(e.session_id) AS s, e.ts, i.item_idx,
                       CAST({decay_sql(as_of, half_life_s)} AS FLOAT) AS w,
                       lag(i.item_idx) OVER (PARTITION BY hash(e.session_id)
                                             ORDER BY e.ts, i.item_idx) AS prev
                FROM ev e JOIN _cidx i ON e.item_id = i.item_id
                WHERE {_since(since)}),
            walk AS (
                SELECT item_idx AS a, row_number() OVER w - 1 AS pos, {leads}
                FROM ordered WHERE prev IS NULL OR prev <> item_idx
                WINDOW w AS (PARTITION BY s ORDER BY ts, item_idx)),
            pairs AS (
                SELECT a, pos, unnest([{", ".join(f"b{k}" for k in lags)}]) AS b,
                       unnest([{", ".join(f"w{k}" for k in lags)}]) AS w,
                       unnest([{", ".join(str(k) for k in lags)}]) AS lag
                FROM walk WHERE pos < {int(max_session_len) - 1})
            SELECT a, b, sum(CAST(CAST(w AS DOUBLE) * {_SCALE} AS HUGEINT)) AS v
            FROM pairs
            WHERE b IS NOT NULL AND a <> b AND pos + lag < {int(max_session_len)}
            GROUP BY a, b"""
    )
    try:
        frame = con.sql(
            f"""SELECT i, j, CAST(sum(v) AS DOUBLE) / {_SCALE} AS c FROM (
                    SELECT a AS i, b AS j, v FROM _cooc_directed
                    UNION ALL SELECT b, a, v FROM _cooc_directed)
                GROUP BY i, j ORDER BY i, j"""
        ).fetchnumpy()
        events = con.sql(
            "SELECT count(*) FROM ev e SEMI JOIN _cidx i ON e.item_id = i.item_id "
            f"WHERE {_since(since)}"
        ).fetchall()[0][0]
    finally:
        con.sql("DROP TABLE IF EXISTS _cooc_directed")
        con.sql("DROP TABLE IF EXISTS _cidx")
    rows = np.asarray(frame["i"], dtype=np.int64)
    indptr = np.zeros(n_items + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_items), out=indptr[1:])
    counts = sp.csr_matrix(
        (
            np.asarray(frame["c"], dtype=np.float64),
            np.asarray(frame["j"], dtype=np.int32),
            indptr.astype(np.int32) if indptr[-1] < 2**31 else indptr,
        ),
        shape=(n_items, n_items),
    )
    del frame, rows
    return counts, int(events)
