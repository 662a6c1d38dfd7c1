"""Sessionization properties: gaps cut sessions, nothing else does."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.data.sessionize import sessionize_frame

T0 = datetime(2024, 1, 1, tzinfo=timezone.utc)
GAP = timedelta(minutes=30)

events = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u:3", None]),  # a colon in an id must not merge sessions
        st.integers(min_value=0, max_value=6 * 3600),  # seconds: gaps around 30m are common
    ),
    min_size=1,
    max_size=60,
)


def _frame(rows) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "user_id": [u for u, _ in rows],
            "ts": [T0 + timedelta(seconds=s) for _, s in rows],
            "payload": list(range(len(rows))),
        },
        schema={"user_id": pl.String, "ts": pl.Datetime("us", "UTC"), "payload": pl.Int64},
    )


@settings(max_examples=60, deadline=None)
@given(events)
def test_sessionization_properties(rows):
    df = _frame(rows)
    out = sessionize_frame(df, gap=GAP)
    # every event lands in exactly one session, and row order and columns are kept
    assert out.height == df.height
    assert out.drop("session_id").equals(df)
    assert out["session_id"].null_count() == 0
    # sessions of different users never merge; anonymous events stand alone
    owners = out.group_by("session_id").agg(
        pl.col("user_id").n_unique().alias("users"), pl.len().alias("n"), pl.col("user_id").first()
    )
    assert (owners["users"] == 1).all()
    assert (owners.filter(pl.col("user_id").is_null())["n"] == 1).all()
    known = out.filter(pl.col("user_id").is_not_null()).sort(["user_id", "ts", "payload"])
    for _, user_events in known.group_by("user_id"):
        user_events = user_events.sort(["ts", "payload"])
        ts = user_events["ts"].to_list()
        sid = user_events["session_id"].to_list()
        for prev_ts, cur_ts, prev_s, cur_s in zip(ts, ts[1:], sid, sid[1:], strict=False):
            if cur_ts - prev_ts > GAP:
                assert cur_s != prev_s  # no session spans a gap
            else:
                assert cur_s == prev_s  # and nothing else cuts one
        # sessions are numbered in time order: a session never resumes after another began
        seen: list[str] = []
        for s in sid:
            if not seen or seen[-1] != s:
                assert s not in seen
                seen.append(s)


def test_equal_gap_stays_in_session_and_ids_are_stable():
    df = _frame([("u", 0), ("u", 1800), ("u", 3601), ("v", 0)])
    out = sessionize_frame(df, gap=GAP)
    assert out["session_id"].to_list() == ["u:0", "u:0", "u:1", "v:0"]
    assert sessionize_frame(df.reverse(), gap=GAP)["session_id"].to_list() == [
        "v:0",
        "u:1",
        "u:0",
        "u:0",
    ]
