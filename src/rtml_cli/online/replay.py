"""Turning an event log into a replay: sessions, requests, truth and the event stream.

Everything here is vectorised (Polars, then numpy arrays); the per-request loop in
``engine.py`` only slices these arrays.

Definitions (documented in docs/replay-protocol.md):
- events are ordered by ``ts``; ties keep the order of the input within a session;
- a *request* is made at every event of a session after its first whose ``ts`` lies in
  the replay window ``[start, end)``; the request sees the session's earlier events
  (its *history*) and happens at the event's ``ts``;
- the *truth* of a request is what the visitor did next, by protocol
  (``base.PROTOCOLS``). ``next-unseen``: the first item, from the request's event on,
  that is not in the history (lists exclude seen items, so a re-view is never something
  a list could have shown); ``later`` are all such items until the session ends; the
  *purchase truth* is the item of the first cart or purchase from the request's event on,
  if that item was not seen before. ``next-item`` (published session-based benchmarks):
  the request's own event's item, re-views included; ``later`` every item from there to
  the session's end; the purchase truth the first cart or purchase item from there. A
  request whose session brings nothing new (``next-unseen`` only) has *no truth*: it is
  not a miss, and metrics leave it out of their denominators;
- the *segment* of a session is ``anonymous`` (no user id), ``returning`` (a user the
  artifacts know: in ``user_features``) or ``new``.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, overload

import numpy as np

from rtml_cli.errors import DataError, UsageError
from rtml_cli.online.base import DEFAULT_PROTOCOL, Request
from rtml_cli.online.streaming import WindowedCounts

SEGMENTS = ("anonymous", "new", "returning")
EVENT_CODES = {"view": 0, "cart": 1, "purchase": 2}  # anything else: 3
US = 1_000_000


def to_us(value: datetime) -> int:
    """A datetime (naive = UTC) as integer µs since the epoch."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds


def from_us(value: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=int(value))


class EmptyWindow(DataError):
    """The events hold rows, but none in the replay window."""


def parse_shard(spec: str | tuple[int, int] | None) -> tuple[int, int] | None:
    """``"i/n"`` (1-based, 1 <= i <= n) → (i, n)."""
    if spec is None:
        return None
    if isinstance(spec, tuple):
        i, n = spec
    else:
        parts = str(spec).split("/")
        try:
            i, n = (int(p) for p in parts)
        except ValueError:
            raise UsageError(f"invalid shard {spec!r}: use i/n, e.g. 1/4") from None
    if n < 1 or not 1 <= i <= n:
        raise UsageError(f"invalid shard {i}/{n}: need 1 <= i <= n, e.g. 1/4 ... 4/4")
    return int(i), int(n)


def parse_sample(spec: str | float | None) -> tuple[str, float] | None:
    """``"10%"`` → ("share", 0.1); ``"500"`` → ("sessions", 500); None → None."""
    if spec is None:
        return None
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            share = float(text[:-1]) / 100
            if not 0 < share <= 1:
                raise ValueError
            return "share", share
        count = int(text)
        if count < 1:
            raise ValueError
        return "sessions", float(count)
    except ValueError:
        raise UsageError(
            f"invalid --sample {spec!r}: a share in (0, 100%], e.g. 10%, or a number of "
            "sessions >= 1, e.g. 5000"
        ) from None


def shard_of(session_ids: list[str], n: int) -> np.ndarray:
    """0-based shard of each session: CRC-32 of the UTF-8 session id, modulo ``n``.

    CRC-32 is stable across machines, Python versions and processes (unlike ``hash``),
    so shards computed anywhere agree.
    """
    return np.fromiter(
        (zlib.crc32(str(s).encode()) % n for s in session_ids),
        dtype=np.int64,
        count=len(session_ids),
    )


@dataclass
class ReplayData:
    """The arrays a replay runs on. Session arrays are ordered by (session, ts, input order)."""

    n_items: int  # items known to the artifacts; item codes >= n_items are unknown items
    # per event, session order
    code: np.ndarray  # int64 item code: item_idx, or n_items + k for unknown item k
    ts: np.ndarray  # int64 µs
    event: np.ndarray  # int8 EVENT_CODES
    # per session
    sess_start: np.ndarray  # int64 offset of the session's first event
    sess_len: np.ndarray
    session_ids: list[str]
    user_ids: list[Any]
    segment: np.ndarray  # int8 index into SEGMENTS
    # per request, in replay (time) order; request_id is the global number before sharding
    request_id: np.ndarray
    req_row: np.ndarray  # row of the request's event in the session arrays
    req_sess: np.ndarray
    # the stream: every event with a known item, in time order (all sessions, all shards)
    stream_ts: np.ndarray
    stream_item: np.ndarray
    stream_kind: np.ndarray  # 0 view, 1 cart
    unknown_item_ids: list[Any] = field(default_factory=list)
    window: tuple[int, int] = (0, 0)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_requests(self) -> int:
        return int(len(self.req_row))


