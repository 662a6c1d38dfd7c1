"""A batched cosine nearest-neighbour searcher for the replay: an inverted file (IVF) in numpy.

Annoy answers one query per Python call (~50-200 µs on 100k items); a replay asks tens of
thousands. ``IVFIndex`` answers a whole micro-batch of requests at once: spherical k-means
splits the unit item embeddings into ``n_lists`` lists (built in memory when a replay
starts; the published index on disk stays the Annoy one), a query probes its ``nprobe``
nearest lists, and every probed list is scored against all the batch's queries that probe
it with one matrix product. The answer is the exact cosine top-n among the probed lists,
ties broken by item_idx, so a request's answer does not depend on the other requests of
its batch. Its recall against exact search is measured in ``bench/bench_simulate.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_NPROBE = 2  # recall@20 0.985 vs exact on the large world (bench/RESULTS.md)
RESCORE_MARGIN = 8  # items selected beyond n by the fast scores, before the exact rescoring
# bump when IVFIndex's construction changes: cached lists of an older build are not read
CACHE_FORMAT = 1
#: The cache keeps the lists of this many sets of embeddings, the most recently used: a
#: daily precompute makes new embeddings every day, whose lists would otherwise pile up.
CACHE_KEEP = 16
#: A temporary file this old is a write that was killed (a live one takes seconds).
STALE_TMP_SECONDS = 3600


def default_lists(n_items: int) -> int:
    """About 2·√n lists (~350 on 30k items, ~690 on 117k): small lists, cheap probes."""
    return max(1, min(n_items, round(2 * math.sqrt(n_items))))


class IVFIndex:
    """Inverted lists over ``unit`` (n_items, dim) unit vectors, from spherical k-means.

    ``n_lists`` (default ``default_lists``), ``iterations`` of Lloyd's algorithm on a sample
    of at most ``sample`` items, seeded by ``seed`` (the same inputs give the same lists)."""

    def __init__(
        self,
        unit: np.ndarray,
        *,
        n_lists: int | None = None,
        iterations: int = 6,
        sample: int = 30_000,
        seed: int = 0,
    ) -> None:
        unit = np.ascontiguousarray(unit, dtype=np.float32)
        n = len(unit)
        n_lists = default_lists(n) if n_lists is None else max(1, min(n_lists, n))
        rng = np.random.default_rng(seed)
        train = unit if n <= sample else unit[np.sort(rng.choice(n, sample, replace=False))]
        centroids = train[np.sort(rng.choice(len(train), n_lists, replace=False))].copy()
        for _ in range(iterations):
            assign = np.argmax(train @ centroids.T, axis=1)
            order = np.argsort(assign, kind="stable")
            counts = np.bincount(assign, minlength=n_lists)
            sums = np.zeros_like(centroids)
            filled = np.flatnonzero(counts)
            starts = np.r_[0, np.cumsum(counts)[:-1]][filled]
            sums[filled] = np.add.reduceat(train[order], starts, axis=0)
            norms = np.linalg.norm(sums, axis=1, keepdims=True)
            empty = norms[:, 0] < 1e-12
            centroids = np.where(empty[:, None], centroids, sums / np.maximum(norms, 1e-12))
        assign = np.argmax(unit @ centroids.T, axis=1) if n else np.zeros(0, np.int64)
        order = np.argsort(assign, kind="stable")  # items by list, ascending item_idx in each
        self._set(unit, centroids, np.bincount(assign, minlength=n_lists), order)

    def _set(self, unit: np.ndarray, centroids: np.ndarray, sizes: np.ndarray, order) -> None:
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.centroids64 = self.centroids.astype(np.float64)
        self.sizes = np.asarray(sizes).astype(np.int64)
        self.offsets = np.r_[0, np.cumsum(self.sizes)].astype(np.int64)
        self.items = np.asarray(order).astype(np.int64)  # item_idx, list by list
        self.unit = unit
        self.vectors = np.ascontiguousarray(unit[self.items])  # the same rows, per list
        self.n_lists = len(self.sizes)

    @classmethod
    def cached(cls, unit: np.ndarray, *, seed: int = 0) -> IVFIndex:
        """``IVFIndex(unit, seed=seed)``, its lists kept on disk (``cache_dir``) under a hash
        of ``unit``'s bytes, the seed and ``CACHE_FORMAT``: the k-means runs once per set of
        embeddings, and a later replay reads back the very lists it built. Without a cache
        directory, or when the file is unreadable, it is built (and written when it can be,
        atomically: a reader sees a whole file or none)."""
        unit = np.ascontiguousarray(unit, dtype=np.float32)
        directory = cache_dir()
        if directory is None or not len(unit):
            return cls(unit, seed=seed)
        digest = hashlib.blake2b(unit.tobytes(), digest_size=16)
        digest.update(f"{unit.shape}|{seed}|{CACHE_FORMAT}".encode())
        path = directory / f"ivf-{digest.hexdigest()}.npz"
        try:
            with np.load(path) as saved:
                centroids, sizes, items = saved["centroids"], saved["sizes"], saved["items"]
            if (
                int(sizes.sum()) == len(unit) == len(items)
                and centroids.shape == (len(sizes), unit.shape[1])
                and int(items.min()) >= 0
                and int(items.max()) < len(unit)
            ):
                index = cls.__new__(cls)
                index._set(unit, centroids, sizes, items)
                with contextlib.suppress(OSError):
                    os.utime(path)  # used now: the pruning keeps the recently used
                return index
        except (OSError, ValueError, KeyError, EOFError):
            pass  # absent or unreadable: build it
        index = cls(unit, seed=seed)
        written = None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=directory, prefix="ivf-", suffix=".tmp", delete=False
            ) as tmp:
                written = tmp.name
                np.savez(tmp, centroids=index.centroids, sizes=index.sizes, items=index.items)
            os.replace(written, path)
        except OSError:  # a read-only or full cache costs the build next time, nothing else
            if written is not None:
                with contextlib.suppress(OSError):
                    os.unlink(written)
        prune_cache(directory, keep=path)
        return index

    def serve(
        self,
        codes: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        embeddings: np.ndarray,
        *,
        k: int,
        nprobe: int,
        decay: float | None = None,
        exclude_seen: bool = True,
    ) -> np.ndarray:
        """A micro-batch of session requests in one compiled call (``kernels.ivf_serve``).

        Request ``q``'s history is ``codes[starts[q]:ends[q]]`` (codes >= the number of items
        are unknown items, skipped); its session vector is the sum (``decay``: the
        position-decayed sum) of their ``embeddings``. Returns (len(starts), k) item_idx,
        best cosine first (ties: lower item_idx), the history's items left out when
        ``exclude_seen``; -1 where the probed lists run dry; a row starting with -2 for a
        request without a known item."""
        from rtml_cli.online.kernels import ivf_serve

        return ivf_serve(
            np.ascontiguousarray(codes, dtype=np.int64),
            np.ascontiguousarray(starts, dtype=np.int64),
            np.ascontiguousarray(ends, dtype=np.int64),
            len(self.items),
            np.ascontiguousarray(embeddings, dtype=np.float32),
            0.0 if decay is None else float(decay),
            self.centroids64,
            self.vectors,
            self.offsets,
            self.items,
            int(nprobe),
            int(k),
            bool(exclude_seen),
        )

    def probe(self, queries: np.ndarray, nprobe: int) -> np.ndarray:
        """(len(queries), nprobe) ids of each query's nearest lists, ascending."""
        return self._probe(_unit64(np.asarray(queries, dtype=np.float32)), nprobe)

    def members(self, lists: np.ndarray) -> np.ndarray:
        """The item_idx of ``lists`` (list by list, ascending within each)."""
        sizes = self.sizes[lists]
        ends = np.cumsum(sizes)
        shift = np.repeat(self.offsets[lists] - (ends - sizes), sizes)
        return self.items[shift + np.arange(int(ends[-1]) if len(ends) else 0)]

    def _probe(self, q64: np.ndarray, nprobe: int) -> np.ndarray:
        nprobe = max(1, min(nprobe, self.n_lists))
        if nprobe >= self.n_lists:
            return np.broadcast_to(np.arange(self.n_lists), (len(q64), self.n_lists))
        # float64: a list's rank never hinges on how BLAS rounded for this batch's shape
        near = q64 @ self.centroids64.T
        if nprobe > 4:
            probe = np.argpartition(-near, nprobe - 1, axis=1)[:, :nprobe]
        else:  # a few argmax passes beat a partition of every row
            probe = np.empty((len(q64), nprobe), dtype=np.int64)
            rows = np.arange(len(q64))
            for p in range(nprobe):
                probe[:, p] = np.argmax(near, axis=1)
                near[rows, probe[:, p]] = -np.inf
        return np.sort(probe, axis=1)  # list order within a row: independent of the batch

    def search(self, queries: np.ndarray, n: int, nprobe: int) -> np.ndarray:
        """(len(queries), n) item_idx, best cosine first (ties: lower item_idx first), among
        each query's ``nprobe`` nearest lists; -1 where those lists hold fewer than n items."""
        queries = np.asarray(queries, dtype=np.float32)
        n_q = len(queries)
        out = np.full((n_q, n), -1, dtype=np.int64)
        if n_q == 0 or n <= 0 or not len(self.items):
            return out
        q64 = _unit64(queries)
        q = q64.astype(np.float32)
        probe = self._probe(q64, nprobe)
        sizes = self.sizes[probe]
        starts = np.cumsum(sizes, axis=1) - sizes  # where each probed list goes in its row
        width = int(sizes.sum(axis=1).max())
        scores = np.full(n_q * width, -np.inf, dtype=np.float32)
        # where each (query, probed list) segment starts in the flat (n_q, width) scores
        seg_start = (starts + np.arange(n_q)[:, None] * width).ravel()
        flat_list = probe.ravel()
        flat_query = np.repeat(np.arange(n_q), probe.shape[1])
        by_list = np.argsort(flat_list, kind="stable")
        bounds = np.searchsorted(flat_list[by_list], np.arange(self.n_lists + 1))
        for lst in np.flatnonzero(np.diff(bounds)):
            lo, hi = self.offsets[lst], self.offsets[lst + 1]
            if hi == lo:
                continue
            pairs = by_list[bounds[lst] : bounds[lst + 1]]
            dest = seg_start[pairs][:, None] + np.arange(hi - lo)
            scores[dest] = q[flat_query[pairs]] @ self.vectors[lo:hi].T
        grid = scores.reshape(n_q, width)
        # BLAS rounds a product differently for different batch shapes: select a few more
        # than n by those scores, then rescore the selection exactly (float64, one fixed
        # summation order per item) so the answer never depends on the batch
        take = min(n + RESCORE_MARGIN, width)
        if take < width:
            top = np.argpartition(-grid, take - 1, axis=1)[:, :take]
        else:
            top = np.broadcast_to(np.arange(width), (n_q, width))
        flat_pos = (top + np.arange(n_q)[:, None] * width).ravel()
        seg = np.searchsorted(seg_start, flat_pos, side="right") - 1
        lists, within = flat_list[seg], flat_pos - seg_start[seg]
        inside = within < self.sizes[lists]
        top_ids = np.where(
            inside, self.items[self.offsets[lists] + np.where(inside, within, 0)], -1
        )
        top_ids = top_ids.reshape(n_q, -1)
        missing = top_ids < 0
        exact = (self.unit[np.maximum(top_ids, 0)].astype(np.float64) * q64[:, None, :]).sum(-1)
        exact[missing] = -np.inf
        order = np.lexsort((top_ids, -exact), axis=-1)[:, :n]
        ranked = np.take_along_axis(top_ids, order, axis=1)
        ranked[np.take_along_axis(missing, order, axis=1)] = -1
        out[:, : ranked.shape[1]] = ranked
        return out


