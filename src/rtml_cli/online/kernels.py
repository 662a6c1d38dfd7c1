"""Compiled (numba) loops of the replay's hot paths: the IVF serve of a micro-batch and the truth.

Why numba: numpy pays per call, and the replay's work is many small pieces — a session
vector from a handful of items, two probed lists of ~170 items, a top-20 — so the numpy
IVF search spent most of its ~40 µs per request in call overheads and padded partitions.
These loops do the same work per request in compiled code (a few µs). ``cache=True`` keeps
the machine code next to this file, so only the first run on a machine compiles; the
import and the cache load are part of every whole-command timing in ``bench/``.

Every sum runs in an order fixed by the compiled code whatever the batch, so a request's
answer never depends on the other requests it is batched with.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# reassociation lets each dot product use SIMD lanes; the order it picks is fixed by the
# compiled code, so it is the same for a request whatever its batch (no nnan/ninf: the
# probe loop marks taken lists with -inf)
_FAST = {"reassoc", "contract", "nsz", "arcp"}


@njit(cache=True, nogil=True, fastmath=_FAST)
def _session_vector(codes, lo, hi, n_items, embeddings, decay, vec, vec32, stamp, mark):
    """The unit session vector of ``codes[lo:hi]`` in ``vec`` / ``vec32``, its items stamped
    with ``mark`` (when ``mark`` > 0); the number of known items (0: no vector)."""
    known = 0
    for p in range(lo, hi):
        if codes[p] < n_items:
            known += 1
    if known == 0:
        return 0
    vec[:] = 0.0
    seen = 0
    for p in range(lo, hi):
        c = codes[p]
        if c >= n_items:
            continue
        w = 1.0
        if decay > 0.0:
            w = decay ** (known - 1 - seen)
        seen += 1
        for d in range(len(vec)):
            vec[d] += w * embeddings[c, d]
        if mark > 0:
            stamp[c] = mark
    norm = 0.0
    for d in range(len(vec)):
        norm += vec[d] * vec[d]
    norm = max(np.sqrt(norm), 1e-12)
    for d in range(len(vec)):
        vec[d] /= norm
        vec32[d] = vec[d]
    return known


@njit(cache=True, nogil=True, fastmath=_FAST)
def _nearest_lists(vec, centroids, near, probe):
    """The ``len(probe)`` lists nearest ``vec`` into ``probe`` (ties: the lower list)."""
    for lst in range(len(near)):
        s = 0.0
        for d in range(len(vec)):
            s += vec[d] * centroids[lst, d]
        near[lst] = s
    for j in range(len(probe)):
        top = 0
        for lst in range(1, len(near)):
            if near[lst] > near[top]:
                top = lst
        probe[j] = top
        near[top] = -np.inf


@njit(cache=True, nogil=True)
def _offer(item, s, best_s, best_i, filled):
    """Offer ``item`` with score ``s`` to the top list (best first; ties: lower item first)
    holding ``filled`` entries; the new count."""
    k = len(best_s)
    if filled == k:
        if s < best_s[k - 1] or (s == best_s[k - 1] and item > best_i[k - 1]):
            return filled
        pos = k - 1
    else:
        pos = filled
        filled += 1
    while pos > 0 and (best_s[pos - 1] < s or (best_s[pos - 1] == s and best_i[pos - 1] > item)):
        best_s[pos] = best_s[pos - 1]
        best_i[pos] = best_i[pos - 1]
        pos -= 1
    best_s[pos] = s
    best_i[pos] = item
    return filled


@njit(cache=True, nogil=True, fastmath=_FAST)
def ivf_serve(
    codes: np.ndarray,  # int64 item codes, the flat event arrays (codes >= n_items: unknown)
    starts: np.ndarray,  # int64 per request: first history position in ``codes``
    ends: np.ndarray,  # int64 per request: one past the last history position (exclusive)
    n_items: int,
    embeddings: np.ndarray,  # float32 (n_items, dim)
    decay: float,  # <= 0: plain sum; else position-decayed (the last known item weighs 1)
    centroids: np.ndarray,  # float64 (n_lists, dim)
    vectors: np.ndarray,  # float32 (n_items, dim): unit vectors, list by list
    offsets: np.ndarray,  # int64 (n_lists + 1): where each list starts in ``vectors``
    items: np.ndarray,  # int64 (n_items): item_idx, list by list
    nprobe: int,
    k: int,
    exclude_seen: bool,
) -> np.ndarray:
    """(requests, k) item_idx per request, best cosine first (ties: lower item_idx), among the
    ``nprobe`` lists nearest its session vector, the session's items left out when
    ``exclude_seen``; -1 where those lists hold fewer; row all -1 (and ``[0] == -2``) for a
    request whose history holds no known item."""
    n_q, dim = len(starts), embeddings.shape[1]
    n_lists = centroids.shape[0]
    out = np.full((n_q, k), -1, dtype=np.int64)
    stamp = np.zeros(n_items, dtype=np.int64)
    vec, vec32 = np.zeros(dim, dtype=np.float64), np.zeros(dim, dtype=np.float32)
    near = np.zeros(n_lists, dtype=np.float64)
    probe = np.zeros(max(1, min(nprobe, n_lists)), dtype=np.int64)
    best_s, best_i = np.zeros(k, dtype=np.float64), np.zeros(k, dtype=np.int64)
    scores = np.zeros(np.max(np.diff(offsets)) if n_lists else 0, dtype=np.float32)
    for q in range(n_q):
        mark = q + 1 if exclude_seen else 0
        if not _session_vector(
            codes, starts[q], ends[q], n_items, embeddings, decay, vec, vec32, stamp, mark
        ):
            out[q, 0] = -2
            continue
        _nearest_lists(vec, centroids, near, probe)
        filled = 0  # the exact top-k over the probed lists, seen items skipped
        for lst in probe:
            a, b = offsets[lst], offsets[lst + 1]
            for col in range(b - a):
                s32 = np.float32(0.0)
                for d in range(dim):
                    s32 += vec32[d] * vectors[a + col, d]
                scores[col] = s32
            for col in range(a, b):
                item = items[col]
                if mark == 0 or stamp[item] != mark:
                    filled = _offer(item, float(scores[col - a]), best_s, best_i, filled)
        out[q, :filled] = best_i[:filled]
    return out


@njit(cache=True, nogil=True)
def next_unseen_truth(
    codes: np.ndarray,  # int64 item codes, session order
    events: np.ndarray,  # int8 event codes (1 cart, 2 purchase)
    req_row: np.ndarray,  # int64 row of each request's event
    sess_start: np.ndarray,  # int64 first row of each request's session
    sess_end: np.ndarray,  # int64 one past the last row of each request's session
    n_codes: int,  # 1 + the largest code
):
    """``replay.truth_for`` under ``next-unseen``: per request the first item from its event
    on that its history does not hold, the first such cart/purchase item, and every such
    distinct item (as (request, item) pairs, in order of first appearance)."""
    n = len(req_row)
    next_code = np.full(n, -1, dtype=np.int64)
    purchase_code = np.full(n, -1, dtype=np.int64)
    seen = np.zeros(n_codes, dtype=np.int64)
    fresh = np.zeros(n_codes, dtype=np.int64)
    total = 0
    for r in range(n):  # first pass: how many pairs
        mark = 2 * r + 1
        for j in range(sess_start[r], req_row[r]):
            seen[codes[j]] = mark
        for j in range(req_row[r], sess_end[r]):
            c = codes[j]
            if seen[c] != mark and fresh[c] != mark:
                fresh[c] = mark
                total += 1
    later_req = np.empty(total, dtype=np.int64)
    later_code = np.empty(total, dtype=np.int64)
    at = 0
    for r in range(n):
        mark = 2 * r + 2
        for j in range(sess_start[r], req_row[r]):
            seen[codes[j]] = mark
        buy = -1
        first = at
        for j in range(req_row[r], sess_end[r]):
            c = codes[j]
            if seen[c] == mark:
                continue
            if at == first:
                next_code[r] = c
            if buy < 0 and 1 <= events[j] <= 2:
                buy = c
            if fresh[c] != mark:
                fresh[c] = mark
                later_req[at] = r
                later_code[at] = c
                at += 1
        if at > first:
            purchase_code[r] = buy
    return next_code, purchase_code, later_req, later_code


@njit(cache=True, nogil=True)
def next_item_truth(
    codes: np.ndarray,  # int64 item codes, session order
    events: np.ndarray,  # int8 event codes (1 cart, 2 purchase)
    req_row: np.ndarray,  # int64 row of each request's event
    sess_end: np.ndarray,  # int64 one past the last row of each request's session
    n_codes: int,  # 1 + the largest code
):
    """``replay.truth_for`` under ``next-item``: per request its first cart/purchase item from
    its event on, and every distinct item from there (as (request, item) pairs, items
    ascending per request, as ``numpy.unique`` gives them)."""
    n = len(req_row)
    purchase_code = np.full(n, -1, dtype=np.int64)
    stamp = np.zeros(n_codes, dtype=np.int64)
    total = 0
    for r in range(n):  # first pass: how many pairs
        for j in range(req_row[r], sess_end[r]):
            if stamp[codes[j]] != r + 1:
                stamp[codes[j]] = r + 1
                total += 1
    later_req = np.empty(total, dtype=np.int64)
    later_code = np.empty(total, dtype=np.int64)
    at = 0
    for r in range(n):
        mark = n + r + 1
        first = at
        for j in range(req_row[r], sess_end[r]):
            c = codes[j]
            if purchase_code[r] < 0 and 1 <= events[j] <= 2:
                purchase_code[r] = c
            if stamp[c] != mark:
                stamp[c] = mark
                later_code[at] = c
                at += 1
        later_code[first:at] = np.sort(later_code[first:at])
        later_req[first:at] = r
    return purchase_code, later_req, later_code


@njit(cache=True, nogil=True, fastmath=_FAST)
def _list_cosines(lists, offsets, list_items, list_vectors, u, sim_of, from_list, mark):
    """The float32 cosine to ``u`` of every item of ``lists`` into ``sim_of`` (its rows read
    in order from ``list_vectors``), the items stamped with ``mark`` in ``from_list``."""
    for lst in lists:
        for p in range(offsets[lst], offsets[lst + 1]):
            s = np.float32(0.0)
            for d in range(len(u)):
                s += list_vectors[p, d] * u[d]
            sim_of[list_items[p]] = s
            from_list[list_items[p]] = mark


@njit(cache=True, nogil=True, fastmath=_FAST)
def ranker_session_features(
    item: np.ndarray,  # int64 candidate item_idx per row, grouped by request
    bounds: np.ndarray,  # int64 (requests + 1): rows of request r are bounds[r]:bounds[r + 1]
    has_vector: np.ndarray,  # bool per request
    vectors: np.ndarray,  # float32 (requests, dim): session vectors (unscaled)
    unit: np.ndarray,  # float32 (n_items, dim): unit item embeddings
    knn_keys: np.ndarray,  # int64 request * n_items + item, ascending
    knn_score: np.ndarray,  # float32 per kNN key
    knn_best: np.ndarray,  # float32 per request: its best kNN score
    n_items: int,
    log_len: np.ndarray,  # float64 per request
    log_elapsed: np.ndarray,  # float64 per request
    match: np.ndarray,  # float64 per row: category match share
    out: np.ndarray,  # float32 (rows, >= col + 7): the session family's columns go here
    col: int,
    lists: np.ndarray,  # int64 (requests, lists per request): each request's probed IVF lists
    offsets: np.ndarray,  # int64 (n_lists + 1): where each list starts in ``list_vectors``
    list_items: np.ndarray,  # int64 item_idx, list by list
    list_vectors: np.ndarray,  # float32: ``unit``'s rows, list by list (``IVFIndex.vectors``)
) -> None:
    """The session family's columns (``stage3_batch.session_block``) of every row, request by
    request: cosine to the unit session vector, its products with the log length and elapsed
    time, the scaled kNN score, whether kNN proposed the item, the category match and its
    product with the log length. Each request reads only its own rows and kNN keys.

    The cosines of a request's probed lists are computed first, list by list (their rows
    lie together in ``list_vectors``: read in order, not scattered over ``unit``), with the
    same float32 loop as the other candidates'."""
    dim = vectors.shape[1]
    u = np.zeros(dim, dtype=np.float32)
    sim_of = np.zeros(unit.shape[0], dtype=np.float32)
    from_list = np.zeros(unit.shape[0], dtype=np.int64)
    tiny = np.float32(1e-12)
    p = 0  # walks knn_keys, which are grouped by request like the rows
    for r in range(len(bounds) - 1):
        a, b = bounds[r], bounds[r + 1]
        live = has_vector[r]
        if live:
            norm = np.float32(0.0)
            for d in range(dim):
                norm += vectors[r, d] * vectors[r, d]
            scale = max(np.float32(np.sqrt(norm)), tiny)
            for d in range(dim):
                u[d] = vectors[r, d] / scale
            _list_cosines(lists[r], offsets, list_items, list_vectors, u, sim_of, from_list, r + 1)
        best = max(knn_best[r], tiny)
        base = r * n_items
        while p < len(knn_keys) and knn_keys[p] < base:
            p += 1
        for row in range(a, b):
            c = item[row]
            sim = np.float32(0.0)
            if live and from_list[c] == r + 1:
                sim = sim_of[c]
            elif live:
                for d in range(dim):
                    sim += unit[c, d] * u[d]
            key = base + c
            while p < len(knn_keys) and knn_keys[p] < key:
                p += 1
            knn_val = np.float32(0.0)
            in_knn = np.float32(0.0)
            if p < len(knn_keys) and knn_keys[p] == key:
                knn_val = knn_score[p] / best
                in_knn = np.float32(1.0)
            m = match[row]
            out[row, col] = sim
            out[row, col + 1] = np.float64(sim) * log_len[r]
            out[row, col + 2] = np.float64(sim) * log_elapsed[r]
            out[row, col + 3] = knn_val
            out[row, col + 4] = in_knn
            out[row, col + 5] = m
            out[row, col + 6] = m * log_len[r]


