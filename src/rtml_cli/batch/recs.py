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
PROFILE_ITEMS = 20  # a user's heaviest history items that vote for candidates


def batch_recs(history, index, sim: sp.csr_matrix, popular_idx: np.ndarray, top_k: int):
    """Top-K per user as a DataFrame (user_id, item_id, rank, score), users sorted."""
    import polars as pl

    n_items = sim.shape[0]
    frame = history.join(index, on="item_id", how="inner")
    users = frame["user_id"].unique().sort()
    if users.len() == 0:
        return pl.DataFrame(
            {"user_id": users, "item_id": index["item_id"].head(0)},
        ).with_columns(pl.lit(0, pl.Int32).alias("rank"), pl.lit(0.0, pl.Float32).alias("score"))
    codes = pl.DataFrame({"user_id": users, "u": np.arange(users.len(), dtype=np.int64)})
    frame = frame.join(codes, on="user_id")
    u = frame["u"].to_numpy()
    i = frame["item_idx"].to_numpy().astype(np.int64)
    w = frame["weight"].to_numpy().astype(np.float64)
    bought = frame["purchased"].to_numpy()
    voter = (
        frame.select(pl.col("weight").rank("ordinal", descending=True).over("u") <= PROFILE_ITEMS)
        .to_series()
        .to_numpy()
    )
    profile = sp.csr_matrix((w[voter], (u[voter], i[voter])), shape=(users.len(), n_items))
    excluded = np.sort(u[bought] * n_items + i[bought])
    pad_pool = popular_idx[: min(popular_idx.size, 2 * top_k + 50)]

    out_u, out_i, out_s, out_r = [], [], [], []
    for start in range(0, users.len(), USER_CHUNK):
        stop = min(start + USER_CHUNK, users.len())
        scores = (profile[start:stop] @ sim).tocoo()
        rows = scores.row.astype(np.int64) + start
        keys = rows * n_items + scores.col
        keep = ~np.isin(keys, excluded, assume_unique=False) & (scores.data > 0)
        kept = sp.csr_matrix(
            (scores.data[keep], (scores.row[keep], scores.col[keep])), shape=(stop - start, n_items)
        )
        r, c, s = top_n_per_row_padded(kept, top_k)
        r = r.astype(np.int64) + start
        counts = np.bincount(r - start, minlength=stop - start)
        # top up short lists from the popularity list
        need = np.flatnonzero(counts < top_k)
        pr, pc = np.empty(0, np.int64), np.empty(0, np.int64)
        if need.size and pad_pool.size:
            grid_u = np.repeat(need + start, pad_pool.size)
            grid_i = np.tile(pad_pool, need.size)
            grid_keys = grid_u * n_items + grid_i
            taken = np.concatenate([excluded, r * n_items + c])
            valid = ~np.isin(grid_keys, taken).reshape(need.size, pad_pool.size)
            slot = np.cumsum(valid, axis=1)
            room = (top_k - counts[need])[:, None]
            chosen = (valid & (slot <= room)).ravel()
            pr, pc = grid_u[chosen], grid_i[chosen]
        all_r = np.concatenate([r, pr])
        all_c = np.concatenate([c, pc])
        all_s = np.concatenate([s, np.zeros(pr.size)])
        # padded items keep popularity order: stable sort on (row, -score)
        order = np.lexsort((np.arange(all_r.size), -all_s, all_r))
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