def read_events(source: Any) -> Any:
    """A Polars DataFrame of the events contract from a path/glob/dir or a DataFrame."""
    import polars as pl

    from rtml_cli.contracts import EVENTS
    from rtml_cli.fsutil import parquet_files

    if isinstance(source, pl.LazyFrame):
        frame = source.collect()
    elif isinstance(source, pl.DataFrame):
        frame = source
    else:
        files = parquet_files(source, what="events")
        try:
            frame = pl.read_parquet([str(f) for f in files])
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise DataError(f"events {source} are unreadable: {exc}") from None
    missing = [c.name for c in EVENTS.required if c.name not in frame.columns]
    if missing:
        raise DataError(
            f"events lack required column(s) {', '.join(missing)}: "
            "see `rtml data contracts` (ts, user_id, session_id, item_id, event)"
        )
    dtype = frame.schema["ts"]
    if not isinstance(dtype, pl.Datetime):
        raise DataError(f"events column ts must be a timestamp, found {dtype}")
    ts = pl.col("ts")
    ts = (
        ts.dt.replace_time_zone("UTC")
        if dtype.time_zone is None
        else ts.dt.convert_time_zone("UTC")
    )
    return frame.select(
        ts.dt.cast_time_unit("us").alias("ts"),
        pl.col("user_id").cast(pl.String),
        pl.col("session_id").cast(pl.String),
        pl.col("item_id"),
        pl.col("event").cast(pl.String),
    )


