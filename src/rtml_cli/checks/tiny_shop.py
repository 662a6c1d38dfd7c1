"""A tiny shop and a hand-built precompute run: what the strategy contract runs on.

``tiny_events`` makes sessions that walk through category bundles; ``write_run`` writes
a valid precompute run directory (manifest with format_version, Annoy index, every
Parquet file with the documented columns) from the events before ``as_of``. Built by
hand (not by ``rtml precompute``) so the online checks and tests need no other stage.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import polars as pl

from rtml_cli.batch.artifacts import FORMAT_VERSION, OUTPUT_FILES, SESSION_FILES, run_id_for
from rtml_cli.batch.publish import checksums
from rtml_cli.batch.sessions import SessionParams, build_session_tables

T0 = datetime(2024, 3, 1, tzinfo=timezone.utc)
AS_OF = T0 + timedelta(days=3)


def tiny_events(
    *,
    n_items: int = 60,
    n_sessions: int = 500,
    days: int = 4,
    n_users: int = 40,
    seed: int = 0,
    bursts: tuple[tuple[int, float, float, float], ...] = (),
) -> pl.DataFrame:
    """Sessions of 2-8 views in one bundle (two adjacent categories of 10 items each).

    ``bursts``: (item, start hour, duration in hours, share): while a burst runs, that
    share of all views go to its item (a site-wide trend only a stream can see).
    """
    rng = np.random.default_rng(seed)
    n_cats = n_items // 10
    pop = 1.0 / np.arange(1, 11) ** 1.1
    rows = []
    for s in range(n_sessions):
        start = T0 + timedelta(seconds=float(rng.uniform(0, days * 86_400 - 3_600)))
        anonymous = rng.random() < 0.3
        user = None if anonymous else f"u{int(rng.integers(n_users)):03d}"
        bundle = int(rng.integers(n_cats // 2))
        cats = (2 * bundle, 2 * bundle + 1)
        t = start
        for _ in range(int(rng.integers(2, 9))):
            cat = cats[int(rng.random() < 0.5)]
            item = cat * 10 + int(rng.choice(10, p=pop / pop.sum()))
            t = t + timedelta(seconds=float(rng.uniform(5, 120)))
            hours = (t - T0).total_seconds() / 3600
            for burst_item, begin, length, share in bursts:
                if begin <= hours < begin + length and rng.random() < share:
                    item = burst_item
            rows.append((t, user, f"s{s:05d}", item, "view"))
            if rng.random() < 0.15:
                rows.append((t + timedelta(seconds=2), user, f"s{s:05d}", item, "cart"))
    frame = pl.DataFrame(
        rows,
        schema={
            "ts": pl.Datetime("us", "UTC"),
            "user_id": pl.String,
            "session_id": pl.String,
            "item_id": pl.Int64,
            "event": pl.String,
        },
        orient="row",
    )
    return frame.sort("ts")


def write_run(root: Path, events: pl.DataFrame, as_of: datetime = AS_OF, *, dim: int = 8) -> Path:
    """A published precompute run under ``root`` built from events strictly before ``as_of``."""
    from annoy import AnnoyIndex

    past = events.filter(pl.col("ts") < as_of)
    item_ids = np.sort(events["item_id"].unique().to_numpy())
    n = len(item_ids)
    idx = {int(v): i for i, v in enumerate(item_ids)}
    codes = np.array([idx[int(v)] for v in past["item_id"].to_list()])
    sess = past["session_id"].rle_id().to_numpy() if past.height else np.zeros(0, int)
    # co-occurrence within sessions → log counts → SVD embeddings
    order = np.argsort(past["session_id"].to_numpy(), kind="stable")
    sess = np.unique(past["session_id"].to_numpy()[order], return_inverse=True)[1]
    codes = codes[order]
    onehot = np.zeros((sess.max() + 1 if len(sess) else 0, n))
    np.add.at(onehot, (sess, codes), 1.0)
    co = (onehot > 0).T.astype(float) @ (onehot > 0).astype(float)
    np.fill_diagonal(co, 0)
    u, s, _ = np.linalg.svd(np.log1p(co))
    emb = (u[:, :dim] * np.sqrt(s[:dim])).astype(np.float32)
    emb += np.random.default_rng(1).normal(scale=1e-3, size=emb.shape).astype(np.float32)

    run = root / "runs" / run_id_for(as_of)
    run.mkdir(parents=True)
    np.save(run / "item_embeddings.npy", emb)
    index = AnnoyIndex(dim, "angular")
    for i in range(n):
        index.add_item(i, emb[i].tolist())
    index.set_seed(1)
    index.build(10)
    index.save(str(run / "items.ann"))
    pl.DataFrame({"item_idx": np.arange(n), "item_id": item_ids}).write_parquet(
        run / "item_index.parquet"
    )
    windows: dict[str, np.ndarray] = {}
    for kind in ("view", "cart", "purchase"):
        for days in (1, 7, 30):
            window = past.filter(
                (pl.col("event") == kind) & (pl.col("ts") >= as_of - timedelta(days=days))
            )
            counts = np.zeros(n)
            np.add.at(counts, np.searchsorted(item_ids, window["item_id"].to_numpy()), 1)
            windows[f"{kind}s_{days}d"] = counts
    views = windows["views_30d"]
    rank = np.empty(n, dtype=np.int64)
    rank[np.lexsort((np.arange(n), -views))] = np.arange(1, n + 1)
    feats = {
        "item_id": item_ids,
        "category": [f"c{int(i) // 10}" for i in item_ids],
        **windows,
        "conversion_rate_30d": (windows["carts_30d"] + 0.1) / (views + 10),
        "popularity_rank": rank,
    }
    pl.DataFrame(feats).write_parquet(run / "item_features.parquet")
    users = past.filter(pl.col("user_id").is_not_null()).group_by("user_id").len("n_events")
    users.sort("user_id").write_parquet(run / "user_features.parquet")
    # item-item neighbours by co-occurrence
    nb = []
    for i in range(n):
        top = [j for j in np.lexsort((np.arange(n), -co[i])) if j != i and co[i, j] > 0][:10]
        nb += [
            (int(item_ids[i]), int(item_ids[j]), float(co[i, j]), r + 1) for r, j in enumerate(top)
        ]
    pl.DataFrame(
        nb, schema=["item_id", "neighbor_id", "score", "rank"], orient="row"
    ).write_parquet(run / "item_neighbors.parquet")
    popular_order = np.lexsort((np.arange(n), -views))
    pl.DataFrame(
        {
            "item_id": item_ids[popular_order],
            "rank": np.arange(1, n + 1),
            "score": views[popular_order],
        }
    ).write_parquet(run / "popular.parquet")
    # batch recs: the user's most viewed categories' popular items
    recs = []
    for user, items in (
        past.filter(pl.col("user_id").is_not_null())
        .group_by("user_id")
        .agg("item_id")
        .sort("user_id")
        .iter_rows()
    ):
        cats = np.bincount([idx[int(i)] // 10 for i in items], minlength=n // 10 + 1)
        score = cats[np.arange(n) // 10] * 100 + views
        user_top = [j for j in np.lexsort((np.arange(n), -score))][:10]
        recs += [(user, int(item_ids[j]), r + 1, float(score[j])) for r, j in enumerate(user_top)]
    pl.DataFrame(recs, schema=["user_id", "item_id", "rank", "score"], orient="row").write_parquet(
        run / "batch_recs.parquet"
    )
    write_session_tables(run, past, item_ids)
    manifest = {
        "format_version": FORMAT_VERSION,
        "as_of": as_of.isoformat(),
        "mode": "full",
        "params": {"dim": dim, **SessionParams().as_params()},
        "outputs": checksums(run, [*OUTPUT_FILES, *SESSION_FILES]),
    }
    (run / "manifest.json").write_text(json.dumps(manifest))
    (root / "latest").symlink_to(Path("runs") / run.name)
    return run


def write_session_tables(
    run: Path, past: pl.DataFrame, item_ids: np.ndarray, params: SessionParams | None = None
) -> None:
    """V-SKNN's session tables and the sequential rules of ``past`` (item_idx = position in
    ``item_ids``), built by the function ``rtml precompute`` uses (``batch.sessions``), into
    ``run``."""
    from rtml_cli.duck import connect

    con = connect()
    try:
        con.register("_past", past)
        con.sql(
            "CREATE VIEW ev AS SELECT CAST(ts AS TIMESTAMP) AS ts, user_id, session_id, "
            "item_id, event FROM _past"
        )
        index = pl.DataFrame({"item_idx": np.arange(len(item_ids)), "item_id": item_ids})
        totals = past.group_by("item_id").len("events_total")
        build_session_tables(
            con, index, totals, run, since=None, previous=None, params=params or SessionParams()
        )
    finally:
        con.close()