@njit(cache=True, nogil=True)
def top_k_rows(item: np.ndarray, score: np.ndarray, bounds: np.ndarray, k: int):
    """Per request (rows ``bounds[r]:bounds[r + 1]``) its best ``k`` items by score, best
    first, ties by lower item (``stage2.top_by_score``): ((requests, k) item_idx, how many
    per request, whether ties straddle the k-th place — there ``top_by_score``'s partition
    picks among the tied items, so the caller asks it instead)."""
    n_req = len(bounds) - 1
    out = np.full((n_req, k), -1, dtype=np.int64)
    count = np.zeros(n_req, dtype=np.int64)
    tied = np.zeros(n_req, dtype=np.bool_)
    best_s, best_i = np.zeros(k, dtype=np.float64), np.zeros(k, dtype=np.int64)
    for r in range(n_req):
        a, b = bounds[r], bounds[r + 1]
        filled = 0
        for row in range(a, b):
            filled = _offer(item[row], score[row], best_s, best_i, filled)
        count[r] = filled
        out[r, :filled] = best_i[:filled]
        if b - a > k and filled == k:
            kth = best_s[k - 1]
            at_least = 0
            for row in range(a, b):
                if score[row] >= kth:
                    at_least += 1
            tied[r] = at_least > k
    return out, count, tied


