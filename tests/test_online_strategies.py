"""Strategies: the registry, names, and what the session strategies serve.

The contract every registered strategy honours (``rtml_cli.checks.strategies``) runs
over the whole registry in ``tests/test_registry.py``."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from rtml_cli.checks.strategies import K, request, shop
from rtml_cli.errors import UsageError
from rtml_cli.online.strategies import (
    ABLATIONS,
    DEFAULT_STRATEGIES,
    REGISTRY,
    build,
    expand_names,
    parse_name,
)


def test_session_strategies_follow_the_session():
    # the tiny shop's sessions stay in one bundle (categories 2b, 2b+1): items 40-59 here
    for name in ("session-embedding", "session-itemknn", "online-ranker"):
        out = build(name, shop().env).recommend(request([40, 41, 50]), K)
        assert np.mean((out >= 40) & (out < 60)) >= 0.75, name


def test_unknown_names_and_suffixes_are_usage_errors():
    with pytest.raises(UsageError, match="unknown strategy 'nope'"):
        parse_name("nope")
    with pytest.raises(UsageError, match="no streaming"):
        parse_name("popular@5m")
    assert parse_name("online-ranker@5m") == ("online-ranker", timedelta(minutes=5))


def test_defaults_and_ablations_come_from_the_registry():
    assert DEFAULT_STRATEGIES == (
        "popular",
        "batch",
        "session-embedding",
        "session-itemknn",
        "online-ranker",
    )
    assert set(DEFAULT_STRATEGIES) <= set(REGISTRY.names())
    assert tuple(f"online-ranker-no-{f}" for f in ("batch", "realtime", "streaming")) == ABLATIONS


def test_expand_names_adds_ablations_and_the_freshness_sweep():
    minute = timedelta(seconds=60)
    assert expand_names("popular, online-ranker,", freshness=minute) == [
        "popular",
        "online-ranker",
    ]
    names = expand_names(
        "online-ranker,online-ranker-no-batch",
        ablation=True,
        freshness_sweep="0s,60s,1h,1h",
        freshness=minute,
    )
    assert names == [
        "online-ranker",
        "online-ranker-no-batch",
        "online-ranker-no-realtime",
        "online-ranker-no-streaming",
        "online-ranker@0s",
        "online-ranker@1h",
    ]
    with pytest.raises(UsageError, match="compares against online-ranker"):
        expand_names("popular", freshness_sweep="0s", freshness=minute)
