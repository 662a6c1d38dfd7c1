"""One contract test runs every registered strategy through the same checks."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from rtml_cli.batch.artifacts import load_artifacts
from rtml_cli.errors import UsageError
from rtml_cli.online import replay
from rtml_cli.online.engine import _ranker_trainer, _streams_for
from rtml_cli.online.strategies import REGISTRY, Env, Request, Strategy, build, parse_name
from tests.online_fixtures import AS_OF, tiny_events, write_run

K = 8


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("art")
    events = tiny_events()
    write_run(root, events)
    art = load_artifacts(root)
    env = Env(art, n_candidates=30)
    as_of = replay.to_us(AS_OF)
    train = replay.prepare(events, art.item_ids, [], start=as_of - 86_400_000_000, end=as_of)
    env.fit_ranker = _ranker_trainer(lambda: train, 300, 0)
    data = replay.prepare(events, art.item_ids, [], start=as_of, end=None)
    env.streams = _streams_for(data, {timedelta(seconds=60), timedelta(0)})
    for stream in env.streams.values():
        stream.advance(as_of + 3_600_000_000)
    return env


def _request(env, items, *, user=None, n_unknown=0):
    items = np.asarray(items, dtype=np.int64)
    return Request(
        ts=replay.to_us(AS_OF) + 3_600_000_000,
        session_start=replay.to_us(AS_OF) + 3_000_000_000,
        user_id=user,
        segment=0 if user is None else 2,
        items=items,
        seen=np.unique(items),
        seen_set=set(items.tolist()),
        n_events=len(items) + n_unknown,
        streams=env.streams,
    )


@pytest.fixture(scope="module", params=sorted(REGISTRY))
def strategy(request, env) -> Strategy:
    return build(request.param, env)


def test_is_a_strategy(strategy):
    assert isinstance(strategy, Strategy)
    assert strategy.name in REGISTRY


@pytest.mark.parametrize("history", [[3], [3, 11, 3, 12], [41, 40, 42, 45, 44, 43]])
def test_returns_k_distinct_unseen_items(strategy, env, history):
    out = strategy.recommend(_request(env, history), K)
    assert out.dtype.kind == "i" and len(out) == K
    assert len(set(out.tolist())) == K
    assert not set(out.tolist()) & set(history)
    assert ((out >= 0) & (out < env.n_items)).all()


def test_is_deterministic(strategy, env):
    req = _request(env, [20, 21, 25], user="u001")
    first = strategy.recommend(req, K)
    again = build(strategy.name, env).recommend(_request(env, [20, 21, 25], user="u001"), K)
    assert np.array_equal(first, again)


def test_handles_empty_sessions_and_unknown_items(strategy, env):
    # a session whose only earlier event is an item the artifacts do not know
    out = strategy.recommend(_request(env, [], n_unknown=1), K)
    assert len(set(out.tolist())) == K
    # an unknown user id
    out = strategy.recommend(_request(env, [5], user="never-seen"), K)
    assert len(set(out.tolist())) == K and 5 not in out


def test_session_strategies_follow_the_session(env):
    # the tiny shop's sessions stay in one bundle (categories 2b, 2b+1): items 40-59 here
    for name in ("session-embedding", "session-itemknn", "online-ranker"):
        out = build(name, env).recommend(_request(env, [40, 41, 50]), K)
        assert np.mean((out >= 40) & (out < 60)) >= 0.75, name


def test_unknown_names_and_suffixes_are_usage_errors():
    with pytest.raises(UsageError, match="unknown strategy 'nope'"):
        parse_name("nope")
    with pytest.raises(UsageError, match="no streaming"):
        parse_name("popular@5m")
    assert parse_name("online-ranker@5m") == ("online-ranker", timedelta(minutes=5))
