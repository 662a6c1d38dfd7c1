"""The team's own precomputed lists as a Stage-1 strategy: ``baseline``.

The question a team brings is "online vs *our* batch system", so the replay must be able to
serve the lists the team's system actually produced. ``--baseline-recs FILE`` (Parquet or
CSV) holds ``user_id``, ``rank`` (1 = first) and ``item_id``, and optionally ``as_of`` (when
the list was computed: a request is served the newest list computed at or before it, never
a later one). Rows with a null ``user_id`` are the team's fallback list for visitors without
one; without them, such visitors get the popularity list. ``report()`` counts how many
requests each source served, so the table can say it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, InputMissing, UsageError
from rtml_cli.online.base import STRATEGIES, Env, Request, Strategy, take_unseen

NAME = "baseline"
_NEVER = -(2**62)  # a list without an as_of is valid from the start


@dataclass
class BaselineLists:
    """Per user: the as-of times (µs, ascending) and the item_idx lists computed then."""

    users: dict[str, tuple[list[int], list[np.ndarray]]]
    fallback: tuple[list[int], list[np.ndarray]] | None
    stats: dict[str, int] = field(default_factory=dict)

    def at(self, user: Any, ts: int) -> tuple[np.ndarray | None, str]:
        """The list a request at ``ts`` gets, and where it came from."""
        if user is not None:
            found = _newest(self.users.get(str(user)), ts)
            if found is not None:
                return found, "own"
        found = _newest(self.fallback, ts)
        return (found, "fallback") if found is not None else (None, "popular")


def _newest(entry: tuple[list[int], list[np.ndarray]] | None, ts: int) -> np.ndarray | None:
    if entry is None:
        return None
    times, lists = entry
    i = bisect.bisect_right(times, ts) - 1
    return lists[i] if i >= 0 else None


_COLUMNS = ("user_id", "rank", "item_id")


def _read(path: Path, *, schema_only: bool = False) -> Any:
    """The file as a frame (or, with ``schema_only``, its column names), CSV or Parquet."""
    import polars as pl

    if not path.exists():
        raise InputMissing(f"--baseline-recs {path} does not exist")
    try:
        if path.suffix in (".csv", ".gz"):
            frame = pl.scan_csv(path) if schema_only else pl.read_csv(path)
        else:
            frame = pl.scan_parquet(path) if schema_only else pl.read_parquet(path)
        columns = frame.collect_schema().names() if schema_only else frame.columns
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise DataError(f"cannot read --baseline-recs {path}: {str(exc).splitlines()[0]}") from exc
    missing = [c for c in _COLUMNS if c not in columns]
    if missing:
        raise DataError(
            f"--baseline-recs {path} lacks column(s) {', '.join(missing)}: expected user_id, "
            "rank, item_id and optionally as_of"
        )
    return columns if schema_only else frame


def check_baseline_file(path: str | Path) -> None:
    """Before any work: the file exists (66), is readable and has the columns (65)."""
    _read(Path(path), schema_only=True)


def load_baseline(path: str | Path, to_idx: Any) -> BaselineLists:
    """Read the team's lists (Parquet or CSV) and map their items to ``item_idx`` with
    ``to_idx``; items the artifacts do not know are dropped and counted."""
    import polars as pl

    path = Path(path)
    frame = _read(path)
    if frame.height == 0:
        raise DataError(f"--baseline-recs {path} has no rows")
    frame = frame.with_columns(
        pl.col("user_id").cast(pl.String),
        _as_of_us(frame) if "as_of" in frame.columns else pl.lit(_NEVER).alias("_as_of"),
        pl.Series("_idx", to_idx(frame["item_id"].to_list()), dtype=pl.Int64),
    )
    unknown = int((frame["_idx"] < 0).sum())
    known = frame.filter(pl.col("_idx") >= 0).sort(["user_id", "_as_of", "rank"], nulls_last=True)
    if known.height == 0:
        raise DataError(
            f"none of the {frame['item_id'].n_unique():,} items in --baseline-recs {path} is "
            "known to the artifacts: are they the same item ids as the events?"
        )
    users: dict[str, tuple[list[int], list[np.ndarray]]] = {}
    fallback: tuple[list[int], list[np.ndarray]] | None = None
    for (user, as_of), group in known.group_by(["user_id", "_as_of"], maintain_order=True):
        items = group["_idx"].unique(maintain_order=True).to_numpy()
        if user is None:
            fallback = entry = fallback or ([], [])
        else:
            entry = users.setdefault(str(user), ([], []))
        entry[0].append(int(as_of))
        entry[1].append(items)
    stats = {
        "rows": frame.height,
        "users_with_lists": len(users),
        "unknown_item_rows": unknown,
        "fallback_lists": 0 if fallback is None else len(fallback[0]),
    }
    return BaselineLists(users, fallback, stats)


def _as_of_us(frame: Any) -> Any:
    import polars as pl

    column = frame["as_of"]
    if column.dtype == pl.String:
        column = column.str.to_datetime(time_zone="UTC")
    elif isinstance(column.dtype, pl.Datetime) and column.dtype.time_zone is None:
        column = column.dt.replace_time_zone("UTC")
    elif not isinstance(column.dtype, pl.Datetime):
        raise DataError("--baseline-recs as_of must be a timestamp (or ISO 8601 text)")
    return column.dt.epoch("us").fill_null(_NEVER).alias("_as_of")


class Baseline(Strategy):
    """The team's list for the visitor, as of the request; else its fallback, else popular."""

    def __init__(self, env: Env, lists: BaselineLists) -> None:
        self.env = env
        self.name = NAME
        self.lists = lists
        self.served = {"own": 0, "fallback": 0, "popular": 0}

    def recommend(self, request: Request, k: int) -> np.ndarray:
        ranked, source = self.lists.at(request.user_id, request.ts)
        self.served[source] += 1
        seen = request.seen_set
        chosen = take_unseen(ranked.tolist(), seen, k) if ranked is not None else []
        return self.env.fill(chosen, seen, k)

    def report(self) -> dict[str, Any]:
        return {"served_from": dict(self.served), **self.lists.stats}


def _factory(env: Env, lag: timedelta | None) -> Strategy:
    if env.baseline_recs is None:
        raise UsageError(
            "strategy 'baseline' serves your team's own lists: give them with "
            "--baseline-recs FILE (user_id, rank, item_id[, as_of])"
        )
    key = f"baseline:{env.baseline_recs}"
    if key not in env.cache:
        env.cache[key] = load_baseline(env.baseline_recs, env.artifacts.to_idx)
    return Baseline(env, env.cache[key])


STRATEGIES.add(
    NAME,
    _factory,
    description="your team's own precomputed lists (--baseline-recs), as of each request",
    stage=1,
    streaming=False,
    default=False,
)
