"""Stage-1 batch recommendations: item-item CF over each known user's weighted history.

score(user, j) = sum over history items i of weight(user, i) * sim(i, j), with
``sim`` the top-N item-item CF neighbours. Purchased items are excluded; a list
shorter than K is topped up from the popularity list (score 0).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from rtml_cli.batch.embeddings import top_n_per_row_padded

USER_CHUNK = 10_000
PROFILE_ITEMS = 10  # a user's heaviest history items that vote for candidates


def batch_recs(history, index, sim: sp.csr_matrix, popular_idx: np.ndarray, top_k: int):
    """Top-K per user as a DataFrame (user_id, item_id, rank, score), users sorted."""
    import polars as pl

    n_items = sim.shape[0]
    frame = history.join(index, on="item_id", how="inner", maintain_order="left").sort(
        "user_id", "item_idx"
    )
    if frame.height == 0:
        return pl.DataFrame(
            {"user_id": history["user_id"].head(0), "item_id": index["item_id"].head(0)},
        ).with_columns(pl.lit(0, pl.Int32).alias("rank"), pl.lit(0.0, pl.Float32).alias("score"))
    first_of_user = frame.select(
        (pl.col("user_id") != pl.col("user_id").shift()).fill_null(True)
    ).to_series()
    u = first_of_user.cum_sum().to_numpy().astype(np.int64) - 1
    users = frame["user_id"].filter(first_of_user)
    n_users = users.len()
    i = frame["item_idx"].to_numpy().astype(np.int64)
    w = frame["weight"].to_numpy().astype(np.float64)
    bought = frame["purchased"].to_numpy()
    # the PROFILE_ITEMS heaviest items of each user vote
    order = np.lexsort((-w, u))  # stable: ties keep item order
    starts = np.searchsorted(u[order], u[order], side="left")
    voter = np.zeros(u.size, dtype=bool)
    voter[order[np.arange(u.size) - starts < PROFILE_ITEMS]] = True
    profile = sp.csr_matrix((w[voter], (u[voter], i[voter])), shape=(n_users, n_items))
    bought_matrix = sp.csr_matrix(
        (np.ones(int(bought.sum())), (u[bought], i[bought])), shape=(n_users, n_items)
    )
    pad_pool = popular_idx[: min(popular_idx.size, 2 * top_k + 50)]
    pool_pos = np.full(n_items, -1, dtype=np.int64)
    pool_pos[pad_pool] = np.arange(pad_pool.size)

    out_u, out_i, out_s, out_r = [], [], [], []
    for start in range(0, n_users, USER_CHUNK):
        stop = min(start + USER_CHUNK, n_users)
        bought_chunk = bought_matrix[start:stop]
        scores = (profile[start:stop] @ sim).tocsr()
        scores = (scores - scores.multiply(bought_chunk)).tocsr()
        scores.eliminate_zeros()
        r, c, s = top_n_per_row_padded(scores, top_k)
        counts = np.bincount(r, minlength=stop - start)
        # top up short lists from the popularity list, skipping listed and bought items
        need = np.flatnonzero(counts < top_k)
        pr, pc = np.empty(0, np.int64), np.empty(0, np.int64)
        if need.size and pad_pool.size:
            need_row = np.full(stop - start, -1, dtype=np.int64)
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
        r = r.astype(np.int64) + start
        pr = pr.astype(np.int64) + start
        all_r = np.concatenate([r, pr])
        all_c = np.concatenate([c, pc])
        all_s = np.concatenate([s, np.zeros(pr.size)])
        # both parts are sorted by row (CF best first, then popular in popularity order):
        # a stable merge by row keeps that order
        order = np.argsort(all_r, kind="stable")
        all_r, all_c, all_s = all_r[order], all_c[order], all_s[order]
        first = np.searchsorted(all_r, all_r, side="left")
        out_u.append(all_r)
        out_i.append(all_c)
        out_s.append(all_s)
        out_r.append(np.arange(all_r.size) - first + 1)
    u_all = np.concatenate(out_u)
    recs = pl.DataFrame(
        {
            "user_id": users.gather(u_all),
            "item_id": index.sort("item_idx")["item_id"].gather(np.concatenate(out_i)),
            "rank": np.concatenate(out_r).astype(np.int32),
            "score": np.concatenate(out_s).astype(np.float32),
        }
    )
    return recs
