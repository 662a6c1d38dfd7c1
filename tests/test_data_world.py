"""The sample world: contracts, the properties the migration argument rests on, determinism, CLI.

Statistical checks run on the committed small world (``sample_data/shop``, fixed
seed 7) with margins wide enough that a regenerated world with another seed
passes too; determinism and failure handling run on a freshly generated tiny world.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.data.world import (
    SIZES,
    expected_reward,
    generate_world,
    logging_policy_probs,
    policy_value,
)
from rtml_cli.errors import ExitCode, OutputError

SHOP = Path(__file__).resolve().parent.parent / "sample_data" / "shop"
PARQUETS = (
    "click_users.parquet",
    "events.parquet",
    "items.parquet",
    "sessions.parquet",
    "users.parquet",
    "bandit.parquet",
    "bandit_random.parquet",
)


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


@pytest.fixture(scope="module")
def world() -> dict:
    return json.loads((SHOP / "world.json").read_text())


@pytest.fixture(scope="module")
def events() -> pl.DataFrame:
    return pl.read_parquet(SHOP / "events.parquet")


@pytest.fixture(scope="module")
def items() -> pl.DataFrame:
    return pl.read_parquet(SHOP / "items.parquet")


@pytest.fixture(scope="module")
def sessions() -> pl.DataFrame:
    return pl.read_parquet(SHOP / "sessions.parquet")


@pytest.fixture(scope="module")
def views(events, items, world) -> pl.DataFrame:
    """Views with their category, bundle and position of the category in its bundle."""
    pos = pl.DataFrame(
        {
            "category": [c["name"] for c in world["categories"]],
            "cat_pos": [c["position"] for c in world["categories"]],
        }
    )
    return (
        events.filter(pl.col("event") == "view")
        .join(items.select("item_id", "category", "bundle"), on="item_id", how="left")
        .join(pos, on="category", how="left")
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple:
    out = tmp_path_factory.mktemp("tiny") / "world"
    summary = generate_world(out, seed=3, size="tiny")
    return out, summary


# --------------------------------------------------------------------------- contracts


def test_committed_world_files_and_size(world):
    for name in (*PARQUETS, "click_model.npz", "world.json", "README.md"):
        assert (SHOP / name).is_file(), name
    total = sum(p.stat().st_size for p in SHOP.iterdir())
    assert total <= 4_200_000, f"sample_data/shop is {total:,} bytes; keep it small"
    assert world["seed"] == 7 and world["size"] == "small"
    assert "--seed 7 --size small" in (SHOP / "README.md").read_text()
    assert set(world["files"].values()) <= {p.name for p in SHOP.iterdir()}


def test_events_follow_the_contract(events, items, world):
    assert events.schema == pl.Schema(
        {
            "ts": pl.Datetime("us", "UTC"),
            "user_id": pl.String,
            "session_id": pl.String,
            "item_id": pl.Int64,
            "event": pl.String,
        }
    )
    assert events["ts"].is_sorted()
    assert events["session_id"].null_count() == 0 and events["item_id"].null_count() == 0
    assert set(events["event"].unique()) == {"view", "cart", "purchase"}
    assert not events.is_duplicated().any()  # `rtml data validate` rejects duplicate rows
    assert events["item_id"].is_in(items["item_id"].implode()).all()
    assert 100_000 <= events.height <= 200_000 and events.height == world["n_events"]
    assert events["ts"].min() >= _ts(world["start"]) and events["ts"].max() < _ts(world["end"])
    assert _ts(world["end"]) - _ts(world["start"]) == timedelta(days=28)
    # a session belongs to one visitor
    per_session = events.group_by("session_id").agg(pl.col("user_id").n_unique())
    assert (per_session["user_id"] == 1).all()


def test_items_have_categories_bundles_and_readable_titles(items, world):
    assert {"item_id", "category", "bundle", "price", "title", "launched_at"} <= set(items.columns)
    assert items["item_id"].is_unique().all()
    assert 1_800 <= items.height <= 2_500
    bundle_of = {c["name"]: c["bundle"] for c in world["categories"]}
    assert items.select(pl.col("category").replace_strict(bundle_of) == pl.col("bundle"))[
        "category"
    ].all()
    assert 8 <= len(world["bundles"]) <= 40
    assert all(3 <= len(b["categories"]) <= 5 for b in world["bundles"])
    home = next(b for b in world["bundles"] if b["name"] == "home office")
    assert home["categories"] == ["keyboards", "monitors", "hdmi cables", "monitor stands"]
    keyboard = items.filter(pl.col("category") == "keyboards")["title"][0]
    assert "keyboard" in keyboard.lower()
    assert (items["price"] > 0).all()


# --------------------------------------------------------------------------- intent bundles


def test_sessions_follow_one_bundle_in_order(views, sessions):
    # nearly all views of a session fall in the bundle of its intent
    labelled = views.join(sessions.select("session_id", "intent"), on="session_id")
    in_intent = (labelled["bundle"] == labelled["intent"]).mean()
    assert in_intent >= 0.93
    # when a session moves to another category of its bundle, it mostly moves forward
    steps = (
        labelled.sort("session_id", "ts")
        .with_columns(
            prev_cat=pl.col("category").shift(1).over("session_id"),
            prev_pos=pl.col("cat_pos").shift(1).over("session_id"),
            prev_bundle=pl.col("bundle").shift(1).over("session_id"),
        )
        .filter(
            (pl.col("prev_bundle") == pl.col("bundle")) & (pl.col("prev_cat") != pl.col("category"))
        )
    )
    forward = (steps["cat_pos"] == steps["prev_pos"] + 1).mean()
    assert steps.height > 5_000 and forward >= 0.75
    # and a session of several views usually touches more than one category of the bundle
    multi = labelled.group_by("session_id").agg(n=pl.len(), cats=pl.col("category").n_unique())
    long = multi.filter(pl.col("n") >= 5)
    assert (long["cats"] >= 2).mean() >= 0.6


def test_session_intent_often_differs_from_long_term_taste(sessions, world):
    known = sessions.filter(pl.col("favourite").is_not_null())
    off = (known["intent"] != known["favourite"]).mean()
    assert 0.3 <= off <= 0.6
    assert abs(off - world["intent"]["share_sessions_off_favourite"]) < 1e-3
    # ... but taste is real: far more sessions follow the favourite than chance would
    assert 1 - off > 5 / len(world["bundles"])


def test_sessions_are_short_and_dense(events):
    per = events.group_by("session_id").agg(
        n=pl.len(), span=(pl.col("ts").max() - pl.col("ts").min())
    )
    assert 5.0 <= per["n"].mean() <= 8.0
    gaps = (
        events.sort("session_id", "ts")
        .select(gap=pl.col("ts").diff().over("session_id"))
        .drop_nulls()["gap"]
    )
    assert gaps.max() <= timedelta(minutes=30)
    assert timedelta(seconds=10) <= gaps.median() <= timedelta(minutes=3)
    assert per["span"].median() <= timedelta(minutes=30)


# --------------------------------------------------------------------------- popularity


def test_popularity_is_zipf_like(views, world):
    before = views.filter(pl.col("ts") < _ts(world["shift_time"]))
    counts = before.group_by("item_id").len().sort("len", descending=True)["len"].to_numpy()
    top = counts[: max(1, len(counts) // 10)].sum() / counts.sum()
    assert top >= 0.4, f"top 10% of items get {top:.0%} of views"
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(counts[:200]), 1)[0]
    assert -1.6 <= slope <= -0.5, slope
    # within a busy category too
    busiest = before.group_by("category").len().sort("len", descending=True)["category"][0]
    within = (
        before.filter(pl.col("category") == busiest)
        .group_by("item_id")
        .len()
        .sort("len", descending=True)["len"]
        .to_numpy()
    )
    k = min(15, len(within))
    slope_c = np.polyfit(np.log(np.arange(1, k + 1)), np.log(within[:k]), 1)[0]
    assert slope_c <= -0.6, slope_c
    # and across categories: a fifth of the categories get well over a fifth of the views
    per_cat = before.group_by("category").len().sort("len", descending=True)["len"].to_numpy()
    assert per_cat[: len(per_cat) // 5].sum() / per_cat.sum() >= 0.35
    assert per_cat[0] >= 5 * per_cat[-1]


def test_trending_bursts_are_what_recent_views_predict(events, world):
    views = events.filter(pl.col("event") == "view")
    ts = views["ts"].dt.epoch("us").to_numpy()
    item = views["item_id"].to_numpy()
    window = 45 * 60 * 1_000_000
    assert len(world["bursts"]) >= 10
    top3_during, top3_day_before, lift = [], [], []
    for burst in world["bursts"]:
        start, end = (int(_ts(burst[k]).timestamp() * 1e6) for k in ("start", "end"))
        assert timedelta(hours=1) <= timedelta(microseconds=end - start) <= timedelta(hours=8)
        mid = (start + end) // 2

        def rank(at: int, burst=burst) -> int:
            lo, hi = np.searchsorted(ts, [at - window, at])
            ids, n = np.unique(item[lo:hi], return_counts=True)
            mine = n[ids == burst["item_id"]]
            return int((n > mine[0]).sum() + 1) if len(mine) else 10**6

        top3_during.append(rank(mid) <= 3)
        top3_day_before.append(rank(mid - 86_400_000_000) <= 3)
        lo, hi = np.searchsorted(ts, [mid, mid + window])
        lift.append((item[lo:hi] == burst["item_id"]).mean() / (item == burst["item_id"]).mean())
    # views in the last 45 minutes point at the burst item; a day earlier they did not
    assert np.mean(top3_during) >= 0.6
    assert np.mean(top3_day_before) <= 0.15
    # and what sessions view in the next 45 minutes follows
    assert np.median(lift) >= 10


# --------------------------------------------------------------------------- visitors


def test_half_the_sessions_after_the_cutoff_are_anonymous_or_new(events, sessions, world):
    cutoff = _ts(world["history_cutoff"])
    start, end = _ts(world["start"]), _ts(world["end"])
    assert abs((cutoff - start) / (end - start) - 2 / 3) < 0.01
    first = (
        events.filter(pl.col("user_id").is_not_null())
        .group_by("user_id")
        .agg(first_seen=pl.col("ts").min())
    )
    per = (
        events.group_by("session_id")
        .agg(user_id=pl.col("user_id").first(), start=pl.col("ts").min())
        .join(first, on="user_id", how="left")
        .filter(pl.col("start") >= cutoff)
    )
    anon = per["user_id"].is_null()
    new = per["first_seen"] >= cutoff
    share = (anon | new.fill_null(False)).mean()
    assert 0.42 <= share <= 0.65, share
    assert 0.2 <= anon.mean() <= 0.45
    assert abs(share - world["segments"]["anonymous_or_new_share_after_cutoff"]) < 0.02
    # returning users exist and come back across many days
    days = (
        events.filter(pl.col("user_id").is_not_null())
        .group_by("user_id")
        .agg(days=pl.col("ts").dt.date().n_unique())
    )
    assert (days["days"] >= 3).sum() >= 500
    assert set(sessions["segment"].unique()) == {"anonymous", "new", "returning"}


def test_funnel_view_cart_purchase(events, world):
    counts = dict(events.group_by("event").len().iter_rows())
    cart_rate = counts["cart"] / counts["view"]
    buy_rate = counts["purchase"] / counts["cart"]
    assert 0.06 <= cart_rate <= 0.11 and 0.28 <= buy_rate <= 0.42
    assert abs(cart_rate - world["funnel"]["observed_cart_per_view"]) < 1e-3
    # a cart follows a view of that item in the session; a purchase follows its cart
    first = events.group_by("session_id", "item_id", "event").agg(pl.col("ts").min())
    wide = first.pivot(on="event", index=["session_id", "item_id"], values="ts")
    carts = wide.filter(pl.col("cart").is_not_null())
    assert (carts["view"] <= carts["cart"]).all()
    bought = wide.filter(pl.col("purchase").is_not_null())
    assert (bought["cart"] <= bought["purchase"]).all()


# --------------------------------------------------------------------------- shift


def test_distribution_shift_at_a_known_time(views, items, sessions, world):
    shift = _ts(world["shift_time"])
    start, end = _ts(world["start"]), _ts(world["end"])
    assert 0.6 <= (shift - start) / (end - start) <= 0.8
    new_items = items.filter(pl.col("launched_at") == shift)["item_id"]
    assert len(new_items) == world["shift"]["n_new_items"] >= 50
    assert items.filter(pl.col("launched_at") < shift).height + len(new_items) == items.height
    is_new = pl.col("item_id").is_in(new_items.implode())
    assert views.filter(is_new & (pl.col("ts") < shift)).height == 0
    after = views.filter(pl.col("ts") >= shift)
    assert after.select(is_new.mean()).item() >= 0.1
    # several new items reach the top of their category after the shift
    top = (
        after.group_by("category", "item_id")
        .len()
        .sort("len", descending=True)
        .group_by("category", maintain_order=True)
        .first()
    )
    assert top["item_id"].is_in(new_items.implode()).mean() >= 0.3
    # bundle popularity moves: session intents before vs after differ (total variation)
    mix = sessions.with_columns(after=pl.col("start") >= shift).group_by("after", "intent").len()
    pivot = mix.pivot(on="after", index="intent", values="len").fill_null(0)
    p_before = pivot["false"] / pivot["false"].sum()
    p_after = pivot["true"] / pivot["true"].sum()
    assert 0.5 * (p_before - p_after).abs().sum() >= 0.1
    rising = pivot.filter(pl.col("intent").is_in(world["shift"]["rising_bundles"]))
    # (1.6, not 4: sessions drawn in by trending bursts take the burst item's bundle)
    assert rising["true"].sum() / pivot["true"].sum() > 1.6 * (
        rising["false"].sum() / pivot["false"].sum()
    )
    assert world["shift"]["share_users_taste_moved"] >= 0.2


def test_user_tastes_move_at_the_shift():
    users = pl.read_parquet(SHOP / "users.parquet")
    sessions = pl.read_parquet(SHOP / "sessions.parquet")
    shift = _ts(json.loads((SHOP / "world.json").read_text())["shift_time"])
    moved = users.filter(pl.col("favourite_before") != pl.col("favourite_after"))
    after = sessions.filter(pl.col("start") >= shift).join(moved, on="user_id")
    assert after.height >= 200
    follows_new = (after["intent"] == after["favourite_after"]).mean()
    follows_old = (after["intent"] == after["favourite_before"]).mean()
    assert follows_new >= 0.4 and follows_new > 3 * follows_old


# --------------------------------------------------------------------------- bandit logs


@pytest.fixture(scope="module")
def click_model() -> ClickModel:
    return ClickModel.load(SHOP / "click_model.npz")


def test_bandit_logs_match_the_click_model(click_model, world):
    cm = world["click_model"]
    assert 50 <= click_model.n_items <= 100 and click_model.n_items == cm["n_arms"]
    arm_ids = np.array(cm["arm_item_ids"])
    for name in ("bandit.parquet", "bandit_random.parquet"):
        log = pl.read_parquet(SHOP / name)
        assert {"ts", "action", "item_id", "position", "reward", "propensity", "policy"} <= set(
            log.columns
        )
        assert log["ts"].is_sorted()
        action = log["action"].to_numpy()
        assert action.min() >= 0 and action.max() < click_model.n_items
        assert (arm_ids[action] == log["item_id"].to_numpy()).all()
        assert set(log["position"].unique()) == {1, 2, 3}
        assert set(log["reward"].unique()) <= {0, 1}
        ctx = log.select(f"ctx_{j}" for j in range(cm["context_dim"])).to_numpy()
        users = log["user_idx"].to_numpy()
        np.testing.assert_array_equal(ctx, click_model.user_context[users])
        prop = log["propensity"].to_numpy()
        assert ((prop > 0) & (prop <= 1)).all()
        # the logged reward rate agrees with the click model's expected rate (4 SE)
        expected = click_model.prob(users, action, log["position"].to_numpy())
        se = np.sqrt((expected * (1 - expected)).sum()) / len(expected)
        assert abs(log["reward"].mean() - expected.mean()) <= 4 * se
    uniform = pl.read_parquet(SHOP / "bandit_random.parquet")
    np.testing.assert_allclose(uniform["propensity"].to_numpy(), 1 / click_model.n_items)


def test_logging_policy_propensities_are_known_and_floored(click_model, world):
    log = pl.read_parquet(SHOP / "bandit.parquet")
    ctx = log.select(f"ctx_{j}" for j in range(world["click_model"]["context_dim"])).to_numpy()
    probs = logging_policy_probs(click_model, ctx)
    action = log["action"].to_numpy()
    np.testing.assert_allclose(log["propensity"].to_numpy(), probs[np.arange(len(action)), action])
    assert probs.min() >= 0.002
    # non-uniform: the logging policy prefers some arms strongly
    assert log["propensity"].max() > 5 / click_model.n_items
    # the chosen arms are distributed as the propensities say (a chi-square-like check)
    expected = probs.sum(axis=0)
    observed = np.bincount(action, minlength=click_model.n_items)
    z = (observed - expected) / np.sqrt(expected)
    assert np.abs(z).max() < 5


def test_true_policy_values_are_computable_and_ordered(click_model, world):
    cm = world["click_model"]
    assert cm["value_uniform_policy"] < cm["value_logging_policy"] < cm["value_best_policy"]
    # IPS on the uniform log recovers the logging policy's true value on the same users
    log = pl.read_parquet(SHOP / "bandit_random.parquet")
    ctx = log.select(f"ctx_{j}" for j in range(cm["context_dim"])).to_numpy()
    action = log["action"].to_numpy()
    users = log["user_idx"].to_numpy()
    positions = log["position"].to_numpy()
    pi = logging_policy_probs(click_model, ctx)
    weights = pi[np.arange(len(action)), action] / log["propensity"].to_numpy()
    ips = weights * log["reward"].to_numpy()
    truth = expected_reward(click_model, users, positions, pi).mean()
    assert abs(ips.mean() - truth) <= 4 * ips.std() / np.sqrt(len(ips))
    assert abs(truth - cm["value_logging_policy"]) < 0.02
    # with the recorded user weights the exact value is reproducible from the files alone
    weights = pl.read_parquet(SHOP / "click_users.parquet")
    assert weights["user_idx"].to_list() == list(range(click_model.n_users))
    assert weights["user_id"][5] == "u000005"
    np.testing.assert_allclose(weights["weight"].sum(), 1.0)
    assert (
        abs(
            policy_value(
                click_model,
                weights["weight"].to_numpy(),
                logging_policy_probs(click_model, click_model.user_context),
            )
            - cm["value_logging_policy"]
        )
        < 1e-5
    )
    # taste reflects bundle preferences: users prefer arms of their favourite bundle
    users_tbl = pl.read_parquet(SHOP / "users.parquet")
    items = pl.read_parquet(SHOP / "items.parquet")
    arm_bundle = (
        pl.DataFrame({"item_id": cm["arm_item_ids"]})
        .join(items, on="item_id", how="left")["bundle"]
        .to_numpy()
    )
    fav = (
        pl.DataFrame({"user_id": [f"u{i:06d}" for i in range(click_model.n_users)]})
        .join(users_tbl, on="user_id", how="left")["favourite_before"]
        .to_numpy()
    )
    seen = fav != None  # noqa: E711 - numpy object array of str/None
    best_arm = np.argmax(click_model.all_probs(np.flatnonzero(seen)), axis=1)
    assert (arm_bundle[best_arm] == fav[seen]).mean() >= 0.6


def test_expected_reward_is_the_click_model_in_expectation(click_model):
    rng = np.random.default_rng(0)
    users = rng.integers(0, click_model.n_users, 40)
    positions = rng.integers(1, 4, 40)
    arms = rng.integers(0, click_model.n_items, 40)
    one_hot = np.eye(click_model.n_items)[arms]
    np.testing.assert_allclose(
        expected_reward(click_model, users, positions, one_hot),
        click_model.prob(users, arms, positions),
    )


def test_daily_seasonality(events):
    hours = events.select(pl.col("ts").dt.hour().alias("h"))["h"].to_numpy()
    night = np.isin(hours, [2, 3, 4, 5]).sum()
    evening = np.isin(hours, [18, 19, 20, 21]).sum()
    assert night < 0.3 * evening


# --------------------------------------------------------------------------- generation


def test_same_seed_same_bytes(tiny, tmp_path):
    first, summary = tiny
    again = tmp_path / "again"
    generate_world(again, seed=3, size="tiny")
    for name in PARQUETS:
        assert (first / name).read_bytes() == (again / name).read_bytes(), name
    a, b = ClickModel.load(first / "click_model.npz"), ClickModel.load(again / "click_model.npz")
    np.testing.assert_array_equal(a.taste, b.taste)
    np.testing.assert_array_equal(a.user_context, b.user_context)
    other = tmp_path / "other"
    generate_world(other, seed=4, size="tiny")
    assert (first / "events.parquet").read_bytes() != (other / "events.parquet").read_bytes()
    assert summary["n_events"] == pl.read_parquet(first / "events.parquet").height


def test_scale_copies_users_and_sessions_under_new_ids(tiny, tmp_path, invoke):
    """`--scale 3`: three times the events, users and sessions (the copies' ids are new),
    the same items and times; deterministic; scale 1 is the world as it was."""
    first, summary = tiny
    out = tmp_path / "scaled"
    result = invoke(
        "data", "sample", "--size", "tiny", "--seed", "3", "--scale", "3", "--out", out,
        "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    scaled = json.loads(result.stdout)
    base = pl.read_parquet(first / "events.parquet")
    events = pl.read_parquet(out / "events.parquet")
    assert events.height == 3 * base.height == scaled["n_events"]
    assert scaled["scale"] == 3 and "scale" not in summary
    assert scaled["n_users"] == 3 * summary["n_users"]
    for column, factor in (("user_id", 3), ("session_id", 3), ("item_id", 1)):
        unique = events[column].drop_nulls().n_unique()
        assert unique == factor * base[column].drop_nulls().n_unique(), column
    assert events["ts"].sort().gather_every(3).equals(base["ts"].sort())
    again = tmp_path / "again"
    generate_world(again, seed=3, size="tiny", scale=3)
    assert (again / "events.parquet").read_bytes() == (out / "events.parquet").read_bytes()
    bad = invoke("data", "sample", "--scale", "0", "--out", tmp_path / "bad")
    assert bad.exit_code == 2


def test_regenerating_the_committed_world_gives_the_same_data(tmp_path, events):
    out = tmp_path / "shop"
    generate_world(out, seed=7, size="small")
    # content, not bytes: Parquet metadata names the writer's version
    assert pl.read_parquet(out / "events.parquet").equals(events)
    assert pl.read_parquet(out / "items.parquet").equals(pl.read_parquet(SHOP / "items.parquet"))


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_tiny_world_invariants_hold_for_any_seed(seed, tmp_path_factory):
    out = tmp_path_factory.mktemp("prop") / "w"
    summary = generate_world(out, seed=seed, size="tiny")
    ev = pl.read_parquet(out / "events.parquet")
    assert ev["ts"].is_sorted() and ev.height == summary["n_events"] > 0
    gaps = ev.sort("session_id", "ts").select(gap=pl.col("ts").diff().over("session_id"))
    assert gaps["gap"].drop_nulls().max() <= timedelta(minutes=30)
    viewed = ev.filter(pl.col("event") == "view").select("session_id", "item_id").unique()
    rest = ev.filter(pl.col("event") != "view").select("session_id", "item_id").unique()
    assert rest.join(viewed, on=["session_id", "item_id"], how="anti").height == 0
    items = pl.read_parquet(out / "items.parquet")
    assert ev["item_id"].is_in(items["item_id"].implode()).all()
    shift = _ts(summary["shift_time"])
    new = items.filter(pl.col("launched_at") == shift)["item_id"].implode()
    assert ev.filter(pl.col("item_id").is_in(new) & (pl.col("ts") < shift)).height == 0
    bandit = pl.read_parquet(out / "bandit.parquet")
    assert bandit["propensity"].min() >= 0.002


def test_sizes_grow_as_documented():
    small, medium, large = SIZES["small"], SIZES["medium"], SIZES["large"]
    assert large.n_items >= 100_000 and medium.n_items >= 20_000
    # expected events ~ sessions/day x days x (mean views x funnel) >= 10M for large
    assert large.sessions_per_day * large.days * 6 >= 10_000_000
    assert medium.days - medium.shift_day >= 14 and medium.shift_day >= 28
    assert small.days == 28 and 19 <= small.shift_day <= 21


def test_failed_run_publishes_nothing(tmp_path, monkeypatch):
    import rtml_cli.data.world.generate as world_mod

    def boom(*args, **kwargs):
        raise RuntimeError("killed")

    monkeypatch.setattr(world_mod, "_bandit_table", boom)
    out = tmp_path / "world"
    with pytest.raises(RuntimeError):
        generate_world(out, seed=0, size="tiny")
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == []


def test_killed_run_leaves_nothing_that_looks_complete(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "world"
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtml_cli", "data", "sample", "--out", str(out), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # whenever the kill landed: either no world at all, or a complete one
    if out.exists():
        assert {*PARQUETS, "world.json", "click_model.npz"} <= {p.name for p in out.iterdir()}
        assert pl.read_parquet(out / "events.parquet").height > 0
    visible = [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")]
    assert visible in ([], ["world"])


def test_refuses_to_replace_a_directory_that_is_not_a_world(tmp_path):
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "keep.txt").write_text("mine")
    with pytest.raises(OutputError, match="rtml did not write"):
        generate_world(precious, seed=0, size="tiny")
    assert (precious / "keep.txt").read_text() == "mine"


# --------------------------------------------------------------------------- CLI


def test_cli_sample_table_and_json(invoke, tmp_path):
    out = tmp_path / "w"
    result = invoke("data", "sample", "--out", out, "--size", "tiny", "--seed", "1")
    assert result.exit_code == ExitCode.OK, result.stderr
    for label in ("events", "anonymous share", "sessions", "shift time", "trending bursts"):
        assert label in result.stdout
    assert "wrote sample world" in result.stderr
    assert (out / "world.json").is_file()
    # an existing world is replaced as a whole
    result = invoke("data", "sample", "--out", out, "--size", "tiny", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    payload = json.loads(result.stdout)
    assert payload["seed"] == 0 and payload["n_events"] > 1_000
    assert json.loads((out / "world.json").read_text())["seed"] == 0


def test_cli_bad_size_is_a_usage_error(invoke, tmp_path):
    result = invoke("data", "sample", "--out", tmp_path / "w", "--size", "huge")
    assert result.exit_code == ExitCode.USAGE
    assert "--size" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "w").exists()


def test_cli_unwritable_out_is_cant_create(invoke, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = invoke("data", "sample", "--out", blocker / "world", "--size", "tiny")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert result.stderr.strip().startswith("rtml: error: cannot create")
    assert "Traceback" not in result.stderr
    assert blocker.read_text() == "x"
    result = invoke("data", "sample", "--out", blocker, "--size", "tiny")
    assert result.exit_code == ExitCode.CANT_CREATE
    assert "is a file" in result.stderr
