"""Item co-occurrence, PPMI + truncated SVD embeddings, item-item CF, the Annoy index.

Why PPMI + SVD (Levy & Goldberg 2014, "Neural word embedding as implicit matrix
factorization"): skip-gram-style item2vec implicitly factorises a shifted PMI
matrix, so factorising the positive PMI of session co-occurrence directly gives
comparable item vectors with no deep learning, no SGD epochs and no random
negative sampling — it is deterministic given a seed, runs in seconds on
scipy.sparse for 100k items, and its state (the decayed co-occurrence counts) can be
carried forward for a cheap warm start.

Everything is addressed by dense ``item_idx`` (0..n_items-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

CONTEXT_ALPHA = 0.75  # context-distribution smoothing (Levy et al. 2015)
OVERSAMPLE = 16  # extra columns of the randomized range finder
PADDED_WIDTH = 512  # rows up to this long are ranked in dense blocks
PADDED_ROWS = 2_048  # rows per dense block; blocks take rows in order of length


def cooccurrence(
    session_key: np.ndarray,
    item_idx: np.ndarray,
    weight: np.ndarray,
    n_items: int,
    *,
    window: int,
    max_session_len: int,
) -> sp.csr_matrix:
    """Symmetric co-occurrence counts of items within ``window`` steps in a session.

    Inputs are sorted by session then time. Consecutive repeats of an item are
    collapsed, each session is capped at its first ``max_session_len`` items
    (bounding the pairs a bot session can add), and a pair is weighted by the
    (time-decay) weight of its later event.
    """
    if session_key.size == 0:
        return sp.csr_matrix((n_items, n_items), dtype=np.float64)
    keep = np.ones(session_key.size, dtype=bool)
    keep[1:] = (session_key[1:] != session_key[:-1]) | (item_idx[1:] != item_idx[:-1])
    session_key, item_idx, weight = session_key[keep], item_idx[keep], weight[keep]
    starts = np.ones(session_key.size, dtype=bool)
    starts[1:] = session_key[1:] != session_key[:-1]
    session_no = np.cumsum(starts) - 1
    start_pos = np.flatnonzero(starts)
    position = np.arange(session_key.size) - start_pos[session_no]
    capped = position < max_session_len
    session_no, item_idx, weight = session_no[capped], item_idx[capped], weight[capped]
    total = sp.csr_matrix((n_items, n_items), dtype=np.float64)
    for lag in range(1, window + 1):
        if lag >= session_no.size:
            break
        same = session_no[lag:] == session_no[:-lag]
        a = item_idx[:-lag][same]
        b = item_idx[lag:][same]
        w = weight[lag:][same]
        distinct = a != b
        a, b, w = a[distinct], b[distinct], w[distinct].astype(np.float64)
        total = total + sp.csr_matrix((w, (a, b)), shape=(n_items, n_items))
    total = (total + total.T).tocsr()
    total.sum_duplicates()
    total.sort_indices()
    return total


def ppmi(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Positive PMI with context-distribution smoothing; zero rows stay zero."""
    counts = counts.tocsr()
    row_sum = np.asarray(counts.sum(axis=1)).ravel()
    context = row_sum**CONTEXT_ALPHA
    context_total = context.sum()
    if context_total <= 0:
        return counts.copy()
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    cols = counts.indices
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts.data * context_total / (row_sum[rows] * context[cols]))
    pmi[~np.isfinite(pmi)] = 0.0
    pmi = np.maximum(pmi, 0.0)
    out = sp.csr_matrix((pmi, cols.copy(), counts.indptr.copy()), shape=counts.shape)
    out.eliminate_zeros()
    return out


@dataclass
class Factorisation:
    embeddings: np.ndarray  # float32 (n, dim): U * sqrt(S)
    singular_values: np.ndarray


def _orthonormal(matrix: np.ndarray) -> np.ndarray:
    q, _ = np.linalg.qr(matrix)
    return q


