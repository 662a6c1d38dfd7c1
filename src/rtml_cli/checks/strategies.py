"""The contract every serving strategy honours, built in or a plug-in.

Each check takes a registry entry, builds its strategy on the tiny shop
(``checks.tiny_shop``: 60 items in bundles of two categories, artifacts as of day 3, the
online ranker trained on the day before) and asks it for K items: K distinct known items,
none seen in the session (under the ``next-item`` protocol seen items are allowed), the
same list every time, also for empty sessions, unknown items and unknown visitors, and the
same list when the stream's future is different (it never reads ahead), and the same
lists from ``recommend_batch`` as from ``recommend`` one request at a time.

``tests/test_registry.py`` runs :data:`SUITE` over every registered strategy; a plug-in's
own tests call :func:`check_strategy` (re-exported by ``rtml_cli.online.plugins``), and
``rtml simulate`` runs :func:`run_checks` over every plug-in it loads. Failures are
``AssertionError`` with a one-line message saying what the strategy did wrong.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.checks import Suite
from rtml_cli.online.strategies import REGISTRY, Env, Factory, Request, Strategy, build
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
    env = Env(
        art,
        n_candidates=30,
        training=lambda: train,
        max_train_requests=300,
        baseline_recs=_baseline_lists(root, art),
    )
    data = replay.prepare(events, art.item_ids, [], start=as_of, end=None)
    streams = replay.streams_for(data, {timedelta(seconds=60), timedelta(0)})
    for stream in streams.values():
        stream.advance(as_of + 3_600_000_000)
    return Shop(env, streams)


def _baseline_lists(root: Path, art: Any) -> Path:
    """A team's lists for the ``baseline`` strategy: users u000-u009 get items 0-11, one
    list as of before the requests and one after (never served yet), plus a fallback."""
    import polars as pl

    from rtml_cli.checks.tiny_shop import AS_OF

    ids = art.item_ids.tolist()
    rows: list[tuple[str | None, int, Any, Any]] = [
        (f"u{u:03d}", rank + 1, ids[(u + rank) % 12], AS_OF - timedelta(days=1))
        for u in range(10)
        for rank in range(10)
    ]
    rows += [("u000", 1, ids[30], AS_OF + timedelta(days=30))]  # computed after the requests
    rows += [(None, rank + 1, ids[40 + rank], AS_OF - timedelta(days=1)) for rank in range(5)]
    path = root / "baseline.parquet"
    pl.DataFrame(rows, schema=["user_id", "rank", "item_id", "as_of"], orient="row").write_parquet(
        path
    )
    return path


@functools.cache
def other_future(change: str) -> dict[int, WindowedCounts]:
    """The shop's streams with every event not yet published at the request time ``dropped``
    or ``moved`` to another item: what a strategy may see is the same, the future is not."""
    out = {}
    for key, stream in shop().streams.items():
        future = stream.ts >= stream.now - stream.lag_us
        ts, code = stream.ts, stream.key
        if change == "dropped":
            ts, code = ts[~future], code[~future]
        else:  # the same events, each on the item 7 places further on
            code = np.where(future, (code + 14) % stream.counts.shape[1], code)
        other = WindowedCounts(ts, code // 2, code % 2, stream.counts.shape[1] // 2, lag=stream.lag)
        other.advance(stream.now)
        assert np.array_equal(other.counts, stream.counts), "the published state must not move"
        out[key] = other
    return out


def request(
    items: Any,
    *,
    user: str | None = None,
    n_unknown: int = 0,
    protocol: str = "next-unseen",
    streams: dict[int, WindowedCounts] | None = None,
) -> Request:
    """A request an hour after the as-of in a session that saw ``items`` (item_idx), plus
    ``n_unknown`` events of items the artifacts do not know; ``user`` None is anonymous;
    ``protocol``: the replay protocol (under ``next-item`` seen items may be listed);
    ``streams``: the stream it sees (default: the shop's)."""
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
        streams=shop().streams if streams is None else streams,
        protocol=protocol,
    )


_BUILT: dict[str, tuple[Any, Strategy]] = {}


def built(entry: Entry[Any]) -> Strategy:
    """``entry``'s strategy built (and prepared) on the tiny shop, once per process and
    factory (a plug-in registered again under the same name is built again)."""
    hit = _BUILT.get(entry.name)
    if hit is None or hit[0] is not entry.obj:
        hit = (entry.obj, build(entry.name, shop().env, entry=entry))
        _BUILT[entry.name] = hit
    return hit[1]


