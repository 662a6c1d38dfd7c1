"""Per-request metrics from the served lists, and their summaries.

Everything is computed after the replay loop, vectorised over requests, so it costs
nothing in the measured latency.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def request_metrics(lists: np.ndarray, truth, n_items: int) -> dict[str, np.ndarray]:
    """Metrics per request for one strategy. ``lists`` is (n_requests, k) item_idx, -1 padded.

    The truth is one item, so NDCG@K = 1 / log2(rank + 1) when it is in the list.
    """
    n, k = lists.shape
    eq = lists == truth.next_code[:, None]
    present = eq.any(axis=1) & (truth.next_code >= 0)
    rank = np.where(present, eq.argmax(axis=1) + 1, 0)
    rr = np.where(present, 1.0 / np.maximum(rank, 1), 0.0)
    ndcg = np.where(present, 1.0 / np.log2(np.maximum(rank, 1) + 1.0), 0.0)
    # any later item: membership of (request, item) pairs
    top = max(n_items, int(truth.later_code.max(initial=0)), int(lists.max(initial=0)))
    width = np.int64(top) + 1  # every item code (unknown ones too) is below this
    later_keys = truth.later_req * width + truth.later_code
    list_keys = (np.arange(n, dtype=np.int64)[:, None] * width + lists).ravel()
    found = _member(later_keys, list_keys)
    hit_later = np.bincount(truth.later_req[found], minlength=n) > 0
    has_purchase = truth.purchase_code >= 0
    hit_purchase = (lists == truth.purchase_code[:, None]).any(axis=1) & has_purchase
    return {
        "has_truth": truth.next_code >= 0,
        "rank": rank,
        "hit": present,
        "rr": rr,
        "ndcg": ndcg,
        "hit_later": hit_later,
        "hit_purchase": hit_purchase,
        "has_purchase": has_purchase,
    }


def _member(keys: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """``np.isin(keys, pool)`` by sorting only ``pool`` and binary-searching ``keys`` (isin
    sorts both together: 6 s of a 25 s replay of 88k requests, 0.3 s this way)."""
    if not len(pool):
        return np.zeros(len(keys), bool)
    pool = np.sort(pool)
    at = np.searchsorted(pool, keys).clip(max=len(pool) - 1)
    return pool[at] == keys


def _pct(values: np.ndarray, q: float) -> float | None:
    return float(np.percentile(values, q)) if len(values) else None


def summarise(
    strategy: str,
    segment_name: str,
    mask: np.ndarray,
    metrics: dict[str, np.ndarray],
    latency_us: np.ndarray,
    lists: np.ndarray,
    n_items: int,
) -> dict[str, Any]:
    """One summary row: HR/MRR/NDCG@K, later/purchase hit rates, coverage, latency (ms).

    Denominators: ``requests`` counts every request served (coverage and latency are over
    them); HR/MRR/NDCG and ``hr_later`` count only the requests that have a truth
    (``requests - requests_without_truth``: a request whose session brings nothing new is
    not a miss); ``hr_purchase`` the ``purchase_requests``."""
    n = int(mask.sum())
    truth_mask = mask & metrics["has_truth"]
    purchase_mask = mask & metrics["has_purchase"]
    # one flag per item (the spare last slot takes the -1 padding): a scatter, not a sort
    listed = np.zeros(n_items + 1, dtype=bool)
    listed[lists[mask].ravel()] = True
    coverage = int(listed[:n_items].sum()) / n_items if n_items else 0.0
    lat = latency_us[mask]

    def mean(name: str, m: np.ndarray = mask) -> float | None:
        return float(metrics[name][m].mean()) if m.any() else None

    def latency_ms(q: float) -> float | None:
        p = _pct(lat, q)  # None exactly when no request was served (n == 0)
        return None if p is None else p / 1000

    return {
        "strategy": strategy,
        "segment": segment_name,
        "requests": n,
        "requests_with_truth": int(truth_mask.sum()),  # the denominator of hr … hr_later
        "requests_without_truth": n - int(truth_mask.sum()),
        "hr": mean("hit", truth_mask),
        "mrr": mean("rr", truth_mask),
        "ndcg": mean("ndcg", truth_mask),
        "hr_later": mean("hit_later", truth_mask),
        "hr_purchase": mean("hit_purchase", purchase_mask),
        "purchase_requests": int(purchase_mask.sum()),
        "coverage": coverage if n else None,
        "latency_p50_ms": latency_ms(50),
        "latency_p95_ms": latency_ms(95),
        "latency_p99_ms": latency_ms(99),
    }