def truncated_svd(
    matrix: sp.csr_matrix,
    dim: int,
    *,
    seed: int,
    power_iterations: int = 2,
) -> Factorisation:
    """Randomized truncated SVD (Halko et al. 2011) of a symmetric sparse matrix.

    Full runs and warm starts use the same random start and number of power
    iterations, so their embeddings agree (seeding the range finder with the previous
    basis converges further at every update, and the more converged top-``dim`` PPMI
    subspace ranks measurably worse in replay). Runs in float32 (half the memory
    traffic of the sparse products; embeddings are stored as float32 anyway). Signs are fixed so that each
    component's largest-magnitude entry is positive (deterministic output).
    """
    n = matrix.shape[0]
    width = min(dim + OVERSAMPLE, n)
    rng = np.random.default_rng(seed)
    matrix = matrix.astype(np.float32)
    omega = rng.standard_normal((n, width), dtype=np.float32)
    q = _orthonormal(matrix @ omega)
    for _ in range(power_iterations):
        q = _orthonormal(matrix @ q)
    small = (matrix.T @ q).T  # (width, n) = q.T @ matrix
    # only U and S of `small` are needed: take them from the (width, width) Gram matrix in
    # float64 instead of a full SVD, which would also build the (width, n) right vectors
    # (~2 s of the 117k-item world's warm start). float64 keeps the squared spectrum exact
    # enough: the kept components are within a few orders of magnitude of the largest.
    small64 = small.astype(np.float64)
    evals, evecs = np.linalg.eigh(small64 @ small64.T)
    order = np.argsort(evals, kind="stable")[::-1]
    s = np.sqrt(np.clip(evals[order], 0.0, None))
    u_small = evecs[:, order].astype(np.float32)
    del small64
    u = q @ u_small
    pivot = np.argmax(np.abs(u), axis=0)
    signs = np.sign(u[pivot, np.arange(u.shape[1])])
    signs[signs == 0] = 1.0
    u *= signs
    emb = u[:, :dim] * np.sqrt(s[:dim])
    return Factorisation(
        embeddings=np.ascontiguousarray(emb, dtype=np.float32),
        singular_values=s.astype(np.float64),
    )


def top_n_per_row(matrix: sp.csr_matrix, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, value) of the ``n`` largest entries of each row, best first.

    Ties are broken by column index, so the result is deterministic. Short rows
    go through :func:`top_n_per_row_padded` in blocks; the few long rows (popular
    items co-occur with thousands) are handled one by one with ``argpartition``.
    """
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    short = np.flatnonzero(lengths <= PADDED_WIDTH)
    # rows in order of length: each block is as wide as its own longest row, not the
    # widest short row of the matrix (at 117k items, 2.2x faster; rows <= n skip the select)
    short = short[np.argsort(lengths[short], kind="stable")]
    parts_r, parts_c, parts_v = [], [], []
    for start in range(0, short.size, PADDED_ROWS):
        block = short[start : start + PADDED_ROWS]
        r, c, v = top_n_per_row_padded(matrix[block], n)
        parts_r.append(block[r])
        parts_c.append(c)
        parts_v.append(v)
    for row in np.flatnonzero(lengths > PADDED_WIDTH):
        lo, hi = matrix.indptr[row], matrix.indptr[row + 1]
        data, cols = matrix.data[lo:hi], matrix.indices[lo:hi]
        part = np.argpartition(-data, n - 1)[:n]
        order = np.lexsort((cols[part], -data[part]))
        parts_r.append(np.full(order.size, row, dtype=np.int64))
        parts_c.append(cols[part][order].astype(np.int64))
        parts_v.append(data[part][order])
    if not parts_r:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, matrix.dtype)
    rows = np.concatenate(parts_r)
    order = np.argsort(rows, kind="stable")
    return rows[order], np.concatenate(parts_c)[order], np.concatenate(parts_v)[order]


def top_n_per_row_padded(
    matrix: sp.csr_matrix, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Same result as :func:`top_n_per_row` for short rows, in O(nnz) instead of a sort.

    Rows are laid out in a dense (rows, longest row) block, the top ``n`` picked with
    ``argpartition`` and only those sorted (by value, then column).
    """
    matrix = matrix.tocsr()
    lengths = np.diff(matrix.indptr)
    width = int(lengths.max()) if lengths.size else 0
    if width == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, np.empty(0, matrix.dtype)
    rows = np.repeat(np.arange(matrix.shape[0]), lengths)
    pos = np.arange(matrix.nnz) - np.repeat(matrix.indptr[:-1], lengths)
    values = np.full((matrix.shape[0], width), -np.inf)
    cols = np.full((matrix.shape[0], width), np.iinfo(np.int64).max, dtype=np.int64)
    values[rows, pos] = matrix.data
    cols[rows, pos] = matrix.indices
    if width > n:
        part = np.argpartition(-values, n - 1, axis=1)[:, :n]
        values = np.take_along_axis(values, part, axis=1)
        cols = np.take_along_axis(cols, part, axis=1)
    order = np.lexsort((cols, -values), axis=1)
    values = np.take_along_axis(values, order, axis=1)
    cols = np.take_along_axis(cols, order, axis=1)
    keep = np.isfinite(values)
    row_ids = np.broadcast_to(np.arange(matrix.shape[0])[:, None], values.shape)
    return row_ids[keep], cols[keep], values[keep]