@njit(cache=True, nogil=True)
def window_counts_many(
    counts: np.ndarray,  # int32 (windows, 2 * n_items): the published state
    key: np.ndarray,  # int64 per stream event: 2 * item + kind, time order
    add_from: int,  # next event to publish in the state
    remove_from: np.ndarray,  # int64 per window: next event to leave it in the state
    hi: np.ndarray,  # int64 per request: events before this one are published for it
    lo: np.ndarray,  # int64 (windows, requests): events before this one left window w
    bounds: np.ndarray,  # int64 (requests + 1): rows of request r (grouped, in order)
    items: np.ndarray,  # int64 item_idx per row
    delta: np.ndarray,  # int64 (windows, 2 * n_items) zeros: scratch, zeroed again on return
) -> np.ndarray:
    """``WindowedCounts.features_many`` for rows grouped by request (requests in time order):
    the state's counts plus, per request, the events published since minus those that left
    each window since, walked forward request by request. Exact integer counts."""
    n_w = counts.shape[0]
    n_req = len(bounds) - 1
    out = np.empty((len(items), 2 * n_w), dtype=np.int64)
    p_add = add_from
    p_rem = remove_from.copy()
    for r in range(n_req):
        while p_add < hi[r]:
            k = key[p_add]
            for w in range(n_w):
                delta[w, k] += 1
            p_add += 1
        for w in range(n_w):
            while p_rem[w] < lo[w, r]:
                delta[w, key[p_rem[w]]] -= 1
                p_rem[w] += 1
        for row in range(bounds[r], bounds[r + 1]):
            view = 2 * items[row]
            for w in range(n_w):
                out[row, w] = counts[w, view] + delta[w, view]
                out[row, n_w + w] = counts[w, view + 1] + delta[w, view + 1]
    _reset_scratch(delta, key, add_from, p_add, remove_from, p_rem)
    return out


