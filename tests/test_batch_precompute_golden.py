"""Issue #10: precompute's artifacts are unchanged by the bounded-memory rewrite.

``tests/golden/precompute/`` holds every table a full run and a warm start wrote on a
small log *before* the co-occurrence, the per-user histories and the Stage-1 lists moved
into DuckDB (taken with the code of commit b60be5f, by ``python
tests/test_batch_precompute_golden.py --write``). The test reruns both and compares: ids,
ranks, counts and flags exactly; floats that are sums (co-occurrence counts, decayed
weights, scores and the embeddings computed from them) to a tight tolerance, because a sum
in another order may differ in its last bits.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.batch.precompute import run_precompute
from tests.test_batch_precompute import START, catalogue, make_events

GOLDEN = Path(__file__).resolve().parent / "golden" / "precompute"
TABLES = (
    "item_index.parquet",
    "item_features.parquet",
    "user_features.parquet",
    "item_neighbors.parquet",
    "batch_recs.parquet",
    "popular.parquet",
    "session_items.parquet",
    "item_sessions.parquet",
    "sequential_rules.parquet",
    "state/item_totals.parquet",
    "state/user_totals.parquet",
    "state/user_items.parquet",
    "state/sequential_rule_counts.parquet",
)
PARAMS = {"dim": 8, "n_trees": 10, "top_k": 20, "n_neighbors": 15}


def _log(tmp: Path) -> tuple[Path, Path]:
    events, items = tmp / "events.parquet", tmp / "items.parquet"
    make_events(n_sessions=1500, days=12, seed=3, n_users=250).write_parquet(events)
    catalogue().write_parquet(items)
    return events, items


def _runs(tmp: Path) -> dict[str, Path]:
    """A full run at the end of the log and a warm start from a run 3 days before it."""
    events, items = _log(tmp)
    full = run_precompute(events, tmp / "full", items=items, **PARAMS)
    run_precompute(events, tmp / "warm", items=items, as_of=START + timedelta(days=9), **PARAMS)
    # full_every=1: the self-contained warm-start format (delta runs: tests/test_batch_delta.py)
    warm = run_precompute(
        events, tmp / "warm", items=items, warm_start=tmp / "warm", n_trees=10, top_k=20,
        n_neighbors=15, full_every=1,
    )  # fmt: skip
    return {"full": full.run_dir, "warm": warm.run_dir}


def _write_golden(tmp: Path) -> None:
    import shutil

    for name, run_dir in _runs(tmp).items():
        out = GOLDEN / name
        shutil.rmtree(out, ignore_errors=True)
        (out / "state").mkdir(parents=True)
        for table in TABLES:
            shutil.copy(run_dir / table, out / table)
        shutil.copy(run_dir / "item_embeddings.npy", out / "item_embeddings.npy")
        shutil.copy(run_dir / "state" / "cooc.npz", out / "state" / "cooc.npz")


FLOAT_RTOL = 1e-9  # float64 sums in another order
FLOAT32_RTOL = 1e-5  # float32 outputs (scores) of such sums


def _assert_frames_match(got: pl.DataFrame, want: pl.DataFrame, name: str) -> None:
    assert got.columns == want.columns, name
    assert got.schema == want.schema, name
    assert got.height == want.height, name
    for column in want.columns:
        a, b = got[column], want[column]
        if a.dtype.is_float():
            rtol = FLOAT32_RTOL if a.dtype == pl.Float32 else FLOAT_RTOL
            assert (a.is_null() == b.is_null()).all(), (name, column)
            np.testing.assert_allclose(
                a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy(), rtol=rtol, atol=1e-12,
                err_msg=f"{name}.{column}",
            )  # fmt: skip
        else:
            assert a.equals(b), (name, column)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from rtml_cli.batch import recs

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(recs, "USER_CHUNK", 7)  # many chunks of Stage-1 lists, one a row group
        return _runs(tmp_path_factory.mktemp("golden"))


@pytest.mark.parametrize("mode", ["full", "warm"])
@pytest.mark.parametrize("table", TABLES)
def test_tables_match_the_golden_snapshot(runs, mode, table):
    got = pl.read_parquet(runs[mode] / table)
    want = pl.read_parquet(GOLDEN / mode / table)
    _assert_frames_match(got, want, f"{mode}/{table}")


@pytest.mark.parametrize("mode", ["full", "warm"])
def test_cooccurrence_and_embeddings_match_the_golden_snapshot(runs, mode):
    got = sp.load_npz(runs[mode] / "state" / "cooc.npz").tocsr()
    want = sp.load_npz(GOLDEN / mode / "state" / "cooc.npz").tocsr()
    assert got.shape == want.shape
    assert np.array_equal(got.indptr, want.indptr)
    assert np.array_equal(got.indices, want.indices)
    np.testing.assert_allclose(got.data, want.data, rtol=FLOAT_RTOL)
    emb = np.load(runs[mode] / "item_embeddings.npy")
    golden = np.load(GOLDEN / mode / "item_embeddings.npy")
    assert emb.dtype == golden.dtype and emb.shape == golden.shape
    np.testing.assert_allclose(emb, golden, rtol=1e-4, atol=1e-5)


# --- the co-occurrence in SQL against the numpy reference it replaced -------------------


def _old_session_arrays(con, as_of, half_life_s):
    """What precompute fetched into numpy before issue #10 (kept as the reference)."""
    from rtml_cli.batch.features import decay_sql

    frame = con.sql(
        f"""SELECT hash(e.session_id) AS s, i.item_idx,
                   CAST({decay_sql(as_of, half_life_s)} AS FLOAT) AS w
            FROM ev e JOIN idx i ON e.item_id = i.item_id
            ORDER BY s, e.ts, i.item_idx"""
    ).fetchnumpy()
    return (
        np.asarray(frame["s"]),
        np.asarray(frame["item_idx"], dtype=np.int64),
        np.asarray(frame["w"], dtype=np.float32),
    )


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=1, max_size=12),
        min_size=1,
        max_size=10,
    ),
    st.integers(1, 5),
    st.integers(2, 8),
)
def test_cooccurrence_sql_matches_the_numpy_reference(sessions, window, max_len):
    """Same counts for any sessions: repeated items, equal timestamps, capped sessions."""
    from rtml_cli.batch.embeddings import cooccurrence
    from rtml_cli.batch.features import cooccurrence_sql
    from rtml_cli.duck import connect

    rows = [
        (START + timedelta(hours=3 * s, minutes=minute), f"s{s}", item)
        for s, seq in enumerate(sessions)
        for item, minute in seq
    ]
    events = pl.DataFrame(rows, schema=["ts", "session_id", "item_id"], orient="row")
    events = events.with_columns(pl.col("ts").dt.replace_time_zone(None))
    index = pl.DataFrame({"item_idx": range(7), "item_id": range(7)})
    as_of, half_life = START + timedelta(days=40), 86_400.0 * 7
    con = connect()
    try:
        con.register("ev", events)
        con.register("idx", index)
        got, n_events = cooccurrence_sql(
            con, as_of, half_life, None, 7, window=window, max_session_len=max_len
        )
        want = cooccurrence(
            *_old_session_arrays(con, as_of, half_life), 7, window=window, max_session_len=max_len
        )
    finally:
        con.close()
    assert n_events == len(rows)
    np.testing.assert_allclose(got.toarray(), want.toarray(), rtol=1e-12)
    assert got.has_canonical_format


if __name__ == "__main__" and "--write" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        _write_golden(Path(tmp))
    print(f"wrote {GOLDEN}")
