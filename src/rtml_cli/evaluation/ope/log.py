"""Log loading for off-policy evaluation: a bandit log as dense numpy arrays.

``load_bandit_log`` reads a Parquet/CSV log (``contracts.BANDIT``) and validates it — every
problem an importance weight cannot live with is a one-line ``DataError`` — into a
``BanditLog``: dense action and position indices, rewards, propensities and a context
design matrix. ``read_table`` is the one reader of Parquet/CSV tables for the OPE and
contextual jobs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rtml_cli.errors import DataError, UsageError


@dataclass
class BanditLog:
    """A validated bandit log with dense action / position indices.

    ``actions[action_idx[i]]`` is event ``i``'s original action id; ``positions`` likewise.
    ``context`` is a float design matrix built from the context columns (numeric columns
    as they are, string columns one-hot), or ``None`` when the log has none.
    """

    source: str
    actions: np.ndarray
    action_idx: np.ndarray
    positions: np.ndarray
    position_idx: np.ndarray
    reward: np.ndarray
    propensity: np.ndarray | None
    context: np.ndarray | None = None
    context_names: list[str] = field(default_factory=list)
    ts_order: np.ndarray | None = None  # event indices in time order (None: row order)
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. user_idx
    warnings: list[str] = field(default_factory=list)  # found while reading (report them)

    @property
    def n(self) -> int:
        return int(self.reward.shape[0])

    @property
    def n_actions(self) -> int:
        return int(self.actions.shape[0])

    @property
    def n_positions(self) -> int:
        return int(self.positions.shape[0])

    def require_context(self, needed_by: str) -> np.ndarray:
        """``context``; a ``DataError`` naming ``needed_by`` when the log has no context."""
        if self.context is None:
            raise DataError(f"{needed_by} needs context columns, and {self.source} has none")
        return self.context

    def subset(self, rows: np.ndarray) -> BanditLog:
        """The events ``rows`` (sorted), keeping the same action and position index."""
        rows = np.sort(np.asarray(rows))
        return BanditLog(
            source=self.source,
            actions=self.actions,
            action_idx=self.action_idx[rows],
            positions=self.positions,
            position_idx=self.position_idx[rows],
            reward=self.reward[rows],
            propensity=None if self.propensity is None else self.propensity[rows],
            context=None if self.context is None else self.context[rows],
            context_names=self.context_names,
            ts_order=None,
            extra={k: v[rows] for k, v in self.extra.items()},
            warnings=list(self.warnings),
        )

    def action_index_of(self, values: Sequence[Any], *, what: str) -> np.ndarray:
        """Dense indices of ``values``; a ``DataError`` naming every action not in the log."""
        lookup = {_key(a): i for i, a in enumerate(self.actions.tolist())}
        missing = [v for v in values if _key(v) not in lookup]
        if missing:
            shown = ", ".join(map(str, sorted(set(map(str, missing)))[:5]))
            raise DataError(
                f"{what} names {len(set(map(str, missing)))} action(s) that {self.source} never "
                f"logged ({shown}{', …' if len(set(missing)) > 5 else ''}); OPE can only "
                "evaluate actions of the log's action set"
            )
        return np.array([lookup[_key(v)] for v in values], dtype=np.int64)

    def position_index_of(self, values: Sequence[Any], *, what: str) -> np.ndarray:
        lookup = {int(p): i for i, p in enumerate(self.positions.tolist())}
        out = []
        for v in values:
            if v is None or _key(v) not in lookup:
                raise DataError(f"{what} has position {v}, which {self.source} never logged")
            out.append(lookup[_key(v)])
        return np.array(out, dtype=np.int64)


def _key(value: Any) -> Any:
    """Normalise action ids so 3, 3.0 and numpy ints compare equal; strings stay strings."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return str(value)


def resolve_context_columns(columns: Sequence[str], spec: str | None) -> list[str]:
    """Context columns: ``spec`` is comma-separated names or prefixes ending in ``*``.

    Without a spec, every column whose name starts with ``ctx_`` is context.
    """
    items = ["ctx_*"] if not spec else [s.strip() for s in spec.split(",") if s.strip()]
    chosen: list[str] = []
    for item in items:
        if item.endswith("*"):
            matched = [c for c in columns if c.startswith(item[:-1])]
        elif item in columns:
            matched = [item]
        else:
            raise UsageError(f"--context-cols names column {item!r}, which the log does not have")
        chosen.extend(c for c in matched if c not in chosen)
    return chosen


