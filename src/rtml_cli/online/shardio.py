"""A replay's shards on disk: what a distributed replay's tasks read.

The driver prepares the replay once (``replay.prepare``) and writes, in a directory every
worker can read:

- per shard, ``shard=I/events.parquet``: the events of that shard's sessions only (the
  sessions that have a request in it), in session order, with the session's columns and
  the request's global ``request_id`` (-1 for an event that is not a served request). A
  task reads its own file, never the whole log;
- once, ``stream.parquet``: the streaming job's input as a count table, built with DuckDB:
  views and carts of known items per (``ts`` µs, item, kind), ordered by time. Every task
  reads it; it is the same for all shards (a shard's streaming features count every
  session's events, as in one run). The bucket is the event's µs: coarser buckets would
  change the sliding-window counts, and a shard's RESULTS must equal one run's.

``read_replay`` turns a shard's file and the count table back into a ``ReplayData`` whose
requests keep their global ``request_id``, so the shards' outputs fit together.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.online.replay import ReplayData, shard_of

EVENTS_FILE = "events.parquet"
STREAM_FILE = "stream.parquet"
META_FILE = "meta.json"


def shard_key(session_ids: list[str], shards: int, outer: tuple[int, int] | None = None) -> Any:
    """0-based shard of each session: CRC-32 of the session id modulo ``shards``
    (``replay.shard_of``). Within an outer ``--shard i/m`` (whose sessions all share
    CRC-32 mod m), the CRC-32 divided by m, so the outer shard still splits evenly."""
    if outer is None:
        return shard_of(session_ids, shards)
    m = outer[1]
    return shard_of(session_ids, shards * m) // m  # (crc mod n·m) div m = (crc div m) mod n


def slice_sessions(data: ReplayData, keep: np.ndarray) -> ReplayData:
    """The sessions of ``data`` where ``keep`` (bool per session) is true, with their
    requests (global ``request_id`` kept); the stream is left empty (``stream.parquet``)."""
    sess = np.flatnonzero(keep)
    lens = data.sess_len[sess]
    starts = np.r_[0, np.cumsum(lens)[:-1]].astype(np.int64)
    rows = np.repeat(data.sess_start[sess] - starts, lens) + np.arange(int(lens.sum()))
    new_sess = np.full(len(keep), -1, dtype=np.int64)
    new_sess[sess] = np.arange(len(sess))
    req = np.flatnonzero(keep[data.req_sess])
    req_sess = new_sess[data.req_sess[req]]
    req_row = data.req_row[req] - data.sess_start[data.req_sess[req]] + starts[req_sess]
    empty = np.zeros(0, np.int64)
    return ReplayData(
        n_items=data.n_items,
        code=data.code[rows],
        ts=data.ts[rows],
        event=data.event[rows],
        sess_start=starts,
        sess_len=lens.astype(np.int64),
        session_ids=[data.session_ids[s] for s in sess.tolist()],
        user_ids=[data.user_ids[s] for s in sess.tolist()],
        segment=data.segment[sess],
        request_id=data.request_id[req],
        req_row=req_row.astype(np.int64),
        req_sess=req_sess,
        stream_ts=empty,
        stream_item=empty,
        stream_kind=empty,
        window=data.window,
    )


def write_events(data: ReplayData, directory: Path) -> Path:
    """``data``'s sessions and requests as ``directory/events.parquet`` (+ ``meta.json``)."""
    import polars as pl

    directory.mkdir(parents=True, exist_ok=True)
    request_id = np.full(len(data.code), -1, dtype=np.int64)
    request_id[data.req_row] = data.request_id
    sess = np.repeat(np.arange(len(data.sess_len)), data.sess_len)
    session_ids = pl.Series("session_id", data.session_ids, dtype=pl.String)
    user_ids = pl.Series("user_id", [None if u is None else str(u) for u in data.user_ids])
    frame = pl.DataFrame(
        {
            "session_id": session_ids.gather(sess) if len(sess) else session_ids,
            "user_id": user_ids.cast(pl.String).gather(sess) if len(sess) else user_ids,
            "segment": data.segment[sess],
            "code": data.code,
            "ts": data.ts,
            "event": data.event,
            "request_id": request_id,
        }
    )
    frame.write_parquet(directory / EVENTS_FILE, statistics=True)
    meta = {"n_items": data.n_items, "window": list(data.window)}
    (directory / META_FILE).write_text(json.dumps(meta))
    return directory


def write_stream(data: ReplayData, path: Path) -> Path:
    """The stream of ``data`` as a count table (DuckDB): one row per (ts µs, item, kind)
    with the number ``n`` of events there, in time order."""
    import pyarrow as pa

    from rtml_cli.duck import connect, sql_str

    events = pa.table(
        {
            "ts": pa.array(data.stream_ts, pa.int64()),
            "item": pa.array(data.stream_item, pa.int64()),
            "kind": pa.array(data.stream_kind, pa.int8()),
        }
    )
    con = connect(spill=path.parent)  # a big window's GROUP BY spills next to the table
    try:
        con.register("stream_events", events)
        con.execute(
            "COPY (SELECT ts, item, kind, count(*)::INTEGER AS n FROM stream_events "
            "GROUP BY ts, item, kind ORDER BY ts, item, kind) "
            f"TO {sql_str(str(path))} (FORMAT parquet)"
        )
    finally:
        con.close()
    return path


def read_replay(directory: Path, stream: Path) -> ReplayData:
    """A shard's ``ReplayData`` from its ``events.parquet`` and the shared count table."""
    import polars as pl

    meta = json.loads((directory / META_FILE).read_text())
    frame = pl.read_parquet(directory / EVENTS_FILE)
    n_events = frame.height
    sess_codes = frame["session_id"].rle_id().to_numpy() if n_events else np.zeros(0, np.int64)
    starts = np.zeros(0, np.int64)
    if n_events:
        starts = np.flatnonzero(np.r_[True, sess_codes[1:] != sess_codes[:-1]]).astype(np.int64)
    lens = np.diff(np.r_[starts, n_events]).astype(np.int64)
    request_id = frame["request_id"].to_numpy()
    rows = np.flatnonzero(request_id >= 0)
    rows = rows[np.argsort(request_id[rows], kind="stable")]
    sess_of_row = np.repeat(np.arange(len(starts)), lens)
    counts = pl.read_parquet(stream)
    repeat = counts["n"].to_numpy()
    first = frame[starts.tolist()] if n_events else frame
    return ReplayData(
        n_items=int(meta["n_items"]),
        code=np.ascontiguousarray(frame["code"].to_numpy(), dtype=np.int64),
        ts=np.ascontiguousarray(frame["ts"].to_numpy(), dtype=np.int64),
        event=np.ascontiguousarray(frame["event"].to_numpy(), dtype=np.int8),
        sess_start=starts,
        sess_len=lens,
        session_ids=first["session_id"].to_list(),
        user_ids=first["user_id"].to_list(),
        segment=np.ascontiguousarray(first["segment"].to_numpy(), dtype=np.int8),
        request_id=request_id[rows].astype(np.int64),
        req_row=rows.astype(np.int64),
        req_sess=sess_of_row[rows].astype(np.int64),
        stream_ts=np.repeat(counts["ts"].to_numpy(), repeat).astype(np.int64),
        stream_item=np.repeat(counts["item"].to_numpy(), repeat).astype(np.int64),
        stream_kind=np.repeat(counts["kind"].to_numpy(), repeat).astype(np.int64),
        window=(int(meta["window"][0]), int(meta["window"][1])),
    )