@njit(cache=True, nogil=True)
def _reset_scratch(delta, key, add_from, p_add, remove_from, p_rem):
    """Zero the streaming kernels' per-window scratch ``delta`` where the batch touched it:
    the events added from ``add_from`` to ``p_add`` and, per window ``w``, removed from
    ``remove_from[w]`` to ``p_rem[w]``."""
    n_w = delta.shape[0]
    for p in range(add_from, p_add):
        for w in range(n_w):
            delta[w, key[p]] = 0
    for w in range(n_w):
        for p in range(remove_from[w], p_rem[w]):
            delta[w, key[p]] = 0


@njit(cache=True, nogil=True)
def category_match(
    session_items: np.ndarray,  # int64 every request's session items, request after request
    session_bounds: np.ndarray,  # int64 (requests + 1): request r's are bounds[r]:bounds[r + 1]
    item: np.ndarray,  # int64 candidate item_idx per row, grouped by request
    bounds: np.ndarray,  # int64 (requests + 1): rows of request r
    item_category: np.ndarray,  # int64 per item_idx (-1 unknown)
    n_cat: int,  # 1 + the largest category code
) -> np.ndarray:
    """Per row the share of its request's session items in the candidate's category (0 when
    the category is unknown or the session empty), as ``OnlineRanker.features``."""
    out = np.zeros(len(item), dtype=np.float64)
    count = np.zeros(n_cat + 1, dtype=np.int64)
    for r in range(len(bounds) - 1):
        s0, s1 = session_bounds[r], session_bounds[r + 1]
        if s1 == s0:
            continue
        for p in range(s0, s1):
            count[item_category[session_items[p]] + 1] += 1
        length = float(s1 - s0)
        for row in range(bounds[r], bounds[r + 1]):
            cat = item_category[item[row]]
            if cat >= 0:
                out[row] = count[cat + 1] / length
        for p in range(s0, s1):
            count[item_category[session_items[p]] + 1] = 0
    return out