def cache_dir() -> Path | None:
    """Where the replay keeps what it derives from the artifacts (the IVF lists):
    ``$RTML_CACHE_DIR``, else ``$XDG_CACHE_HOME/rtml``, else ``~/.cache/rtml``; None when
    ``RTML_CACHE_DIR`` is ``off`` (or empty)."""
    chosen = os.environ.get("RTML_CACHE_DIR")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "no") else Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "rtml"


#: The names of the cache's files, and only these are ever removed: ``IVFIndex.cached``'s
#: lists (a 128-bit hex digest) and its temporary files (``tempfile``'s 8 characters), so
#: that a cache directory shared with other programs loses nothing of theirs.
_CACHE_FILE = re.compile(r"ivf-[0-9a-f]{32}\.npz")
_CACHE_TMP = re.compile(r"ivf-[a-z0-9_]{8}\.tmp")


def prune_cache(directory: Path, keep: Path | None = None) -> None:
    """Keep the ``CACHE_KEEP`` most recently used lists in ``directory`` (``keep``, just
    written, among them) and remove temporary files left by killed writes. Best effort:
    another replay may be pruning or writing at the same time."""
    now = time.time()
    found: list[tuple[float, Path]] = []
    for path in directory.glob("ivf-*"):
        with contextlib.suppress(OSError):
            if _CACHE_FILE.fullmatch(path.name):
                found.append((path.stat().st_mtime, path))
            elif _CACHE_TMP.fullmatch(path.name) and now - path.stat().st_mtime > STALE_TMP_SECONDS:
                path.unlink()
    found.sort(key=lambda f: (f[1] != keep, -f[0], f[1].name))
    for _, path in found[CACHE_KEEP:]:
        with contextlib.suppress(OSError):
            path.unlink()


def _unit64(queries: np.ndarray) -> np.ndarray:
    """``queries`` in float64, scaled to unit length (zero rows stay zero)."""
    q64 = np.asarray(queries, dtype=np.float64).copy()
    q64 /= np.maximum(np.sqrt((q64 * q64).sum(axis=1, keepdims=True)), 1e-12)
    return q64
