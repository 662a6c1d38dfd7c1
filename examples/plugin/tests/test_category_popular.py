"""The plug-in's own tests: rtml's strategy contract, then what is specific to it."""

from __future__ import annotations

from rtml_category_popular import CategoryPopular

from rtml_cli.checks.strategies import K, request, shop
from rtml_cli.online.plugins import check_strategy


def test_it_passes_rtml_strategy_contract():
    # the checks rtml runs when it loads the plug-in: K distinct known unseen items,
    # deterministic, empty sessions and unknown visitors, never reads the future
    check_strategy("category-popular")


def test_an_unregistered_factory_can_be_checked_too():
    check_strategy(CategoryPopular, name="my-variant", description="category popularity")


def test_it_serves_the_latest_category_first():
    env = shop().env  # the tiny shop the contract runs on: categories of 10 items
    out = CategoryPopular(env).recommend(request([3, 41]), K)
    assert set(env.item_category[out].tolist()) == {int(env.item_category[41])}
    assert 41 not in out.tolist()
    rank = {item: r for r, item in enumerate(env.popular_list)}
    assert [rank[i] for i in out.tolist()] == sorted(rank[i] for i in out.tolist())