def _fail(message: str) -> None:
    raise AssertionError(message)  # not ``assert``: the checks also run under ``python -O``


def _ids(items: Iterable[Any]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def check_list(out: Any, k: int, n_items: int, *, seen: Iterable[int] = (), where: str) -> None:
    """``out`` is K distinct known item_idx in an integer array, none of ``seen``;
    else an ``AssertionError`` saying which rule it breaks, ``where``."""
    dtype = getattr(out, "dtype", None)
    if not isinstance(out, np.ndarray) or out.ndim != 1 or dtype is None or dtype.kind not in "iu":
        what = f"{out.ndim}-d {dtype}" if isinstance(out, np.ndarray) else type(out).__name__
        what = f"a {what}" if what[0] not in "aeiou" else f"an {what}"
        _fail(f"returned {what}, not a 1-d integer numpy array {where}")
    items = out.tolist()
    if len(items) < k:
        _fail(f"returned {len(items)} items, fewer than K={k} {where}")
    if len(items) > k:
        _fail(f"returned {len(items)} items, more than K={k} {where}")
    repeated = sorted({i for i in items if items.count(i) > 1})
    if repeated:
        _fail(f"returned duplicate items {_ids(repeated)} {where}")
    unknown = [i for i in items if not 0 <= i < n_items]
    if unknown:
        _fail(
            f"returned unknown item indexes {_ids(unknown)} (item_idx is 0..{n_items - 1}) {where}"
        )
    again = sorted(set(items) & set(seen))
    if again:
        _fail(
            f"returned {_ids(again)}, already seen, {where} (under the next-unseen protocol a "
            "list holds no item the session has seen)"
        )


def check_is_a_strategy(entry: Entry[Any]) -> None:
    """Described, with a stage, and ``streaming`` that matches its lag."""
    strategy = built(entry)  # ``build`` refuses a factory that returns no ``Strategy``
    if strategy.name != entry.name:
        _fail(f"is named {strategy.name!r} after building, not {entry.name!r}")
    if not entry.description:
        _fail("has no description (one line: it is listed in --help)")
    if entry.meta.get("stage") not in (1, 2, 3):
        _fail(f"has stage {entry.meta.get('stage')!r}, not 1, 2 or 3")
    streaming = entry.meta.get("streaming")
    if not isinstance(streaming, bool):
        _fail(f"has streaming={streaming!r}, not True or False")
    if (strategy.lag is not None) != streaming:
        _fail(
            f"is registered with streaming={streaming} but its lag is {strategy.lag}: a streaming "
            "strategy keeps the lag its factory gets (self.lag = lag), others leave it None"
        )


def check_returns_k_distinct_unseen_items(entry: Entry[Any]) -> None:
    """K distinct known items, none the session has seen (``next-unseen``)."""
    strategy, n_items = built(entry), shop().env.n_items
    for history in HISTORIES:
        out = strategy.recommend(request(history), K)
        check_list(out, K, n_items, seen=history, where=f"for the session {_ids(history)}")


def check_serves_the_next_item_protocol(entry: Entry[Any]) -> None:
    """Under ``next-item`` a list may hold seen items; it is still K distinct known items."""
    strategy, n_items = built(entry), shop().env.n_items
    for history in HISTORIES:
        out = strategy.recommend(request(history, protocol="next-item"), K)
        where = f"for the session {_ids(history)} under the next-item protocol"
        check_list(out, K, n_items, where=where)


def check_is_deterministic(entry: Entry[Any]) -> None:
    """The same request gets the same list from a second build."""
    first = built(entry).recommend(request([20, 21, 25], user="u001"), K)
    again = build(entry.name, shop().env, entry=entry).recommend(
        request([20, 21, 25], user="u001"), K
    )
    if not np.array_equal(first, again):
        _fail(
            f"is not deterministic: two builds answered the session [20, 21, 25] with "
            f"{_ids(first)} and {_ids(again)} (seed any randomness with env.seed)"
        )


def check_handles_empty_sessions_and_unknown_items(entry: Entry[Any]) -> None:
    """Sessions whose only event is an unknown item, and unknown visitors, get K items."""
    strategy, n_items = built(entry), shop().env.n_items
    out = strategy.recommend(request([], n_unknown=1), K)
    check_list(out, K, n_items, where="for a session whose only item is unknown to the artifacts")
    out = strategy.recommend(request([5], user="never-seen"), K)
    check_list(out, K, n_items, seen=[5], where="for a visitor the artifacts do not know")


def check_does_not_read_the_future(entry: Entry[Any]) -> None:
    """The same history gets the same list when the stream's unpublished events differ.

    A ``Request`` holds the session's past and the stream as published; the stream object
    also carries the arrays it moves forward on, so a strategy could read ahead there."""
    strategy = built(entry)
    for change in ("dropped", "moved"):
        for history in HISTORIES:
            mine = strategy.recommend(request(history), K)
            other = strategy.recommend(request(history, streams=other_future(change)), K)
            if not np.array_equal(mine, other):
                _fail(
                    f"reads the future: the session {_ids(history)} got {_ids(mine)}, and "
                    f"{_ids(other)} once the stream's unpublished events were {change} (use "
                    "request.streams[lag].features(items), not the stream's arrays)"
                )


def check_batch_is_one_at_a_time(entry: Entry[Any]) -> None:
    """``recommend_batch`` answers a micro-batch with the lists ``recommend`` gives each
    request alone (the replay serves batched strategies through it, ``--micro-batch``)."""
    strategy = built(entry)
    histories = [*HISTORIES, [], [5]]

    def fresh() -> list[Request]:
        return [request(h, n_unknown=0 if h else 1) for h in histories]

    together = list(strategy.recommend_batch(fresh(), K))
    if len(together) != len(histories):
        _fail(f"answered a batch of {len(histories)} requests with {len(together)} lists")
    for history, req, out in zip(histories, fresh(), together, strict=True):
        alone = strategy.recommend(req, K)
        if not np.array_equal(np.asarray(out), alone):
            _fail(
                f"answers differently in a batch: the session {_ids(history)} got "
                f"{_ids(np.asarray(out).tolist())} from recommend_batch and {_ids(alone)} "
                "from recommend (a request's list may not depend on its batch)"
            )


CHECKS: tuple[Callable[[Entry[Any]], None], ...] = (
    check_is_a_strategy,
    check_returns_k_distinct_unseen_items,
    check_serves_the_next_item_protocol,
    check_is_deterministic,
    check_handles_empty_sessions_and_unknown_items,
    check_does_not_read_the_future,
    check_batch_is_one_at_a_time,
)

SUITE = Suite(REGISTRY, CHECKS)


def run_checks(entry: Entry[Any]) -> None:
    """Every check on ``entry``; the first failure is an ``AssertionError`` with one line
    (an exception the strategy raised is reported as such, chained for the traceback)."""
    for check in CHECKS:
        try:
            check(entry)
        except AssertionError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of the strategy's code
            text = str(exc).strip()
            first = f": {text.splitlines()[0]}" if text else ""
            label = check.__name__.removeprefix("check_").replace("_", " ").replace(" k ", " K ")
            raise AssertionError(
                f"raised {type(exc).__name__}{first} (while checking it {label})"
            ) from exc


def check_strategy(
    strategy: str | Factory,
    *,
    name: str | None = None,
    description: str | None = None,
    stage: int = 2,
    streaming: bool = False,
) -> None:
    """Run the whole strategy contract on the tiny shop; raise ``AssertionError`` on failure.

    ``strategy``: a registered name, or a factory ``(env, lag) -> Strategy`` (a ``Strategy``
    subclass taking ``(env, lag)`` is one) checked as if registered with ``name`` (default:
    its ``__name__``), ``description`` (default: its docstring's first line, else the name),
    ``stage`` and ``streaming``.
    """
    if isinstance(strategy, str):
        entry = REGISTRY.entry(strategy)
    else:
        called = name or str(getattr(strategy, "__name__", "strategy"))
        doc = (getattr(strategy, "__doc__", None) or "").strip()
        if description is None:
            description = doc.splitlines()[0] if doc else called
        entry = Entry(called, strategy, description, {"stage": stage, "streaming": streaming})
    try:
        run_checks(entry)
    except AssertionError as exc:
        raise AssertionError(f"strategy {entry.name!r} {exc}") from exc.__cause__
