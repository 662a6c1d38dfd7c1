"""Serving strategies by name: the registry, ``name@freshness`` parsing, building, expansion.

Every strategy implements ``base.Strategy`` and registers in ``base.STRATEGIES``; this
module imports the stage modules so that all of them are registered:

======================= ======= ==========================================================
name                    stage   what it serves
======================= ======= ==========================================================
popular                 1       the precomputed popularity list
batch                   1       the precomputed per-user list; strangers get ``popular``
session-embedding       2       mean of the session's item embeddings → Annoy → cosine
session-embedding-decay 2       the same with a position-decayed mean (recent items weigh more)
session-itemknn         2       item-item neighbours of the session's items, aggregated
online-ranker           3       logistic regression over batch + real-time + streaming
                                features, on the union of the two Stage-2 generators
online-ranker-no-F      3       ablation: the ranker without feature family F
                                (batch, realtime, streaming)
======================= ======= ==========================================================

Any strategy that reads streaming features takes a freshness suffix, e.g.
``online-ranker@5m``: it sees the stream as published 5 minutes before the request.
A new strategy subclasses ``Strategy`` in the module of its stage and registers a
factory with ``STRATEGIES.add(name, factory, description=..., stage=..., streaming=...,
default=...)``; ``rtml_cli.checks.strategies`` runs every registered one through the
same contract (``tests/test_registry.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from rtml_cli.errors import UsageError
from rtml_cli.online import baseline as _baseline  # noqa: F401 - registers ``baseline``
from rtml_cli.online.base import STRATEGIES, Env, Factory, Request, Strategy, take_unseen
from rtml_cli.online.stage1 import Batch, Popular
from rtml_cli.online.stage2 import (
    SessionEmbedding,
    SessionItemKNN,
    knn_scores,
    session_vector,
    top_by_score,
    unseen_mask,
)
from rtml_cli.online.stage3 import OnlineRanker
from rtml_cli.registry import Entry

__all__ = [
    "ABLATIONS",
    "DEFAULT_STRATEGIES",
    "REGISTRY",
    "RANKER",
    "STRATEGIES",
    "Batch",
    "Env",
    "Factory",
    "OnlineRanker",
    "Popular",
    "Request",
    "SessionEmbedding",
    "SessionItemKNN",
    "Strategy",
    "build",
    "expand_names",
    "knn_scores",
    "parse_name",
    "session_vector",
    "take_unseen",
    "top_by_score",
    "trains",
    "unseen_mask",
]

REGISTRY = STRATEGIES  # the name this registry had before it became a ``Registry``
#: What ``simulate`` serves when no strategy is named (``default`` in the registry).
DEFAULT_STRATEGIES = tuple(e.name for e in STRATEGIES.entries() if e.meta.get("default"))
#: The online ranker: the reference of the ablation and the freshness sweep.
RANKER = "online-ranker"
#: The ranker without one feature family each, in registration order.
ABLATIONS = tuple(e.name for e in STRATEGIES.entries() if e.meta.get("ablates"))


def parse_name(spec: str) -> tuple[str, timedelta | None]:
    """``online-ranker@5m`` → (``online-ranker``, 5 minutes); unknown names → UsageError."""
    from rtml_cli.timeutil import parse_duration

    base, _, lag_text = spec.strip().partition("@")
    entry = STRATEGIES.entry(base)
    if lag_text and not entry.meta["streaming"]:
        raise UsageError(f"strategy {base!r} reads no streaming features: drop '@{lag_text}'")
    return base, parse_duration(lag_text) if lag_text else None


def build(spec: str, env: Env, *, entry: Entry[Factory] | None = None) -> Strategy:
    """The strategy named ``spec`` (with an optional ``@freshness``), prepared to serve.

    A streaming strategy without a suffix reads the stream ``env.freshness`` late. The
    strategy's ``prepare(env)`` hook runs here (the online ranker trains in it). ``entry``:
    build this entry, registered or not, under its own name (``spec`` is then its name)."""
    if entry is None:
        base, lag = parse_name(spec)
        entry = STRATEGIES.entry(base)
    else:
        lag = None
    if lag is None and entry.meta["streaming"]:
        lag = env.freshness
    strategy = entry.obj(env, lag)
    if not isinstance(strategy, Strategy):
        raise TypeError(f"the factory returned {type(strategy).__name__}, not a Strategy")
    strategy.name = spec.strip()
    strategy.prepare(env)
    return strategy


def expand_names(
    strategies: str | Sequence[str],
    *,
    ablation: bool = False,
    freshness_sweep: str | Sequence[str] | None = None,
    freshness: timedelta = timedelta(seconds=60),
) -> list[str]:
    """The strategies a run serves: ``strategies`` (a list or comma-separated), then with
    ``ablation`` every ablation of the ranker, then per lag of ``freshness_sweep`` (e.g.
    ``"0s,5m,1h"``) ``online-ranker@LAG`` unless the lag is ``freshness`` — what
    ``online-ranker`` itself reads, the sweep's reference (so it must be served)."""
    from rtml_cli.timeutil import format_duration, parse_duration

    given = strategies.split(",") if isinstance(strategies, str) else strategies
    names = [s.strip() for s in given if s.strip()]
    if ablation:
        names += [name for name in ABLATIONS if name not in names]
    if freshness_sweep:
        lags = freshness_sweep.split(",") if isinstance(freshness_sweep, str) else freshness_sweep
        for text in lags:
            value = parse_duration(text)
            name = f"{RANKER}@{format_duration(value) if value.total_seconds() else '0s'}"
            if value != freshness and name not in names:
                names.append(name)
        if RANKER not in names:
            raise UsageError(f"--freshness-sweep compares against {RANKER}: add it to --strategies")
    return names


def trains(names: Sequence[str]) -> bool:
    """Whether any of these strategies learns from the training window before serving."""
    bases = {spec.strip().partition("@")[0] for spec in names}
    return any(STRATEGIES.entry(b).meta.get("trains") for b in bases if b in STRATEGIES)