@njit(cache=True, nogil=True)
def _known_items(codes, starts, ends, n_items):
    """The known items (codes < n_items) of every request's history, flat, and their bounds."""
    n_req = len(starts)
    bounds = np.zeros(n_req + 1, dtype=np.int64)
    for q in range(n_req):
        known = 0
        for p in range(starts[q], ends[q]):
            if codes[p] < n_items:
                known += 1
        bounds[q + 1] = bounds[q] + known
    items = np.empty(bounds[n_req], dtype=np.int64)
    at = 0
    for q in range(n_req):
        for p in range(starts[q], ends[q]):
            if codes[p] < n_items:
                items[at] = codes[p]
                at += 1
    return items, bounds


@njit(cache=True, nogil=True)
def _sum_rows(embeddings, items, a, b, out):
    """``out`` = the float32 sum of ``embeddings[items[a:b]]``, row after row (as numpy's
    ``sum(axis=0)`` adds them); ``a < b``."""
    for d in range(embeddings.shape[1]):
        out[d] = embeddings[items[a], d]
    for p in range(a + 1, b):
        for d in range(embeddings.shape[1]):
            out[d] += embeddings[items[p], d]


@njit(cache=True, nogil=True)
def _mark(words, item, span):
    """Set ``item``'s bit; ``span`` [lo, hi) of the words touched grows to cover it."""
    word = item >> 6
    words[word] |= np.uint64(1) << np.uint64(item & 63)
    span[0] = min(span[0], word)
    span[1] = max(span[1], word + 1)


