"""`rtml neighbors`: an item's nearest items from a published run, for a human sanity check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import InputMissing, UsageError

METHODS = ("embedding", "cf")


def _lookup_idx(artifacts, item: str) -> int:
    ids = artifacts.item_ids
    key: Any = item
    if np.issubdtype(ids.dtype, np.integer):
        try:
            key = int(item)
        except ValueError:
            key = None
    idx = artifacts.id_to_idx.get(key, -1) if key is not None else -1
    if idx < 0:
        raise InputMissing(
            f"item {item!r} is not in the precompute run {artifacts.run_dir.name} "
            f"({artifacts.n_items:,} items): check the id"
        )
    return idx


def nearest_items(path: str | Path, item: str, *, k: int = 10, method: str = "embedding") -> dict:
    """The ``k`` nearest items to ``item`` by embedding cosine (Annoy) or by item-item CF."""
    from rtml_cli.batch.artifacts import load_artifacts

    if method not in METHODS:
        raise UsageError(f"--by {method!r} is not one of {', '.join(METHODS)}")
    if k < 1:
        raise UsageError(f"--k {k} must be at least 1")
    art = load_artifacts(path)
    idx = _lookup_idx(art, item)
    features = art.item_features.sort("item_idx")
    category = features["category"].to_list()
    title = features["title"].to_list() if "title" in features.columns else [None] * art.n_items
    found: list[tuple[int, float]] = []
    if method == "embedding":
        if idx < (art.n_indexed if art.n_indexed is not None else art.n_items):
            ids, dist = art.index.get_nns_by_item(idx, k + 1, -1, include_distances=True)
        else:  # new since the delta run's kept index was built: look it up by its vector
            vector = art.embeddings[idx].tolist()
            ids, dist = art.index.get_nns_by_vector(vector, k + 1, -1, include_distances=True)
        found = [(i, 1.0 - d * d / 2.0) for i, d in zip(ids, dist, strict=True) if i != idx][:k]
    else:
        indptr, dst, score = art.neighbor_lists
        lo, hi = indptr[idx], indptr[idx + 1]
        found = list(zip(dst[lo:hi].tolist(), score[lo:hi].tolist(), strict=True))[:k]

    def row(i: int) -> dict:
        value = art.item_ids[i]
        value = value.item() if hasattr(value, "item") else value
        return {"item_id": value, "category": category[i], "title": title[i]}

    return {
        "run_id": art.run_dir.name,
        "method": method,
        "item": row(idx),
        "neighbors": [
            {"rank": r, **row(i), "score": round(float(s), 6)}
            for r, (i, s) in enumerate(found, start=1)
        ],
    }
