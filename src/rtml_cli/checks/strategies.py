"""The contract every serving strategy honours (``rtml_cli.online.strategies.REGISTRY``).

Each check takes a registry entry, builds its strategy on the tiny shop
(``checks.tiny_shop``: 60 items in bundles of two categories, artifacts as of day 3, the
online ranker trained on the day before) and asks it for K items: K distinct known
items, none seen in the session (under the ``next-item`` protocol seen items are allowed),
the same list every time, also for empty sessions, unknown items and unknown visitors. A new strategy's own tests can call them directly.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.checks import Suite
from rtml_cli.online.strategies import REGISTRY, Env, Request, Strategy, build
from rtml_cli.online.streaming import WindowedCounts
from rtml_cli.registry import Entry

K = 8
HISTORIES = ([3], [3, 11, 3, 12], [41, 40, 42, 45, 44, 43])  # item_idx; one with a re-view


@dataclass(frozen=True)
class Shop:
    """The tiny shop's strategy environment and its stream, published an hour after the as-of."""

    env: Env
    streams: dict[int, WindowedCounts]


@functools.cache
def shop() -> Shop:
    """Built once per process, in a temporary directory removed at exit."""
    from rtml_cli.batch.artifacts import load_artifacts
    from rtml_cli.checks.tiny_shop import AS_OF, tiny_events, write_run
    from rtml_cli.online import replay

    root = Path(tempfile.mkdtemp(prefix="rtml-checks-"))
    atexit.register(shutil.rmtree, root, True)
    events = tiny_events()
    write_run(root, events)
    art = load_artifacts(root)
    as_of = replay.to_us(AS_OF)
    train = replay.prepare(events, art.item_ids, [], start=as_of - 86_400_000_000, end=as_of)
    env = Env(art, n_candidates=30, training=lambda: train, max_train_requests=300)
    data = replay.prepare(events, art.item_ids, [], start=as_of, end=None)
    streams = replay.streams_for(data, {timedelta(seconds=60), timedelta(0)})
    for stream in streams.values():
        stream.advance(as_of + 3_600_000_000)
    return Shop(env, streams)


def request(
    items: Any, *, user: str | None = None, n_unknown: int = 0, protocol: str = "next-unseen"
) -> Request:
    """A request an hour after the as-of in a session that saw ``items`` (item_idx), plus
    ``n_unknown`` events of items the artifacts do not know; ``user`` None is anonymous;
    ``protocol``: the replay protocol (under ``next-item`` seen items may be listed)."""
    from rtml_cli.checks.tiny_shop import AS_OF
    from rtml_cli.online.replay import to_us

    items = np.asarray(items, dtype=np.int64)
    return Request(
        ts=to_us(AS_OF) + 3_600_000_000,
        session_start=to_us(AS_OF) + 3_000_000_000,
        user_id=user,
        segment=0 if user is None else 2,
        items=items,
        n_events=len(items) + n_unknown,
        streams=shop().streams,
        protocol=protocol,
    )


@functools.cache
def built(name: str) -> Strategy:
    """The strategy ``name`` built (and prepared) on the tiny shop, once per process."""
    return build(name, shop().env)


def check_is_a_strategy(entry: Entry[Any]) -> None:
    strategy = built(entry.name)
    assert isinstance(strategy, Strategy), type(strategy)
    assert strategy.name == entry.name, strategy.name
    assert entry.description, "describe the strategy in one line (it is listed in --help)"
    assert entry.meta.get("stage") in (1, 2, 3), entry.meta
    assert isinstance(entry.meta.get("streaming"), bool), entry.meta
    assert (strategy.lag is not None) == entry.meta["streaming"], strategy.lag


def check_returns_k_distinct_unseen_items(entry: Entry[Any]) -> None:
    strategy, n_items = built(entry.name), shop().env.n_items
    for history in HISTORIES:
        out = strategy.recommend(request(history), K)
        assert out.dtype.kind == "i" and len(out) == K, (history, out)
        assert len(set(out.tolist())) == K, (history, out)
        assert not set(out.tolist()) & set(history), (history, out)
        assert ((out >= 0) & (out < n_items)).all(), (history, out)


def check_serves_the_next_item_protocol(entry: Entry[Any]) -> None:
    """Under ``next-item`` a list may hold seen items; it is still K distinct known items."""
    strategy, n_items = built(entry.name), shop().env.n_items
    for history in HISTORIES:
        out = strategy.recommend(request(history, protocol="next-item"), K)
        assert out.dtype.kind == "i" and len(out) == K, (history, out)
        assert len(set(out.tolist())) == K, (history, out)
        assert ((out >= 0) & (out < n_items)).all(), (history, out)


def check_is_deterministic(entry: Entry[Any]) -> None:
    first = built(entry.name).recommend(request([20, 21, 25], user="u001"), K)
    again = build(entry.name, shop().env).recommend(request([20, 21, 25], user="u001"), K)
    assert np.array_equal(first, again), (first, again)


def check_handles_empty_sessions_and_unknown_items(entry: Entry[Any]) -> None:
    strategy = built(entry.name)
    # a session whose only earlier event is an item the artifacts do not know
    out = strategy.recommend(request([], n_unknown=1), K)
    assert len(set(out.tolist())) == K, out
    # an unknown user id
    out = strategy.recommend(request([5], user="never-seen"), K)
    assert len(set(out.tolist())) == K and 5 not in out, out


SUITE = Suite(
    REGISTRY,
    (
        check_is_a_strategy,
        check_returns_k_distinct_unseen_items,
        check_serves_the_next_item_protocol,
        check_is_deterministic,
        check_handles_empty_sessions_and_unknown_items,
    ),
)