def context_matrix(
    frame: Any, cols: list[str], max_levels: int = 50
) -> tuple[np.ndarray, list[str]]:
    """A float design matrix from ``cols``: numeric columns as they are (NaN → the column's
    mean), string columns one-hot over their ``max_levels`` most frequent levels (rarer
    levels share the all-zero code)."""
    import polars as pl

    blocks: list[np.ndarray] = []
    names: list[str] = []
    for col in cols:
        series = frame.get_column(col)
        if series.dtype.is_numeric() or series.dtype == pl.Boolean:
            values = series.cast(pl.Float64).to_numpy()
            if np.isnan(values).any():
                values = np.where(np.isnan(values), np.nanmean(values), values)
            blocks.append(values[:, None])
            names.append(col)
        else:
            text = series.cast(pl.String).fill_null("∅")
            levels = text.value_counts(sort=True).get_column(text.name).head(max_levels).to_list()
            levels = sorted(levels)
            arr = text.to_numpy()
            for level in levels:
                blocks.append((arr == level).astype(float)[:, None])
                names.append(f"{col}={level}")
    if not blocks:
        return np.zeros((frame.height, 0)), []
    return np.hstack(blocks), names


def read_table(path: str | Path, *, what: str) -> Any:
    """Read a Parquet file / directory / glob (or a ``.csv``) into a Polars frame."""
    import polars as pl

    from rtml_cli.errors import InputMissing
    from rtml_cli.fsutil import parquet_files

    text = str(path)
    if text.endswith((".csv", ".csv.gz")):
        if not Path(text).exists():
            raise InputMissing(f"{what} {text} does not exist")
        try:
            return pl.read_csv(text, infer_schema_length=10_000)
        except Exception as exc:  # polars raises several error types for bad CSV
            raise DataError(f"{what} {text} is not a readable CSV file: {exc}") from exc
    files = parquet_files(text, what=what)
    try:
        return pl.concat([pl.read_parquet(f) for f in files], how="diagonal_relaxed")
    except Exception as exc:
        raise DataError(f"{what} {text} cannot be read as Parquet: {exc}") from exc


def load_bandit_log(
    path: str | Path,
    *,
    context_cols: str | None = None,
    require_propensity: bool = True,
    what: str = "bandit log",
) -> BanditLog:
    """Read and validate a bandit log (``contracts.BANDIT``) for off-policy evaluation.

    Raises ``DataError`` when the log has no rows or no rewards, when an action or reward
    is missing, and (with ``require_propensity``) when propensities are missing, 0 or
    below, or above 1 — an importance weight needs ``0 < propensity <= 1``.
    """

    frame = read_table(path, what=what)
    return bandit_log_from_frame(
        frame,
        source=str(path),
        context_cols=context_cols,
        require_propensity=require_propensity,
        what=what,
    )