# de Bruijn sequence for the index of a 64-bit word's lowest set bit (``_read_bits``)
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _DEBRUIJN_INDEX[(((1 << _bit) * 0x03F79D71B4CB0A89) % 2**64) >> 58] = _bit


@njit(cache=True, nogil=True)
def _read_bits(words, span, stamp, mark, out, at):
    """The items whose bits are set in ``words[span[0]:span[1]]``, ascending, into ``out``
    from ``at`` (those with ``stamp[item] == mark`` skipped); the words cleared. Returns the
    new end."""
    for word in range(span[0], span[1]):
        bits = words[word]
        while bits:
            low = bits & (~bits + np.uint64(1))
            item = word * 64 + _DEBRUIJN_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]
            if stamp[item] != mark:
                out[at] = item
                at += 1
            bits ^= low
        words[word] = 0
    span[0], span[1] = len(words), 0
    return at


@njit(cache=True, nogil=True)
def _cut(scores, n_cand, keep):
    """Mark in ``keep`` the best ``n_cand`` of ``scores``; False (nothing marked) when ties
    straddle the cut, where ``numpy.argpartition`` decides which tied items stay."""
    count = len(scores)
    kth = np.sort(scores)[count - n_cand]
    at_least = 0
    for j in range(count):
        if scores[j] >= kth:
            at_least += 1
    if at_least != n_cand:
        return False
    for j in range(count):
        keep[j] = scores[j] >= kth
    return True


