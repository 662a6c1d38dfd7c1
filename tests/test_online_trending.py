"""The trending slice: defined from events strictly before each request, never the future."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rtml_cli.errors import ExitCode
from rtml_cli.online.trending import trending_mask, world_bursts_mask
from tests.test_online_simulate import _args, cli_shop, shop  # noqa: F401  (fixtures)

MIN = 60 * 1_000_000
T = 10 * 24 * 60 * MIN  # a request time well after the start


def _mask(views_ts, views_item, req_item, req_ts=T, n_items=10):
    ts = np.asarray(views_ts, dtype=np.int64)
    order = np.argsort(ts, kind="stable")
    return trending_mask(
        ts[order],
        np.asarray(views_item, dtype=np.int64)[order],
        np.zeros(len(ts), np.int8),
        np.array([req_ts], dtype=np.int64),
        np.array([req_item], dtype=np.int64),
        n_items,
    )[0]


def test_a_sudden_run_of_views_is_trending_a_steady_seller_is_not():
    sudden = [T - k * MIN for k in (1, 5, 9, 20)]  # 4 views in the last 30 min, none before
    steady = [T - k * 10 * MIN for k in range(1, 24 * 6)]  # one view every 10 min for a day
    views = sudden + steady
    items = [1] * len(sudden) + [2] * len(steady)
    assert _mask(views, items, 1)
    assert not _mask(views, items, 2)
    # too few views is not a trend, even from nothing
    assert not _mask(sudden[:2], [1, 1], 1)
    # an item that was already this busy all day is not trending
    busy = sudden + [T - 40 * MIN - k * 5 * MIN for k in range(200)]
    assert not _mask(busy, [1] * len(busy), 1)
    # unknown truth (none, or an item the artifacts do not know) is never in the slice
    assert not _mask(views, items, -1)
    assert not _mask(views, items, 10)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-90, 90), min_size=0, max_size=30),
    st.lists(st.integers(0, 90), min_size=1, max_size=30),
)
def test_views_at_or_after_the_request_change_nothing(past_min, future_min):
    past = [T - abs(m) * MIN - 1 for m in past_min]
    future = [T + m * MIN for m in future_min]  # at or after the request
    before = _mask(past, [1] * len(past), 1)
    assert _mask(past + future, [1] * (len(past) + len(future)), 1) == before


def test_world_bursts_mask_uses_the_burst_window_and_item():
    world = {
        "bursts": [
            {"item_id": 7, "start": "2024-03-05T10:00:00Z", "end": "2024-03-05T12:00:00Z"},
            {"item_id": 99, "start": "2024-03-05T10:00:00Z", "end": "2024-03-05T12:00:00Z"},
        ]
    }
    lookup = {7: 3}

    def to_idx(ids):
        return np.array([lookup.get(i, -1) for i in ids], dtype=np.int64)

    hour = 3_600_000_000
    ten = 1_709_632_800_000_000  # 2024-03-05T10:00:00Z in µs
    req_ts = np.array([ten - 1, ten, ten + hour, ten + 2 * hour, ten + hour])
    truth = np.array([3, 3, 3, 3, 4])
    assert world_bursts_mask(world, to_idx, req_ts, truth).tolist() == [
        False,
        True,
        True,
        False,
        False,
    ]


def test_cli_slices_in_table_and_json(invoke, cli_shop, tmp_path):  # noqa: F811
    events, root, _ = cli_shop
    world = tmp_path / "world.json"
    world.write_text(json.dumps({"bursts": []}))
    result = invoke(
        *_args(events, root, "--strategies", "popular,online-ranker", "--world", world),
        "--freshness-sweep",
        "1h",
        "--format",
        "json",
    )
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = json.loads(result.stdout)
    assert {r["slice"] for r in doc["slices"]} == {"trending", "world_bursts"}
    assert "hr_trending" in doc["freshness"][0] and "hr_world_bursts_delta" in doc["freshness"][0]
    assert set(doc["info"]["slices"]) == {"trending", "world_bursts"}
    result = invoke(*_args(events, root, "--strategies", "online-ranker"), "--ablation")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "HR trending" in result.stdout and "slices" in result.stdout


def test_cli_bad_world_file(invoke, cli_shop, tmp_path):  # noqa: F811
    events, root, out = cli_shop
    result = invoke(*_args(events, root, "--world", tmp_path / "none.json", "--out", out))
    assert result.exit_code == ExitCode.NO_INPUT
    assert "world file not found" in result.stderr.strip().splitlines()[-1]
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    result = invoke(*_args(events, root, "--world", bad, "--out", out))
    assert result.exit_code == ExitCode.DATA_ERR
    assert "no 'bursts' list" in result.stderr
    assert not out.exists()