def _require_finite(values: np.ndarray, column: str, where: str) -> None:
    """``DataError`` when a non-null value is NaN or infinite (as ``rtml data validate``)."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: {int(bad.sum())} row(s) have a NaN or infinite {column} (first at "
            f"row {first}, value {values[first]}); fix or drop those rows before evaluating"
        )


def bandit_log_from_frame(
    frame: Any,
    *,
    source: str = "the log",
    context_cols: str | None = None,
    require_propensity: bool = True,
    what: str = "bandit log",
) -> BanditLog:
    """Validate an in-memory Polars frame as a bandit log (see ``load_bandit_log``)."""
    where = f"{what} {source}"
    _check_columns(frame, where, require_propensity)
    reward, warnings = _rewards(frame, where)
    _check_actions_present(frame, where)
    propensity = _propensities(frame, where, require_propensity)
    actions, action_idx = _action_index(frame)
    positions, position_idx = _position_index(frame, where)

    cols = frame.columns
    ctx_cols = resolve_context_columns(cols, context_cols)
    context, names = context_matrix(frame, ctx_cols) if ctx_cols else (None, [])

    ts_order = None
    if "ts" in cols:
        ts_order = np.argsort(frame.get_column("ts").to_physical().to_numpy(), kind="stable")
    extra = {}
    if "user_idx" in cols:
        extra["user_idx"] = frame.get_column("user_idx").to_numpy()
    return BanditLog(
        source=source,
        actions=actions,
        action_idx=action_idx,
        positions=positions,
        position_idx=position_idx,
        reward=reward,
        propensity=propensity,
        context=context,
        context_names=names,
        ts_order=ts_order,
        extra=extra,
        warnings=warnings,
    )


def _check_columns(frame: Any, where: str, require_propensity: bool) -> None:
    """The columns OPE cannot do without, and at least one row."""
    cols = frame.columns
    if "action" not in cols:
        raise DataError(f"{where} has no 'action' column (see `rtml data contracts`)")
    if "reward" not in cols:
        raise DataError(
            f"{where} has no 'reward' column: OPE needs the observed reward of each logged action"
        )
    if require_propensity and "propensity" not in cols:
        raise DataError(
            f"{where} has no 'propensity' column: OPE needs P(logging policy chose "
            "the action) for every row — log it at serving time"
        )
    if frame.height == 0:
        raise DataError(f"{where} has no rows")


def _rewards(frame: Any, where: str) -> tuple[np.ndarray, list[str]]:
    """Every row's reward as floats (none missing, all finite), and a warning when some lie
    outside [0, 1]."""
    import polars as pl

    if frame.schema["reward"] == pl.Null or frame.get_column("reward").null_count() == frame.height:
        raise DataError(f"{where} has no rewards: every 'reward' is null")
    if not frame.schema["reward"].is_numeric() and frame.schema["reward"] != pl.Boolean:
        raise DataError(f"{where}: 'reward' must be numeric or boolean")
    reward_col = frame.get_column("reward")
    n_missing = reward_col.null_count()
    if n_missing:
        first = int(reward_col.is_null().arg_max())
        raise DataError(
            f"{where}: {n_missing} row(s) have no reward (first at row {first}); "
            "drop them or fill them before evaluating"
        )
    reward = reward_col.cast(pl.Float64).to_numpy()
    _require_finite(reward, "reward", where)
    warnings = []
    outside = (reward < 0) | (reward > 1)
    if outside.any():
        warnings.append(
            f"{where}: {int(outside.sum())} reward(s) lie outside [0, 1] (min "
            f"{reward.min():g}, max {reward.max():g}); the estimators' intervals and the "
            "weight warnings assume rewards in [0, 1], so rescale them if they are not clicks"
        )
    return reward, warnings


def _check_actions_present(frame: Any, where: str) -> None:
    action_col = frame.get_column("action")
    n_no_action = action_col.null_count() + (
        int(action_col.is_nan().sum()) if action_col.dtype.is_float() else 0
    )
    if n_no_action:
        raise DataError(f"{where}: {n_no_action} row(s) have no action")
    if action_col.dtype.is_float():
        n_infinite = int(action_col.is_infinite().sum())
        if n_infinite:
            first = int(action_col.is_infinite().arg_max())
            raise DataError(
                f"{where}: {n_infinite} row(s) have an infinite action (first at row {first}); "
                "an action is an arm id"
            )


def _propensities(frame: Any, where: str, require_propensity: bool) -> np.ndarray | None:
    """The logging policy's probability of each logged action; with ``require_propensity``
    every one must be present, finite and in (0, 1]."""
    import polars as pl

    if "propensity" not in frame.columns:
        return None
    if frame.schema["propensity"] == pl.Null:
        frame = frame.with_columns(pl.col("propensity").cast(pl.Float64))
    if not frame.schema["propensity"].is_numeric():
        raise DataError(f"{where}: 'propensity' must be numeric")
    prop_col = frame.get_column("propensity")
    propensity = prop_col.cast(pl.Float64).to_numpy()
    if not require_propensity:
        return propensity
    if prop_col.null_count():
        raise DataError(
            f"{where}: {prop_col.null_count()} row(s) have no propensity (first at "
            f"row {int(prop_col.is_null().arg_max())}); every logged action needs one"
        )
    _require_finite(propensity, "propensity", where)
    low = propensity <= 0
    high = propensity > 1
    if low.any():
        raise DataError(
            f"{where}: {int(low.sum())} row(s) have propensity 0 or below (first "
            f"at row {int(np.flatnonzero(low)[0])}); a logged action must have had a "
            "positive chance, so fix the logging of propensities"
        )
    if high.any():
        raise DataError(
            f"{where}: {int(high.sum())} row(s) have propensity above 1 (first at "
            f"row {int(np.flatnonzero(high)[0])}, value "
            f"{propensity[np.flatnonzero(high)[0]]:g}); propensities are probabilities"
        )
    return propensity


def _action_index(frame: Any) -> tuple[np.ndarray, np.ndarray]:
    """The sorted distinct actions (integral floats as ints) and each event's dense index."""
    import polars as pl

    action_series = frame.get_column("action")
    if action_series.dtype.is_float():
        values = action_series.to_numpy()
        if np.all(np.mod(values, 1) == 0):
            action_series = action_series.cast(pl.Int64)
    actions_sorted = action_series.unique().sort()
    actions = np.array(actions_sorted.to_list(), dtype=object)
    lookup = pl.DataFrame({"action": actions_sorted, "__idx": np.arange(len(actions))})
    action_idx = (
        pl.DataFrame({"action": action_series})
        .join(lookup, on="action", how="left", maintain_order="left")
        .get_column("__idx")
        .to_numpy()
        .astype(np.int64)
    )
    return actions, action_idx


def _position_index(frame: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """The distinct positions and each event's dense index (no position column: all 1)."""
    import polars as pl

    if "position" in frame.columns and frame.get_column("position").null_count() < frame.height:
        pos_col = frame.get_column("position")
        pos_int = pos_col.cast(pl.Int64, strict=False)
        if pos_int.null_count() > pos_col.null_count():
            raise DataError(
                f"{where}: 'position' must hold integers (1 = top slot); "
                f"{pos_int.null_count() - pos_col.null_count()} row(s) do not"
            )
        pos_raw = pos_int.fill_null(1).to_numpy()
    else:
        pos_raw = np.ones(frame.height, dtype=np.int64)
    positions, position_idx = np.unique(pos_raw, return_inverse=True)
    return positions.astype(np.int64), position_idx.astype(np.int64)