def cf_similarity(counts: sp.csr_matrix) -> sp.csr_matrix:
    """Item-item CF similarity: co-occurrence normalised by both items' totals (cosine-like)."""
    counts = counts.tocsr()
    degree = np.asarray(counts.sum(axis=1)).ravel()
    inv = np.zeros_like(degree)
    np.divide(1.0, np.sqrt(degree), out=inv, where=degree > 0)
    rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
    data = counts.data * inv[rows] * inv[counts.indices]
    return sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)


def build_annoy(embeddings: np.ndarray, n_trees: int, path: str, *, seed: int) -> None:
    """Angular Annoy index over rows (item = item_idx), single-threaded so it is reproducible."""
    from annoy import AnnoyIndex

    index = AnnoyIndex(embeddings.shape[1], "angular")
    index.set_seed(seed)
    for idx, vector in enumerate(embeddings):
        index.add_item(idx, vector)
    index.build(n_trees, n_jobs=1)
    index.save(path)
    index.unload()


def annoy_recall(
    embeddings: np.ndarray,
    path: str,
    *,
    k: int = 10,
    sample: int = 1000,
    seed: int = 0,
    search_k: int = -1,
) -> dict:
    """Recall@k of the saved index against exact cosine kNN on a sample of items."""
    from annoy import AnnoyIndex

    norms = np.linalg.norm(embeddings, axis=1)
    valid = np.flatnonzero(norms > 0)
    if valid.size <= k:
        return {"recall_at_k": None, "k": k, "queries": 0, "search_k": search_k}
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(valid, size=min(sample, valid.size), replace=False))
    unit = np.zeros_like(embeddings)
    unit[valid] = embeddings[valid] / norms[valid, None]
    index = AnnoyIndex(embeddings.shape[1], "angular")
    index.load(path)
    hits = 0
    for start in range(0, queries.size, 256):
        block = queries[start : start + 256]
        sims = unit[block] @ unit.T
        sims[np.arange(block.size), block] = -np.inf
        sims[:, norms == 0] = -np.inf
        exact = np.argpartition(-sims, k, axis=1)[:, :k]
        for row, query in enumerate(block):
            found = [i for i in index.get_nns_by_item(int(query), k + 1, search_k) if i != query]
            hits += len(set(found[:k]) & set(exact[row].tolist()))
    index.unload()
    return {
        "recall_at_k": hits / (k * queries.size),
        "k": k,
        "queries": int(queries.size),
        "search_k": search_k,
    }