def prepare(
    events: Any,
    item_ids: np.ndarray,
    known_users: Iterable[Any],
    *,
    start: int,
    end: int | None,
    shard: tuple[int, int] | None = None,
    stream_from: int | None = None,
    sample: tuple[str, float] | None = None,
) -> ReplayData:
    """Build the replay arrays for requests with ``start <= ts < end``.

    Events at or after ``end`` are dropped before anything is computed, so nothing
    from after the window can reach a strategy or the truth of a later request.
    With ``shard``, only that shard's requests are kept (``stats["requests_all_shards"]``
    counts them all); the sessions and the stream stay whole.
    With ``sample`` (``parse_sample``), only a deterministic hash sample of the sessions
    serves requests (before sharding; ``stats["requests_before_sample"]`` counts them all);
    the stream still counts every event.
    With ``stream_from``, only the sessions active in the window and the events from
    ``stream_from`` on are kept (the streaming windows need nothing older): a long log
    costs memory for the window, not for its whole history.
    """
    import polars as pl

    frame = read_events(events)
    if frame.height == 0:
        raise DataError("the events hold no rows")
    us = pl.col("ts").dt.epoch("us")
    if end is not None:
        frame = frame.filter(us < end)
    if stream_from is not None:
        active = frame.filter(us >= start).get_column("session_id").unique()
        frame = frame.filter(
            (us >= min(stream_from, start)) | pl.col("session_id").is_in(active.implode())
        )
    n_items = len(item_ids)
    index = pl.DataFrame({"item_id": item_ids, "_idx": np.arange(n_items, dtype=np.int64)})
    if index.schema["item_id"] != frame.schema["item_id"]:
        index = index.with_columns(pl.col("item_id").cast(pl.String))
        frame = frame.with_columns(pl.col("item_id").cast(pl.String))
    frame = (
        frame.with_row_index("_row")
        .join(index, on="item_id", how="left")
        .with_columns(
            pl.col("ts").dt.epoch("us").alias("_us"),
            pl.col("event")
            .replace_strict(EVENT_CODES, default=3, return_dtype=pl.Int8)
            .alias("_event"),
        )
        .sort(["session_id", "_us", "_row"])
    )
    unknown = frame.filter(pl.col("_idx").is_null())["item_id"].unique(maintain_order=True)
    unknown_ids = unknown.to_list()
    if len(unknown_ids):
        code_of_unknown = pl.DataFrame(
            {"item_id": unknown, "_unk": np.arange(n_items, n_items + len(unknown_ids))}
        )
        frame = frame.join(code_of_unknown, on="item_id", how="left", maintain_order="left")
        code = frame.select(pl.coalesce("_idx", "_unk"))["_idx"].to_numpy()
    else:
        code = frame["_idx"].to_numpy()
    code = np.ascontiguousarray(code, dtype=np.int64)
    ts = np.ascontiguousarray(frame["_us"].to_numpy(), dtype=np.int64)
    event = np.ascontiguousarray(frame["_event"].to_numpy(), dtype=np.int8)

    sess_codes = frame["session_id"].rle_id().to_numpy()
    n_events = len(code)
    if n_events == 0:
        raise EmptyWindow("no event in the replay window")
    starts = np.flatnonzero(np.r_[True, sess_codes[1:] != sess_codes[:-1]])
    lens = np.diff(np.r_[starts, n_events])
    sessions = frame[starts.tolist()].select("session_id", "user_id")
    # a session's user: its first non-null user id
    first_user = (
        frame.group_by("session_id", maintain_order=True)
        .agg(pl.col("user_id").drop_nulls().first())
        .get_column("user_id")
    )
    session_ids = sessions["session_id"].to_list()
    user_ids = first_user.to_list()
    known = pl.Series("u", [str(u) for u in known_users], dtype=pl.String)
    is_known = first_user.cast(pl.String).is_in(known.implode()).to_numpy()
    segment = np.where(first_user.is_null().to_numpy(), 0, np.where(is_known, 2, 1)).astype(np.int8)

    # requests: every event after its session's first inside [start, end)
    sess_of_row = np.repeat(np.arange(len(starts)), lens)
    pos = np.arange(n_events) - starts[sess_of_row]
    is_request = (pos > 0) & (ts >= start)
    rows = np.flatnonzero(is_request)
    order = np.lexsort(
        (pos[rows], sess_of_row[rows], ts[rows])
    )  # time, then session, then position
    rows = rows[order]
    request_id = np.arange(len(rows), dtype=np.int64)
    req_sess = sess_of_row[rows]
    requests_before_sample = len(rows)
    if sample is not None:
        from rtml_cli.online.intervals import sample_keep

        candidates = np.zeros(len(starts), dtype=bool)
        candidates[req_sess] = True
        keep = sample_keep(session_ids, sample, candidates)[req_sess]
        rows, request_id, req_sess = rows[keep], request_id[keep], req_sess[keep]
    n_requests_all_shards = len(rows)
    if shard is not None:
        i, n = shard
        keep = shard_of(session_ids, n)[req_sess] == i - 1
        rows, request_id, req_sess = rows[keep], request_id[keep], req_sess[keep]

    # the stream: views and carts of known items, in time order
    in_stream = (code < n_items) & (event <= 1)
    stream_order = np.flatnonzero(in_stream)
    stream_order = stream_order[np.argsort(ts[stream_order], kind="stable")]
    unknown_in_window = (code >= n_items) & (ts >= start)
    stats = {
        "events": int(n_events),
        "events_in_window": int((ts >= start).sum()),
        "sessions_in_window": int(len(np.unique(sess_of_row[ts >= start]))),
        "unknown_item_events": int(unknown_in_window.sum()),
        "unknown_items": int(len(np.unique(code[unknown_in_window]))),
        "requests_all_shards": int(n_requests_all_shards),  # before ``shard`` kept its part
        "requests_before_sample": int(requests_before_sample),
        "sessions_served": int(len(np.unique(req_sess))),
    }
    return ReplayData(
        n_items=n_items,
        code=code,
        ts=ts,
        event=event,
        sess_start=starts.astype(np.int64),
        sess_len=lens.astype(np.int64),
        session_ids=session_ids,
        user_ids=user_ids,
        segment=segment,
        request_id=request_id,
        req_row=rows.astype(np.int64),
        req_sess=req_sess.astype(np.int64),
        stream_ts=ts[stream_order],
        stream_item=code[stream_order],
        stream_kind=event[stream_order].astype(np.int64),
        unknown_item_ids=unknown_ids,
        window=(start, end if end is not None else int(ts.max()) + 1),
        stats=stats,
    )


@dataclass
class Truth:
    """What each request's visitor did next (see the module docstring)."""

    next_code: np.ndarray  # int64, -1 when the session brings nothing new
    purchase_code: np.ndarray  # int64, -1 when there is no later cart/purchase of a new item
    later_req: np.ndarray  # (pairs) request position in the replay
    later_code: np.ndarray  # (pairs) an unseen item the session went on to


