"""Streaming features: per-item view and cart counts over sliding windows, at a freshness lag.

A streaming job (Flink SQL, KSQL, Spark Streaming) consumes the event stream and
publishes, for every item, the number of views and carts in the last 5 / 30 / 60
minutes to an online store. The ranker reads that store, so what it sees at request
time ``T`` is the state the job published ``lag`` earlier: the counts of events with
``T - lag - window <= ts < T - lag``.

``WindowedCounts`` maintains exactly that incrementally while the replay moves
forward in time: two pointers per window into the time-ordered event arrays, one
adding events as they become visible and one removing them as they leave the
window. The state at ``T`` depends only on ``T`` and the full event stream, never on
which requests were asked before — so a sharded replay (which asks only some of the
requests) sees the same counts as a single run.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np

WINDOWS = (timedelta(minutes=5), timedelta(minutes=30), timedelta(minutes=60))
VIEW, CART = 0, 1
US = 1_000_000


def _us(delta: timedelta) -> int:
    return round(delta.total_seconds() * US)


class WindowedCounts:
    """Views and carts per item in sliding windows, visible after ``lag``.

    ``ts`` (int64 µs, non-decreasing), ``item`` (item_idx) and ``kind`` (``VIEW`` or
    ``CART``) describe the whole stream, in time order. ``advance(now)`` must be
    called with non-decreasing ``now``; ``counts`` then holds, for window ``w``,
    ``counts[w, 2 * item + kind]``.
    """

    def __init__(
        self,
        ts: np.ndarray,
        item: np.ndarray,
        kind: np.ndarray,
        n_items: int,
        *,
        lag: timedelta = timedelta(0),
        windows: tuple[timedelta, ...] = WINDOWS,
    ) -> None:
        self.ts = np.ascontiguousarray(ts, dtype=np.int64)
        self.key = np.ascontiguousarray(2 * np.asarray(item, dtype=np.int64) + kind)
        self.lag_us = _us(lag)
        self.lag = lag
        self.windows = windows
        self.window_us = np.array([_us(w) for w in windows], dtype=np.int64)
        self.counts = np.zeros((len(windows), 2 * n_items), dtype=np.int32)
        self._add = -1  # next event to add (-1: not started)
        self._remove = np.zeros(len(windows), dtype=np.int64)
        self.now = np.iinfo(np.int64).min
        self._slot: np.ndarray | None = None  # features_many's key -> column map
        self._delta: np.ndarray | None = None  # features_many's scratch per (window, key)
        self._log_tables = _log_tables(1024)  # features_into's log1p per count

    def advance(self, now_us: int) -> None:
        """Move the published state to request time ``now_us`` (µs since the epoch)."""
        if now_us < self.now:
            raise ValueError("the stream only moves forward in time")
        self.now = now_us
        visible_until = now_us - self.lag_us  # events strictly before this are published
        hi = int(np.searchsorted(self.ts, visible_until, side="left"))
        if self._add < 0:  # first call: start each window at its left edge, nothing to remove
            for w, width in enumerate(self.window_us):
                lo = int(np.searchsorted(self.ts, visible_until - width, side="left"))
                self._remove[w] = lo
                if hi > lo:
                    self.counts[w] += np.bincount(
                        self.key[lo:hi], minlength=self.counts.shape[1]
                    ).astype(np.int32)
            self._add = hi
            return
        if hi > self._add:
            keys = self.key[self._add : hi]
            for w in range(len(self.window_us)):
                np.add.at(self.counts[w], keys, 1)
            self._add = hi
        for w, width in enumerate(self.window_us):
            lo = int(np.searchsorted(self.ts, visible_until - width, side="left"))
            start = int(self._remove[w])
            if lo > start:
                np.subtract.at(self.counts[w], self.key[start:lo], 1)
                self._remove[w] = lo

    def features(self, items: np.ndarray) -> np.ndarray:
        """(len(items), 2 * n_windows) counts: views per window, then carts per window."""
        views = self.counts[:, 2 * items].T
        carts = self.counts[:, 2 * items + 1].T
        return np.concatenate([views, carts], axis=1)

    def features_at(self, now_us: int, items: np.ndarray) -> np.ndarray:
        """``features(items)`` as published at ``now_us`` >= ``self.now``, without moving the
        state: the counts now plus the events published since, minus those that left each
        window since. A micro-batch reads each of its requests' own state this way."""
        if now_us < self.now:
            raise ValueError("the stream cannot look back before its state")
        if self._add < 0:
            return self.brute_force(now_us, items).astype(self.counts.dtype)
        visible_until = now_us - self.lag_us
        hi = int(np.searchsorted(self.ts, visible_until, side="left"))
        out = self.features(items).astype(np.int64)
        n_w = len(self.window_us)
        keys = np.stack([2 * items, 2 * items + 1])  # (kind, item)
        added = _count_in(self.key[self._add : hi], keys)
        for w, width in enumerate(self.window_us):
            lo = int(np.searchsorted(self.ts, visible_until - width, side="left"))
            removed = _count_in(
                self.key[int(self._remove[w]) : max(lo, int(self._remove[w]))], keys
            )
            out[:, w] += added[0] - removed[0]
            out[:, n_w + w] += added[1] - removed[1]
        return out.astype(self.counts.dtype)

    def features_many(self, times: np.ndarray, req: np.ndarray, items: np.ndarray) -> np.ndarray:
        """``features_at(times[req[i]], items[i])`` for every row ``i`` at once (``times``
        non-decreasing, all >= ``self.now``): a micro-batch's rows, each at its request's time.

        The events published or expired between the state and a request are few; their
        counts per request come from a cumulative (request × touched key) table."""
        times = np.asarray(times, dtype=np.int64)
        if len(times) and times[0] < self.now:
            raise ValueError("the stream cannot look back before its state")
        if self._add < 0:
            out = np.zeros((len(items), 2 * len(self.windows)), dtype=self.counts.dtype)
            for r in np.unique(req):
                rows = req == r
                out[rows] = self.brute_force(int(times[r]), items[rows])
            return out
        n_req, n_w = len(times), len(self.window_us)
        visible_until = times - self.lag_us
        req = np.asarray(req, dtype=np.int64)
        if n_req and len(req) and bool(np.all(req[1:] >= req[:-1])):
            return self._features_grouped(visible_until, req, items)
        out = self.features(items).astype(np.int64)
        if not n_req:
            return out.astype(self.counts.dtype)
        # delta events and the first request each one reaches: channel 0 published since the
        # state (+1), channel 1 + w left window w since the state (-1)
        keys, first, channel = [], [], []
        hi = np.searchsorted(self.ts, visible_until, side="left")
        if hi[-1] > self._add:
            pos = np.arange(self._add, hi[-1])
            keys.append(self.key[pos])
            first.append(np.searchsorted(hi, pos, side="right"))
            channel.append(np.zeros(len(pos), np.int64))
        for w, width in enumerate(self.window_us):
            lo = np.searchsorted(self.ts, visible_until - width, side="left")
            start = int(self._remove[w])
            if lo[-1] > start:
                pos = np.arange(start, lo[-1])
                keys.append(self.key[pos])
                first.append(np.searchsorted(lo, pos, side="right"))
                channel.append(np.full(len(pos), 1 + w, np.int64))
        if not keys:
            return out.astype(self.counts.dtype)
        all_keys = np.concatenate(keys)
        touched, which = np.unique(all_keys, return_inverse=True)
        table = np.zeros((n_req + 1, len(touched), 1 + n_w), dtype=np.int64)
        np.add.at(table, (np.concatenate(first), which, np.concatenate(channel)), 1)
        table = np.cumsum(table, axis=0)[:n_req]
        # key -> its column in ``table`` (-1: untouched), a dense map reset after use
        if self._slot is None:
            self._slot = np.full(self.counts.shape[1], -1, dtype=np.int64)
        self._slot[touched] = np.arange(len(touched))
        try:
            for kind in (0, 1):
                at = self._slot[2 * np.asarray(items, dtype=np.int64) + kind]
                hit = np.flatnonzero(at >= 0)
                delta = table[req[hit], at[hit]]  # (hits, 1 + n_w)
                out[hit[:, None], kind * n_w + np.arange(n_w)] += delta[:, :1] - delta[:, 1:]
        finally:
            self._slot[touched] = -1
        return out.astype(self.counts.dtype)

    def _features_grouped(
        self, visible_until: np.ndarray, req: np.ndarray, items: np.ndarray
    ) -> np.ndarray:
        """``features_many`` for rows grouped by request (a micro-batch's candidates): one
        compiled walk forward through the requests (``kernels.window_counts_many``)."""
        from rtml_cli.online.kernels import window_counts_many

        n_req = len(visible_until)
        hi = np.searchsorted(self.ts, visible_until, side="left")
        lo = np.stack(
            [
                np.searchsorted(self.ts, visible_until - width, side="left")
                for width in self.window_us
            ]
        )
        if self._delta is None:
            self._delta = np.zeros(self.counts.shape, dtype=np.int64)
        out = window_counts_many(
            self.counts,
            self.key,
            self._add,
            self._remove,
            hi.astype(np.int64),
            lo.astype(np.int64),
            np.searchsorted(req, np.arange(n_req + 1)).astype(np.int64),
            np.asarray(items, dtype=np.int64),
            self._delta,
        )
        return out.astype(self.counts.dtype)

    def features_into(
        self,
        times: np.ndarray,
        bounds: np.ndarray,
        items: np.ndarray,
        out: np.ndarray,
        col: int,
    ) -> None:
        """The ranker's streaming columns (``stage3_batch.streaming_block`` of
        ``features_many``) of rows grouped by request (request ``r``'s rows
        ``bounds[r]:bounds[r + 1]``, at ``times[r]``) written into ``out[:, col:]`` in one
        compiled walk (``kernels.window_features_many``): no count matrix, no temporaries."""
        from rtml_cli.online.kernels import window_features_many

        times = np.asarray(times, dtype=np.int64)
        if len(times) and times[0] < self.now:
            raise ValueError("the stream cannot look back before its state")
        if self._add < 0 or not len(times) or len(self.windows) != 3:
            from rtml_cli.online.stage3_batch import streaming_block

            req = np.repeat(np.arange(len(times), dtype=np.int64), np.diff(bounds))
            if len(items):
                out[:, col : col + 2 * len(self.windows) + 1] = streaming_block(
                    self.features_many(times, req, items)
                )
            return
        visible_until = times - self.lag_us
        hi = np.searchsorted(self.ts, visible_until, side="left").astype(np.int64)
        lo = np.stack(
            [
                np.searchsorted(self.ts, visible_until - width, side="left")
                for width in self.window_us
            ]
        ).astype(np.int64)
        if self._delta is None:
            self._delta = np.zeros(self.counts.shape, dtype=np.int64)
        while True:
            log1p, log1p12 = self._log_tables
            largest = window_features_many(
                self.counts,
                self.key,
                self._add,
                self._remove,
                hi,
                lo,
                np.asarray(bounds, dtype=np.int64),
                np.asarray(items, dtype=np.int64),
                self._delta,
                log1p,
                log1p12,
                out,
                col,
            )
            if largest < len(log1p):
                return
            self._log_tables = _log_tables(max(2 * len(log1p), largest + 1))

    def brute_force(self, now_us: int, items: np.ndarray) -> np.ndarray:
        """The same counts recomputed from scratch (for tests)."""
        visible_until = now_us - self.lag_us
        out = np.zeros((len(items), 2 * len(self.windows)), dtype=np.int64)
        for w, width in enumerate(self.window_us):
            mask = (self.ts >= visible_until - width) & (self.ts < visible_until)
            counts = np.bincount(self.key[mask], minlength=self.counts.shape[1])
            out[:, w] = counts[2 * items]
            out[:, len(self.windows) + w] = counts[2 * items + 1]
        return out


def _log_tables(size: int) -> tuple[np.ndarray, np.ndarray]:
    """numpy's float32 ``log1p(c)`` and ``log1p(c * 12)`` for every count c < ``size``: the
    values ``stage3_batch.streaming_block`` computes, looked up instead of recomputed."""
    counts = np.arange(size).astype(np.float32)
    return np.log1p(counts), np.log1p(counts * 12.0)


def _count_in(events: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """How often each of ``keys`` occurs in ``events`` (same shape as ``keys``)."""
    if not len(events):
        return np.zeros(keys.shape, dtype=np.int64)
    uniq, counts = np.unique(events, return_counts=True)
    pos = np.minimum(np.searchsorted(uniq, keys), len(uniq) - 1)
    return np.where(uniq[pos] == keys, counts[pos], 0)