def fold_in(matrix: sp.csr_matrix, basis: np.ndarray) -> np.ndarray:
    """Embeddings of ``matrix``'s rows in the basis of an earlier factorisation ``basis``
    (its ``U * sqrt(S)``, for the first ``len(basis)`` items): ``m_i @ U / sqrt(S)``.

    One sparse product, no SVD. Linear in ``matrix``: ``basis + fold_in(new) -
    fold_in(old)`` is where each item moved in the old basis when the matrix changed from
    ``old`` to ``new`` (exactly ``basis`` when nothing changed, however converged the
    randomized SVD that made ``basis`` was). Items added since get a vector from their
    co-occurrence with the old items."""
    n, dim = matrix.shape[0], basis.shape[1]
    s = (basis.astype(np.float64) ** 2).sum(axis=0)  # ||U_k sqrt(s_k)||^2 = s_k
    scale = np.divide(1.0, s, out=np.zeros_like(s), where=s > 0)
    proj = np.zeros((n, dim), dtype=np.float32)
    proj[: basis.shape[0]] = basis * scale.astype(np.float32)
    folded = np.asarray(matrix.astype(np.float32) @ proj, dtype=np.float32)
    # PPMI is symmetric but not positive definite: a component of a negative eigenvalue
    # (M u = -s u) comes back with its sign flipped; the Rayleigh quotient's sign restores it
    signs = np.sign(np.einsum("ij,ij->j", basis, folded[: basis.shape[0]], dtype=np.float64))
    signs[signs == 0] = 1.0
    return np.ascontiguousarray(folded * signs.astype(np.float32))


MOVE_CHUNK = 25  # queries per block of embedding_move's exact kNN


def embedding_move(
    new: np.ndarray, old: np.ndarray, *, sample: int, seed: int, k: int = 10
) -> dict[str, float | int]:
    """How far the embeddings of the items in ``old`` moved: the cosine distance of each
    item's new vector to its old one (mean, p99, max) and the mean overlap of the exact
    top-``k`` cosine neighbours of ``sample`` items before and after
    (:func:`embedding_distance` and :func:`knn_overlap`)."""
    return {
        **embedding_distance(new, old),
        "knn_overlap_at_10": knn_overlap(new, old, sample=sample, seed=seed, k=k),
    }


def _units(new: np.ndarray, old: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The items with a vector before and after, and both unit vectors of each."""
    n = old.shape[0]
    a, b = new[:n].astype(np.float32), old.astype(np.float32)
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    valid = np.flatnonzero((na > 0) & (nb > 0))
    return valid, a[valid] / na[valid, None], b[valid] / nb[valid, None]


def embedding_distance(new: np.ndarray, old: np.ndarray) -> dict[str, float | int]:
    """The cosine distance of each item's new vector to its old one: mean, p99, max (the
    cheap part of :func:`embedding_move`, which decides whether an index is rebuilt)."""
    valid, ua, ub = _units(new, old)
    if valid.size == 0:
        return {"items": 0, "mean_cosine_distance": 0.0, "p99_cosine_distance": 0.0,
                "max_cosine_distance": 0.0}  # fmt: skip
    dist = np.clip(1.0 - (ua * ub).sum(axis=1), 0.0, 2.0)
    return {
        "items": int(valid.size),
        "mean_cosine_distance": _sig(dist.mean()),
        "p99_cosine_distance": _sig(np.quantile(dist, 0.99)),
        "max_cosine_distance": _sig(dist.max()),
    }


def knn_overlap(new: np.ndarray, old: np.ndarray, *, sample: int, seed: int, k: int = 10) -> float:
    """The mean overlap of the exact top-``k`` cosine neighbours of ``sample`` items (a
    seeded choice) before and after the move (1.0 when there is nothing to compare)."""
    valid, ua, ub = _units(new, old)
    if valid.size == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    queries = rng.choice(valid.size, size=min(sample, valid.size), replace=False)
    top = min(k, valid.size - 1)
    if top <= 0:
        return 1.0
    shared = []
    for unit in (ua, ub):
        # a few queries at a time: the (queries x items) similarities and argpartition's
        # int64 positions of all 200 at once are ~0.4 GB of fresh pages, whose first
        # touch cost seconds on a busy VM; 25 rows reuse ~50 MB
        parts = []
        for start in range(0, queries.size, MOVE_CHUNK):
            chunk = queries[start : start + MOVE_CHUNK]
            sims = unit[chunk] @ unit.T
            sims[np.arange(chunk.size), chunk] = -np.inf
            parts.append(np.argpartition(-sims, top - 1, axis=1)[:, :top])
        shared.append(np.concatenate(parts))
    overlap = float(np.mean([len(set(x) & set(y)) / top for x, y in zip(*shared, strict=True)]))
    return round(overlap, 4)


def _sig(value: float) -> float:
    """Four significant digits: a move of 1e-7 is still a move."""
    return float(f"{float(value):.4g}")
