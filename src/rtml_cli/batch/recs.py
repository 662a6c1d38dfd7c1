"""Stage-1 batch recommendations: item-item CF over each known user's weighted history.

score(user, j) = sum over history items i of weight(user, i) * sim(i, j), with
``sim`` the top-N item-item CF neighbours. Purchased items are excluded; a list
shorter than K is topped up from the popularity list (score 0).

:func:`write_batch_recs` reads the histories from DuckDB and writes the lists to Parquet
``USER_CHUNK`` users at a time (a row group each), so memory is bounded by the items and
one chunk of users, not by the number of users or events.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rtml_cli.batch.embeddings import top_n_per_row_padded

USER_CHUNK = 10_000
PROFILE_ITEMS = 10  # a user's heaviest history items that vote for candidates


def _ranks(rows: np.ndarray) -> np.ndarray:
    """1-based rank of each entry within its row (entries sorted by row, best first)."""
    return np.arange(rows.size) - np.searchsorted(rows, rows, side="left") + 1


def _chunk_lists(profile, bought_chunk, sim, pad_pool, pool_pos, top_k: int):
    """(row, item_idx, score) of the top-K lists of a chunk of users, sorted by row.

    CF scores first (best first), then the popularity top-up (score 0) for short lists.
    """
    n_rows = profile.shape[0]
    scores = (profile @ sim).tocsr()
    scores = (scores - scores.multiply(bought_chunk)).tocsr()
    scores.eliminate_zeros()
    r, c, s = top_n_per_row_padded(scores, top_k)
    counts = np.bincount(r, minlength=n_rows)
    # top up short lists from the popularity list, skipping listed and bought items
    need = np.flatnonzero(counts < top_k)
    pr, pc = np.empty(0, np.int64), np.empty(0, np.int64)
    if need.size and pad_pool.size:
        need_row = np.full(n_rows, -1, dtype=np.int64)
        need_row[need] = np.arange(need.size)
        taken = np.zeros((need.size, pad_pool.size), dtype=bool)
        bought_coo = bought_chunk.tocoo()
        for tu, ti in ((r, c), (bought_coo.row, bought_coo.col)):
            nr, pp = need_row[tu], pool_pos[ti]
            ok = (nr >= 0) & (pp >= 0)
            taken[nr[ok], pp[ok]] = True
        valid = ~taken
        slot = np.cumsum(valid, axis=1)
        chosen = valid & (slot <= (top_k - counts[need])[:, None])
        rows_idx, pool_idx = np.nonzero(chosen)
        pr, pc = need[rows_idx], pad_pool[pool_idx]
    all_r = np.concatenate([r.astype(np.int64), pr.astype(np.int64)])
    all_c = np.concatenate([c, pc])
    all_s = np.concatenate([s, np.zeros(pr.size)])
    # both parts are sorted by row (CF best first, then popular in popularity order):
    # a stable merge by row keeps that order
    order = np.argsort(all_r, kind="stable")
    return all_r[order], all_c[order], all_s[order]


def _pad_pool(popular_idx: np.ndarray, n_items: int, top_k: int):
    pad_pool = popular_idx[: min(popular_idx.size, 2 * top_k + 50)]
    pool_pos = np.full(n_items, -1, dtype=np.int64)
    pool_pos[pad_pool] = np.arange(pad_pool.size)
    return pad_pool, pool_pos


def write_batch_recs(
    con,
    index,
    sim: sp.csr_matrix,
    popular_idx: np.ndarray,
    top_k: int,
    path,
    *,
    active=None,
    kept=None,
) -> int:
    """:func:`batch_recs` of the users in DuckDB table ``_history``, written to ``path``.

    ``active`` (a frame of user_id) limits the lists to those users; ``kept`` (lists
    carried over from a previous run) is written first. Returns the rows written.
    """
    import polars as pl
    import pyarrow.parquet as pq

    n_items = sim.shape[0]
    con.register("_ridx_frame", index.select("item_idx", "item_id"))
    con.sql("CREATE OR REPLACE TEMP TABLE _ridx AS SELECT * FROM _ridx_frame")
    con.unregister("_ridx_frame")
    scope = ""
    if active is not None:
        con.register("_ractive_frame", active.select("user_id"))
        con.sql("CREATE OR REPLACE TEMP TABLE _ractive AS SELECT * FROM _ractive_frame")
        con.unregister("_ractive_frame")
        scope = "SEMI JOIN _ractive a ON h.user_id = a.user_id"
    try:
        n_users = _rec_tables(con, scope)
        item_ids = index.sort("item_idx")["item_id"]
        user_dtype = con.sql("SELECT user_id FROM _history LIMIT 0").pl()["user_id"].dtype
        schema = pl.DataFrame(
            schema={"user_id": user_dtype, "item_id": item_ids.dtype, "rank": pl.Int32,
                    "score": pl.Float32}
        ).to_arrow().schema  # fmt: skip
        pad_pool, pool_pos = _pad_pool(popular_idx, n_items, top_k)
        rows = 0
        with pq.ParquetWriter(str(path), schema, compression="zstd") as writer:
            if kept is not None and kept.height:
                writer.write_table(kept.select(schema.names).to_arrow().cast(schema))
                rows += kept.height
            for start in range(0, n_users, USER_CHUNK):
                chunk = _chunk_frame(con, start, min(start + USER_CHUNK, n_users), n_items)
                users, profile, bought = chunk
                r, c, s = _chunk_lists(profile, bought, sim, pad_pool, pool_pos, top_k)
                frame = pl.DataFrame(
                    {
                        "user_id": users.gather(r),
                        "item_id": item_ids.gather(c),
                        "rank": _ranks(r).astype(np.int32),
                        "score": s.astype(np.float32),
                    }
                )
                writer.write_table(frame.to_arrow().cast(schema))
                rows += frame.height
            if rows == 0:
                writer.write_table(schema.empty_table())
    finally:
        for table in ("_ridx", "_ractive", "_rec_users", "_rec_rows"):
            con.sql(f"DROP TABLE IF EXISTS {table}")
    return rows


def _rec_tables(con, scope: str) -> int:
    """Tables ``_rec_users`` (user number in user_id order) and ``_rec_rows`` (their
    history rows that vote or are bought, by user number then item_idx); returns the users."""
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _rec_users AS
            SELECT user_id, CAST(row_number() OVER (ORDER BY user_id) - 1 AS BIGINT) AS u
            FROM (SELECT DISTINCT h.user_id FROM _history h {scope}
                  SEMI JOIN _ridx i ON h.item_id = i.item_id)
            ORDER BY u"""
    )
    # the PROFILE_ITEMS heaviest items of each user vote (ties: the lower item_idx)
    con.sql(
        f"""CREATE OR REPLACE TEMP TABLE _rec_rows AS
            SELECT u, item_idx, weight, purchased, voter FROM (
                SELECT r.u, i.item_idx, h.weight, h.purchased, row_number() OVER (
                    PARTITION BY r.u ORDER BY h.weight DESC, i.item_idx) <= {PROFILE_ITEMS}
                    AS voter
                FROM _history h JOIN _rec_users r ON h.user_id = r.user_id
                     JOIN _ridx i ON h.item_id = i.item_id)
            WHERE voter OR purchased
            ORDER BY u, item_idx"""
    )
    return int(con.sql("SELECT count(*) FROM _rec_users").fetchall()[0][0])


def _chunk_frame(con, start: int, stop: int, n_items: int):
    """(user ids, profile matrix, bought matrix) of users ``start`` .. ``stop - 1``."""
    import polars as pl

    users = con.sql(
        f"SELECT user_id FROM _rec_users WHERE u >= {start} AND u < {stop} ORDER BY u"
    ).pl()["user_id"]
    rows = con.sql(
        f"""SELECT u, item_idx, weight, purchased, voter FROM _rec_rows
            WHERE u >= {start} AND u < {stop} ORDER BY u, item_idx"""
    ).fetchnumpy()
    u = np.asarray(rows["u"], dtype=np.int64) - start
    i = np.asarray(rows["item_idx"], dtype=np.int64)
    w = np.asarray(rows["weight"], dtype=np.float64)
    bought = np.asarray(rows["purchased"], dtype=bool)
    voter = np.asarray(rows["voter"], dtype=bool)
    shape = (stop - start, n_items)
    profile = sp.csr_matrix((w[voter], (u[voter], i[voter])), shape=shape)
    bought_matrix = sp.csr_matrix((np.ones(int(bought.sum())), (u[bought], i[bought])), shape=shape)
    return pl.Series("user_id", users), profile, bought_matrix