@njit(cache=True, nogil=True)
def ranker_sessions(
    codes: np.ndarray,  # int64 item codes (codes >= n_items: unknown items, skipped)
    starts: np.ndarray,  # int64 per request: first history position in ``codes``
    ends: np.ndarray,  # int64 per request: one past the last (exclusive)
    n_items: int,
    embeddings: np.ndarray,  # float32 (n_items, dim)
    indptr: np.ndarray,  # int64 (n_items + 1): item-item neighbours, CSR
    nbr: np.ndarray,  # int64 neighbour item_idx
    nbr_score: np.ndarray,  # neighbour scores
    weights: np.ndarray,  # float32 per step back: the kNN recency weight (``env.decay ** s``)
    n_cand: int,  # at most this many kNN items per request
):
    """What the ranker's micro-batch needs of each request's session, request by request:
    its known items (flat, ``item_bounds``), its session vector (the float32 sum of their
    embeddings, row after row as ``numpy.sum(axis=0)`` adds them), and its session-kNN
    scores (``stage2.knn_scores`` of the last ``len(weights)`` items: each neighbour's score
    times the recency weight, summed in float64 in the order numpy's ``bincount`` adds them,
    then float32), items ascending. Where a request has more than ``n_cand`` kNN items,
    ``keep`` marks its best ``n_cand``; ``tied`` flags a request whose ties straddle the
    cut (there ``numpy.argpartition`` decides which tied items stay, so the caller asks it).
    """
    n_req, dim = len(starts), embeddings.shape[1]
    items, item_bounds = _known_items(codes, starts, ends, n_items)
    vectors = np.zeros((n_req, dim), dtype=np.float32)
    has_vector = np.zeros(n_req, dtype=np.bool_)
    room = 0
    for q in range(n_req):
        a, b = item_bounds[q], item_bounds[q + 1]
        if b > a:
            has_vector[q] = True
            _sum_rows(embeddings, items, a, b, vectors[q])
        for p in range(max(a, b - len(weights)), b):
            room += indptr[items[p] + 1] - indptr[items[p]]
    knn_bounds = np.zeros(n_req + 1, dtype=np.int64)
    knn_item = np.empty(room, dtype=np.int64)
    knn_sum = np.empty(room, dtype=np.float32)
    keep = np.ones(room, dtype=np.bool_)
    tied = np.zeros(n_req, dtype=np.bool_)
    acc = np.zeros(n_items, dtype=np.float64)
    words = np.zeros((n_items + 63) // 64, dtype=np.uint64)
    span = np.array([len(words), 0], dtype=np.int64)
    no_stamp = np.zeros(n_items, dtype=np.int64)  # skips nothing (mark -1)
    out = 0
    for q in range(n_req):
        a, b = item_bounds[q], item_bounds[q + 1]
        for p in range(max(a, b - len(weights)), b):
            w = weights[b - 1 - p]
            for j in range(indptr[items[p]], indptr[items[p] + 1]):
                nb = nbr[j]
                if not words[nb >> 6] & (np.uint64(1) << np.uint64(nb & 63)):
                    acc[nb] = 0.0
                    _mark(words, nb, span)
                acc[nb] += np.float64(nbr_score[j] * w)
        start = out
        out = _read_bits(words, span, no_stamp, -1, knn_item, out)
        for j in range(start, out):
            knn_sum[j] = np.float32(acc[knn_item[j]])
        knn_bounds[q + 1] = out
        if out - start > n_cand:
            tied[q] = not _cut(knn_sum[start:out], n_cand, keep[start:out])
    return (
        items,
        item_bounds,
        vectors,
        has_vector,
        knn_item[:out],
        knn_sum[:out],
        knn_bounds,
        keep[:out],
        tied,
    )


@njit(cache=True, nogil=True)
def ranker_candidates(
    has_vector: np.ndarray,  # bool per request
    lists: np.ndarray,  # int64 (requests, lists per request): probed IVF lists (rows without
    # a vector ignored)
    offsets: np.ndarray,  # int64 (n_lists + 1): where each list starts in ``list_items``
    list_items: np.ndarray,  # int64 item_idx, list by list
    knn_item: np.ndarray,  # int64 kNN items, ascending per request
    knn_score: np.ndarray,  # float32 their scores
    knn_bounds: np.ndarray,  # int64 (requests + 1)
    keep: np.ndarray,  # bool per kNN item: among its request's best ``n_cand``
    popular: np.ndarray,  # int64 every item_idx, most popular first
    n_cand: int,
    seen: np.ndarray,  # int64 items no list may hold, request after request
    seen_bounds: np.ndarray,  # int64 (requests + 1)
    n_items: int,
):
    """Every request's candidates (``OnlineRanker._generate``): the items of its probed lists
    and its kept kNN items (the popularity list's first ``n_cand`` unseen items for a session
    without a known item), its seen items left out, distinct and ascending — set as bits of
    an item bitmap and read back in order. Returns the candidates (flat), their bounds per
    request, the kept kNN keys (request * n_items + item, ascending) with their scores, and
    each request's best kept kNN score (0 when none)."""
    n_req = len(has_vector)
    room = n_cand * n_req + len(knn_item)
    for q in range(n_req):
        if has_vector[q]:
            for lst in lists[q]:
                room += offsets[lst + 1] - offsets[lst]
    cand = np.empty(room, dtype=np.int64)
    bounds = np.zeros(n_req + 1, dtype=np.int64)
    knn_keys = np.empty(len(knn_item), dtype=np.int64)
    knn_kept = np.empty(len(knn_item), dtype=np.float32)
    knn_best = np.zeros(n_req, dtype=np.float32)
    words = np.zeros((n_items + 63) // 64, dtype=np.uint64)
    span = np.array([len(words), 0], dtype=np.int64)
    stamp = np.zeros(n_items, dtype=np.int64)
    out = 0
    kept = 0
    for q in range(n_req):
        mark = q + 1
        for p in range(seen_bounds[q], seen_bounds[q + 1]):
            stamp[seen[p]] = mark
        if has_vector[q]:
            for lst in lists[q]:
                for p in range(offsets[lst], offsets[lst + 1]):
                    _mark(words, list_items[p], span)
            for j in range(knn_bounds[q], knn_bounds[q + 1]):
                if keep[j]:
                    _mark(words, knn_item[j], span)
                    knn_keys[kept] = q * n_items + knn_item[j]
                    knn_kept[kept] = knn_score[j]
                    knn_best[q] = max(knn_best[q], knn_score[j])
                    kept += 1
        else:
            limit = min(len(popular), n_cand + seen_bounds[q + 1] - seen_bounds[q])
            taken = 0
            for p in range(limit):
                if taken < n_cand and stamp[popular[p]] != mark:
                    _mark(words, popular[p], span)
                    taken += 1
        out = _read_bits(words, span, stamp, mark, cand, out)
        bounds[q + 1] = out
    return cand[:out], bounds, knn_keys[:kept], knn_kept[:kept], knn_best


@njit(cache=True, nogil=True)
def gather_columns(table: np.ndarray, rows: np.ndarray, out: np.ndarray, col: int) -> None:
    """``out[:, col:col + table.shape[1]] = table[rows]`` without the temporary."""
    for i in range(len(rows)):
        for j in range(table.shape[1]):
            out[i, col + j] = table[rows[i], j]


@njit(cache=True, nogil=True)
def _move_delta(key, delta, p_add, hi, p_rem, lo):
    """Walk the per-window deltas forward: events before ``hi`` published (+1 in every
    window), events before ``lo[w]`` gone from window w (-1); returns the new ``p_add``."""
    while p_add < hi:
        for w in range(delta.shape[0]):
            delta[w, key[p_add]] += 1
        p_add += 1
    for w in range(delta.shape[0]):
        while p_rem[w] < lo[w]:
            delta[w, key[p_rem[w]]] -= 1
            p_rem[w] += 1
    return p_add


@njit(cache=True, nogil=True)
def window_features_many(
    counts: np.ndarray,  # int32 (windows, 2 * n_items): the published state
    key: np.ndarray,  # int64 per stream event: 2 * item + kind, time order
    add_from: int,
    remove_from: np.ndarray,  # int64 per window
    hi: np.ndarray,  # int64 per request
    lo: np.ndarray,  # int64 (windows, requests)
    bounds: np.ndarray,  # int64 (requests + 1): rows of request r
    items: np.ndarray,  # int64 item_idx per row
    delta: np.ndarray,  # int64 (windows, 2 * n_items) zeros: scratch, zeroed again on return
    log1p: np.ndarray,  # float32: numpy's log1p of float32(c) for each count c
    log1p12: np.ndarray,  # float32: numpy's log1p of float32(c) * 12 for each count c
    out: np.ndarray,  # float32 (rows, >= col + 2 * windows + 1)
    col: int,
) -> int:
    """The streaming family's columns (``stage3_batch.streaming_block`` of
    ``window_counts_many``'s counts) written straight into ``out``: the log counts and the
    5-minute-vs-hour trend, looked up in tables numpy computed, so each value is the one
    numpy's ``log1p`` gives. Returns the largest count met; when it is beyond the tables
    nothing is final and the caller grows them and calls again."""
    n_w = counts.shape[0]
    size = len(log1p)
    largest = 0
    p_add = add_from
    p_rem = remove_from.copy()
    for r in range(len(bounds) - 1):
        p_add = _move_delta(key, delta, p_add, hi[r], p_rem, lo[:, r])
        for row in range(bounds[r], bounds[r + 1]):
            view = 2 * items[row]
            for w in range(n_w):
                views = counts[w, view] + delta[w, view]
                carts = counts[w, view + 1] + delta[w, view + 1]
                largest = max(largest, views, carts)
                out[row, col + w] = log1p[min(views, size - 1)]
                out[row, col + n_w + w] = log1p[min(carts, size - 1)]
            c0 = min(counts[0, view] + delta[0, view], size - 1)
            c2 = min(counts[2, view] + delta[2, view], size - 1)  # the hour
            out[row, col + 2 * n_w] = log1p12[c0] - log1p[c2]
    _reset_scratch(delta, key, add_from, p_add, remove_from, p_rem)
    return largest