def truth_for(data: ReplayData, protocol: str = DEFAULT_PROTOCOL) -> Truth:
    """Truth per request under ``protocol``, from the session arrays (runs once, outside the
    timed loop)."""
    if protocol == "next-item":
        return _next_item_truth(data)
    from rtml_cli.online.kernels import next_unseen_truth

    sess_start = data.sess_start[data.req_sess]
    next_code, purchase_code, later_req, later_code = next_unseen_truth(
        data.code,
        data.event,
        data.req_row,
        sess_start,
        sess_start + data.sess_len[data.req_sess],
        int(data.code.max()) + 1 if len(data.code) else 1,
    )
    return Truth(
        next_code=next_code,
        purchase_code=purchase_code,
        later_req=later_req,
        later_code=later_code,
    )


def _next_item_truth(data: ReplayData) -> Truth:
    """``next-item`` truth: the request's own event's item, every item from there on, and
    the first cart or purchase from there (re-views and re-purchases included); one
    compiled pass (``kernels.next_item_truth``)."""
    from rtml_cli.online.kernels import next_item_truth

    n = data.n_requests
    next_code = data.code[data.req_row].astype(np.int64) if n else np.zeros(0, np.int64)
    purchase_code, later_req, later_code = next_item_truth(
        np.ascontiguousarray(data.code, dtype=np.int64),
        np.ascontiguousarray(data.event, dtype=np.int8),
        np.ascontiguousarray(data.req_row, dtype=np.int64),
        (data.sess_start + data.sess_len)[data.req_sess].astype(np.int64),
        int(data.code.max()) + 1 if len(data.code) else 1,
    )
    return Truth(
        next_code=next_code,
        purchase_code=purchase_code,
        later_req=later_req,
        later_code=later_code,
    )


def request_at(
    data: ReplayData,
    j: int,
    rows: list[int],
    sesses: list[int],
    streams: dict[int, WindowedCounts],
    protocol: str = DEFAULT_PROTOCOL,
) -> Request:
    """The ``j``-th request of ``data``: the session's earlier events only, never later ones.

    ``rows`` / ``sesses`` are ``data.req_row`` / ``data.req_sess`` as lists (the replay
    loop converts them once); ``streams`` are the published views the request sees;
    ``protocol`` decides what the list may contain (``base.PROTOCOLS``)."""
    row = rows[j]
    s = sesses[j]
    s0 = int(data.sess_start[s])
    history = data.code[s0:row]
    return Request(
        int(data.ts[row]),
        int(data.ts[s0]),
        data.user_ids[s],
        int(data.segment[s]),
        history[history < data.n_items],
        n_events=row - s0,
        streams=streams,
        protocol=protocol,
    )


class RequestBatch(Sequence[Request]):
    """Requests ``lo`` … ``hi - 1`` of a replay as one micro-batch.

    A ``Sequence[Request]``: each ``Request`` is built (``request_at``) on first access, so a
    strategy that iterates the batch sees exactly what it would see one request at a time.
    A strategy that serves the whole batch in compiled code reads the same histories as
    arrays instead: request ``q``'s history is ``codes[starts[q]:ends[q]]`` — its session's
    events before its own, never a later one."""

    def __init__(
        self,
        data: ReplayData,
        lo: int,
        hi: int,
        rows: list[int],
        sesses: list[int],
        streams: dict[int, WindowedCounts],
        protocol: str = DEFAULT_PROTOCOL,
    ) -> None:
        self.data, self.lo, self.hi = data, lo, hi
        self._rows, self._sesses, self._streams = rows, sesses, streams
        self.protocol = protocol
        self._built: list[Request | None] = [None] * (hi - lo)

    @property
    def codes(self) -> np.ndarray:
        return self.data.code

    @property
    def starts(self) -> np.ndarray:
        return self.data.sess_start[self.data.req_sess[self.lo : self.hi]]

    @property
    def ends(self) -> np.ndarray:
        return self.data.req_row[self.lo : self.hi]

    @property
    def first_ts(self) -> int:
        """The time of the batch's first request (µs)."""
        return int(self.data.ts[self._rows[self.lo]])

    def __len__(self) -> int:
        return self.hi - self.lo

    @overload
    def __getitem__(self, i: int) -> Request: ...

    @overload
    def __getitem__(self, i: slice) -> list[Request]: ...

    def __getitem__(self, i: int | slice) -> Request | list[Request]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(i)
        built = self._built[i]
        if built is None:
            built = request_at(
                self.data, self.lo + i, self._rows, self._sesses, self._streams, self.protocol
            )
            self._built[i] = built
        return built


def streams_for(data: ReplayData, lags: Iterable[timedelta]) -> dict[int, WindowedCounts]:
    """One streaming view of ``data``'s event stream per freshness lag, keyed by lag in µs."""
    return {
        round(lag.total_seconds() * 1e6): WindowedCounts(
            data.stream_ts, data.stream_item, data.stream_kind, data.n_items, lag=lag
        )
        for lag in lags
    }
