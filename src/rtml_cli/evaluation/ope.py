"""Off-policy evaluation (OPE) of logged bandit feedback.

Given a log collected by a *logging* (behaviour) policy ``pi_b`` — one row per
impression with the chosen ``action``, its ``reward`` and the ``propensity``
``pi_b(a_i | x_i)`` — and an *evaluation* policy ``pi_e`` (see
``rtml_cli.evaluation.policyspec``), estimate ``V(pi_e) = E[r]`` had ``pi_e``
chosen the actions. The estimators follow the definitions of the Open Bandit
Pipeline (Saito et al., 2021); each class docstring gives its formula with

    w_i    = pi_e(a_i | x_i) / pi_b(a_i | x_i)          (importance weight)
    q_i    = q_hat(x_i, a_i)                             (reward model at the logged action)
    v_i    = sum_a pi_e(a | x_i) q_hat(x_i, a)           (reward model under pi_e)

Here a "context" ``x_i`` is the logged event: its position and its context
columns. The reward model ``q_hat`` is fit once on the evaluated log and held
fixed in the bootstrap (as in OBP); confidence intervals are percentile
intervals over ``--bootstrap`` resamples of the events, drawn with one seeded
generator so the same input and seed give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rtml_cli.errors import DataError, UsageError

# Events per chunk when a policy's (events x actions) probability matrix is materialised.
CHUNK_CELLS = 2_000_000
# Weight diagnostics: warn above these.
MAX_WEIGHT_WARN = 100.0
MIN_ESS_SHARE_WARN = 0.01
NO_SUPPORT_SHARE_WARN = 0.01


# --------------------------------------------------------------------------- the log


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


def _context_matrix(frame, cols: list[str], max_levels: int = 50) -> tuple[np.ndarray, list[str]]:
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


def read_table(path: str | Path, *, what: str):
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


def _require_finite(values: np.ndarray, column: str, what: str, source: str) -> None:
    """``DataError`` when a non-null value is NaN or infinite (as ``rtml data validate``)."""
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{what} {source}: {int(bad.sum())} row(s) have a NaN or infinite {column} (first at "
            f"row {first}, value {values[first]}); fix or drop those rows before evaluating"
        )


def bandit_log_from_frame(
    frame,
    *,
    source: str = "the log",
    context_cols: str | None = None,
    require_propensity: bool = True,
    what: str = "bandit log",
) -> BanditLog:
    """Validate an in-memory Polars frame as a bandit log (see ``load_bandit_log``)."""
    import polars as pl

    cols = frame.columns
    if "action" not in cols:
        raise DataError(f"{what} {source} has no 'action' column (see `rtml data contracts`)")
    if "reward" not in cols:
        raise DataError(
            f"{what} {source} has no 'reward' column: OPE needs the observed reward of each "
            "logged action"
        )
    if require_propensity and "propensity" not in cols:
        raise DataError(
            f"{what} {source} has no 'propensity' column: OPE needs P(logging policy chose "
            "the action) for every row — log it at serving time"
        )
    if frame.height == 0:
        raise DataError(f"{what} {source} has no rows")
    if frame.schema["reward"] == pl.Null or frame.get_column("reward").null_count() == frame.height:
        raise DataError(f"{what} {source} has no rewards: every 'reward' is null")
    if not frame.schema["reward"].is_numeric() and frame.schema["reward"] != pl.Boolean:
        raise DataError(f"{what} {source}: 'reward' must be numeric or boolean")
    reward_col = frame.get_column("reward")
    n_missing = reward_col.null_count()
    if n_missing:
        first = int(reward_col.is_null().arg_max())
        raise DataError(
            f"{what} {source}: {n_missing} row(s) have no reward (first at row {first}); "
            "drop them or fill them before evaluating"
        )
    reward = reward_col.cast(pl.Float64).to_numpy()
    _require_finite(reward, "reward", what, source)
    warnings = []
    outside = (reward < 0) | (reward > 1)
    if outside.any():
        warnings.append(
            f"{what} {source}: {int(outside.sum())} reward(s) lie outside [0, 1] (min "
            f"{reward.min():g}, max {reward.max():g}); the estimators' intervals and the "
            "weight warnings assume rewards in [0, 1], so rescale them if they are not clicks"
        )
    action_col = frame.get_column("action")
    n_no_action = action_col.null_count() + (
        int(action_col.is_nan().sum()) if action_col.dtype.is_float() else 0
    )
    if n_no_action:
        raise DataError(f"{what} {source}: {n_no_action} row(s) have no action")

    propensity = None
    if "propensity" in cols:
        if frame.schema["propensity"] == pl.Null:
            frame = frame.with_columns(pl.col("propensity").cast(pl.Float64))
        if not frame.schema["propensity"].is_numeric():
            raise DataError(f"{what} {source}: 'propensity' must be numeric")
        prop_col = frame.get_column("propensity")
        propensity = prop_col.cast(pl.Float64).to_numpy()
        if require_propensity and prop_col.null_count():
            raise DataError(
                f"{what} {source}: {prop_col.null_count()} row(s) have no propensity (first at "
                f"row {int(prop_col.is_null().arg_max())}); every logged action needs one"
            )
        if require_propensity:
            _require_finite(propensity, "propensity", what, source)
            low = propensity <= 0
            high = propensity > 1
            if low.any():
                raise DataError(
                    f"{what} {source}: {int(low.sum())} row(s) have propensity 0 or below (first "
                    f"at row {int(np.flatnonzero(low)[0])}); a logged action must have had a "
                    "positive chance, so fix the logging of propensities"
                )
            if high.any():
                raise DataError(
                    f"{what} {source}: {int(high.sum())} row(s) have propensity above 1 (first at "
                    f"row {int(np.flatnonzero(high)[0])}, value "
                    f"{propensity[np.flatnonzero(high)[0]]:g}); propensities are probabilities"
                )

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
    if "position" in cols and frame.get_column("position").null_count() < frame.height:
        pos_col = frame.get_column("position")
        pos_int = pos_col.cast(pl.Int64, strict=False)
        if pos_int.null_count() > pos_col.null_count():
            raise DataError(
                f"{what} {source}: 'position' must hold integers (1 = top slot); "
                f"{pos_int.null_count() - pos_col.null_count()} row(s) do not"
            )
        pos_raw = pos_int.fill_null(1).to_numpy()
    else:
        pos_raw = np.ones(frame.height, dtype=np.int64)
    positions, position_idx = np.unique(pos_raw, return_inverse=True)

    ctx_cols = resolve_context_columns(cols, context_cols)
    context, names = _context_matrix(frame, ctx_cols) if ctx_cols else (None, [])

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
        positions=positions.astype(np.int64),
        position_idx=position_idx.astype(np.int64),
        reward=reward,
        propensity=propensity,
        context=context,
        context_names=names,
        ts_order=ts_order,
        extra=extra,
        warnings=warnings,
    )


# --------------------------------------------------------------------------- policies


class TargetPolicy:
    """An evaluation policy: its action distribution for each event of a log.

    ``probs(log, rows)`` returns a dense ``(len(rows), log.n_actions)`` matrix whose rows sum
    to 1. Implementations compute it per chunk so large logs never need an
    ``events x actions`` matrix at once.
    """

    name: str = "policy"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass
class PositionTablePolicy(TargetPolicy):
    """A context-free policy: one action distribution per position (``table[P, A]``)."""

    table: np.ndarray
    name: str = "table"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.table[log.position_idx[rows]]


@dataclass
class EventTablePolicy(TargetPolicy):
    """One action distribution per logged event (``matrix[n, A]``, aligned with the log)."""

    matrix: np.ndarray
    name: str = "per-event table"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.matrix[rows]


@dataclass
class ScorePolicy(TargetPolicy):
    """Greedy on a score: the argmax action (ties share), mixed with ``epsilon`` uniform."""

    score: Callable[[BanditLog, np.ndarray], np.ndarray]
    epsilon: float = 0.0
    name: str = "greedy"
    description: str = ""

    def probs(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        s = self.score(log, rows)
        best = s >= s.max(axis=1, keepdims=True) - 1e-12
        p = best / best.sum(axis=1, keepdims=True)
        return (1.0 - self.epsilon) * p + self.epsilon / s.shape[1]


def iter_chunks(n: int, n_actions: int) -> list[np.ndarray]:
    size = max(1, CHUNK_CELLS // max(1, n_actions))
    return [np.arange(s, min(n, s + size)) for s in range(0, n, size)]


# --------------------------------------------------------------------------- reward models


class RewardModel:
    """``q_hat(x, a)``: expected reward of each action for each event (the DM/DR model)."""

    name: str = "reward model"

    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


@dataclass
class MeanRewardModel(RewardModel):
    """Per action x position mean reward, shrunk towards the position mean by ``prior`` events.

    ``q(p, a) = (sum of rewards of a at p + prior * mean_p) / (count(a at p) + prior)``;
    actions never logged at a position get the position mean.
    """

    table: np.ndarray  # (P, A)
    name: str = "mean"

    @classmethod
    def fit(cls, log: BanditLog, prior: float = 1.0) -> MeanRewardModel:
        shape = (log.n_positions, log.n_actions)
        sums = np.zeros(shape)
        counts = np.zeros(shape)
        np.add.at(sums, (log.position_idx, log.action_idx), log.reward)
        np.add.at(counts, (log.position_idx, log.action_idx), 1.0)
        pos_mean = sums.sum(axis=1, keepdims=True) / np.maximum(
            counts.sum(axis=1, keepdims=True), 1
        )
        return cls(table=(sums + prior * pos_mean) / (counts + prior))

    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        return self.table[log.position_idx[rows]]


@dataclass
class LogisticRewardModel(RewardModel):
    """L2-regularised logistic regression on standardised context + action + position.

    ``q(x, p, a) = sigmoid(b + x·w_x + w_a[a] + w_p[p])`` — additive, so it cannot express
    that different contexts prefer different actions; fit by L-BFGS (scipy).
    """

    mean: np.ndarray
    scale: np.ndarray
    w_x: np.ndarray
    w_a: np.ndarray
    w_p: np.ndarray
    bias: float
    name: str = "logistic"

    @classmethod
    def fit(cls, log: BanditLog, l2: float = 1.0) -> LogisticRewardModel:
        from scipy.optimize import minimize

        if log.reward.min() < 0 or log.reward.max() > 1:
            raise UsageError(
                "--reward-model logistic needs rewards in [0, 1]; use --reward-model mean"
            )
        x = log.context if log.context is not None else np.zeros((log.n, 0))
        mean = x.mean(axis=0) if x.shape[1] else np.zeros(0)
        scale = x.std(axis=0) if x.shape[1] else np.zeros(0)
        scale = np.where(scale > 0, scale, 1.0)
        xs = (x - mean) / scale
        d, n_a, n_p = xs.shape[1], log.n_actions, log.n_positions
        y = log.reward
        a_idx, p_idx = log.action_idx, log.position_idx

        def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w_x, w_a, w_p, b = theta[:d], theta[d : d + n_a], theta[d + n_a : -1], theta[-1]
            z = b + xs @ w_x + w_a[a_idx] + w_p[p_idx]
            # log(1 + e^z) - y z, computed stably
            nll = np.sum(np.logaddexp(0.0, z) - y * z)
            g = 1.0 / (1.0 + np.exp(-z)) - y
            grad = np.empty_like(theta)
            grad[:d] = xs.T @ g
            grad[d : d + n_a] = np.bincount(a_idx, weights=g, minlength=n_a)
            grad[d + n_a : -1] = np.bincount(p_idx, weights=g, minlength=n_p)
            grad[-1] = g.sum()
            reg = 0.5 * l2 * np.sum(theta[:-1] ** 2)
            grad[:-1] += l2 * theta[:-1]
            return float(nll + reg), grad

        theta0 = np.zeros(d + n_a + n_p + 1)
        ybar = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
        theta0[-1] = math.log(ybar / (1 - ybar))
        res = minimize(loss, theta0, jac=True, method="L-BFGS-B", options={"maxiter": 500})
        th = res.x
        return cls(
            mean=mean,
            scale=scale,
            w_x=th[:d],
            w_a=th[d : d + n_a],
            w_p=th[d + n_a : -1],
            bias=float(th[-1]),
        )

    def predict(self, log: BanditLog, rows: np.ndarray) -> np.ndarray:
        z = self.bias + self.w_p[log.position_idx[rows]]
        if self.w_x.size:
            z = z + ((log.context[rows] - self.mean) / self.scale) @ self.w_x
        z = z[:, None] + self.w_a[None, :]
        return 1.0 / (1.0 + np.exp(-z))


REWARD_MODELS = {"mean": MeanRewardModel.fit, "logistic": LogisticRewardModel.fit}


def fit_reward_model(log: BanditLog, kind: str) -> RewardModel:
    if kind not in REWARD_MODELS:
        raise UsageError(
            f"unknown --reward-model {kind!r}; choose one of {', '.join(REWARD_MODELS)}"
        )
    return REWARD_MODELS[kind](log)


# --------------------------------------------------------------------------- estimators


@dataclass
class EventTerms:
    """Per-event quantities every estimator is a function of (see the module docstring)."""

    w: np.ndarray
    r: np.ndarray
    q: np.ndarray
    v: np.ndarray


class Estimator:
    """An off-policy estimator: ``value(w, r, q, v)`` on arrays of shape ``(..., n)``.

    Vectorised over leading axes so the bootstrap evaluates all resamples at once.
    """

    name: ClassVar[str] = ""
    needs_model: ClassVar[bool] = False

    def value(self, w: np.ndarray, r: np.ndarray, q: np.ndarray, v: np.ndarray) -> np.ndarray:
        raise NotImplementedError  # pragma: no cover


class IPS(Estimator):
    """Inverse propensity scoring: ``V = 1/n sum_i w_i r_i``. Unbiased when ``pi_b > 0``
    wherever ``pi_e > 0``; its variance grows with the weights."""

    name = "ips"

    def value(self, w, r, q, v):
        return np.mean(w * r, axis=-1)


class SNIPS(Estimator):
    """Self-normalised IPS: ``V = sum_i w_i r_i / sum_i w_i``. Slightly biased, consistent,
    usually much lower variance than IPS; invariant to a constant shift of the reward."""

    name = "snips"

    def value(self, w, r, q, v):
        return np.sum(w * r, axis=-1) / np.sum(w, axis=-1)


class DM(Estimator):
    """Direct method: ``V = 1/n sum_i sum_a pi_e(a|x_i) q_hat(x_i, a) = 1/n sum_i v_i``.
    Low variance, but biased exactly as much as the reward model is wrong."""

    name = "dm"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v, axis=-1)


class DR(Estimator):
    """Doubly robust: ``V = 1/n sum_i [v_i + w_i (r_i - q_i)]``. Unbiased if either the
    propensities or the reward model are right; the model reduces IPS's variance."""

    name = "dr"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v + w * (r - q), axis=-1)


class SNDR(Estimator):
    """Self-normalised DR: ``V = 1/n sum_i v_i + sum_i w_i (r_i - q_i) / sum_i w_i``."""

    name = "sndr"
    needs_model = True

    def value(self, w, r, q, v):
        return np.mean(v, axis=-1) + np.sum(w * (r - q), axis=-1) / np.sum(w, axis=-1)


class SwitchDR(Estimator):
    """Switch-DR (Wang et al. 2017, as in OBP): ``V = 1/n sum_i [v_i + 1{w_i <= tau} w_i
    (r_i - q_i)]``: DR where the weight is small, the reward model alone where it exceeds
    ``tau`` (``tau = inf`` is DR)."""

    name = "switch-dr"
    needs_model = True

    def __init__(self, tau: float = 100.0) -> None:
        self.tau = float(tau)

    def value(self, w, r, q, v):
        return np.mean(v + (w <= self.tau) * w * (r - q), axis=-1)


ESTIMATORS: dict[str, Callable[..., Estimator]] = {
    cls.name: cls for cls in (IPS, SNIPS, DM, DR, SNDR, SwitchDR)
}
DEFAULT_ESTIMATORS = tuple(ESTIMATORS)


def make_estimators(names: Sequence[str], *, switch_tau: float = 100.0) -> list[Estimator]:
    out: list[Estimator] = []
    for raw in names:
        name = raw.strip().lower().replace("_", "-")
        if name == "switchdr":
            name = "switch-dr"
        if name not in ESTIMATORS:
            raise UsageError(f"unknown estimator {raw!r}; choose from {', '.join(ESTIMATORS)}")
        out.append(SwitchDR(switch_tau) if name == "switch-dr" else ESTIMATORS[name]())
    if not out:
        raise UsageError("--estimators names no estimator")
    return out


# --------------------------------------------------------------------------- core


@dataclass
class Support:
    """How often the log took each action at each position (for the overlap diagnostic)."""

    counts: np.ndarray  # (P, A)

    @classmethod
    def of(cls, log: BanditLog) -> Support:
        counts = np.zeros((log.n_positions, log.n_actions))
        np.add.at(counts, (log.position_idx, log.action_idx), 1.0)
        return cls(counts)


def event_terms(
    log: BanditLog, policy: TargetPolicy, model: RewardModel | None, *, min_support: int = 10
) -> tuple[EventTerms, dict[str, float]]:
    """``w, r, q, v`` for every event, plus the overlap shares of the target's probability.

    Raises ``DataError`` when the policy's probabilities are negative or do not sum to 1
    (within ``policyspec.PROB_TOLERANCE``) for some event.
    """
    from rtml_cli.evaluation.policyspec import PROB_TOLERANCE

    n = log.n
    w = np.empty(n)
    q = np.zeros(n)
    v = np.zeros(n)
    counts = Support.of(log).counts
    never = counts == 0
    rare = counts < min_support
    mass_never = 0.0
    mass_rare = 0.0
    for rows in iter_chunks(n, log.n_actions):
        pi = policy.probs(log, rows)
        if pi.shape != (len(rows), log.n_actions):
            raise DataError(
                f"policy {policy.name} gives a {pi.shape} matrix for {len(rows)} events"
            )
        sums = pi.sum(axis=1)
        bad = np.abs(sums - 1.0) > PROB_TOLERANCE
        if bad.any() or (pi < 0).any() or not np.isfinite(pi).all():
            first = int(rows[np.flatnonzero(bad)[0]]) if bad.any() else int(rows[0])
            raise DataError(
                f"policy {policy.name}: action probabilities must be >= 0 and sum to 1 "
                f"(tolerance {PROB_TOLERANCE:g}) for every event; event {first} sums to "
                f"{sums[np.flatnonzero(bad)[0]] if bad.any() else float('nan'):.6g}"
            )
        a = log.action_idx[rows]
        pos = log.position_idx[rows]
        w[rows] = pi[np.arange(len(rows)), a] / log.propensity[rows]
        mass_never += float((pi * never[pos]).sum())
        mass_rare += float((pi * rare[pos]).sum())
        if model is not None:
            qhat = model.predict(log, rows)
            q[rows] = qhat[np.arange(len(rows)), a]
            v[rows] = np.sum(pi * qhat, axis=1)
    overlap = {
        "target_share_never_logged": min(1.0, mass_never / n),
        "target_share_rarely_logged": min(1.0, mass_rare / n),
    }
    return EventTerms(w=w, r=log.reward, q=q, v=v), overlap


def bootstrap_values(
    terms: EventTerms,
    estimators: Sequence[Estimator],
    n_boot: int,
    rng: np.random.Generator,
    *,
    block_cells: int = 1_000_000,
) -> np.ndarray:
    """``(n_boot, len(estimators))`` estimates on resamples of the events (with replacement).

    Every estimator sees the same resamples; resamples are drawn in blocks of
    ``block_cells`` indices so memory stays bounded.
    """
    n = terms.r.shape[0]
    out = np.empty((n_boot, len(estimators)))
    block = max(1, block_cells // max(n, 1))
    for start in range(0, n_boot, block):
        b = min(block, n_boot - start)
        idx = rng.integers(0, n, size=(b, n))
        w, r, q, v = terms.w[idx], terms.r[idx], terms.q[idx], terms.v[idx]
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, est in enumerate(estimators):
                out[start : start + b, j] = est.value(w, r, q, v)
    return out


def weight_diagnostics(w: np.ndarray) -> dict[str, float]:
    """Effective sample size ``(sum w)^2 / sum w^2``, its share of n, max and mean weight."""
    n = w.shape[0]
    sw2 = float(np.sum(w**2))
    ess = float(np.sum(w)) ** 2 / sw2 if sw2 > 0 else 0.0
    return {
        "effective_sample_size": ess,
        "ess_share": ess / n,
        "max_weight": float(w.max()),
        "mean_weight": float(w.mean()),
        "share_zero_weight": float(np.mean(w == 0)),
    }


def diagnostic_warnings(diag: dict[str, float], n: int) -> list[str]:
    out = []
    if diag["max_weight"] > MAX_WEIGHT_WARN:
        out.append(
            f"largest importance weight is {diag['max_weight']:.4g} (> {MAX_WEIGHT_WARN:g}): a few "
            "events dominate IPS and DR; trust SNIPS / SNDR / Switch-DR more, or evaluate a "
            "policy closer to the logging policy"
        )
    if diag["ess_share"] < MIN_ESS_SHARE_WARN:
        out.append(
            f"effective sample size is {diag['effective_sample_size']:.1f} of {n} events "
            f"({diag['ess_share']:.2%}): importance-weighted estimates rest on very few events"
        )
    if diag["target_share_never_logged"] > NO_SUPPORT_SHARE_WARN:
        out.append(
            f"{diag['target_share_never_logged']:.1%} of the target policy's probability is on "
            "actions the log never took at that position: IPS-type estimates cannot see them "
            "(biased low); only the reward model (DM/DR) speaks for them"
        )
    return out


@dataclass
class OpeResult:
    """Everything ``rtml evaluate ope`` reports (``to_dict`` is the JSON document)."""

    log: str
    n_events: int
    n_actions: int
    n_positions: int
    policy: dict[str, Any]
    reward_model: str
    logged_value: float
    estimates: list[dict[str, Any]]
    diagnostics: dict[str, float]
    warnings: list[str]
    bootstrap: int
    seed: int
    ground_truth: dict[str, Any] | None = None
    switch_tau: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "n_events": self.n_events,
            "n_actions": self.n_actions,
            "n_positions": self.n_positions,
            "policy": self.policy,
            "reward_model": self.reward_model,
            "logged_value": self.logged_value,
            "estimates": self.estimates,
            "diagnostics": self.diagnostics,
            "ground_truth": self.ground_truth,
            "warnings": self.warnings,
            "bootstrap": self.bootstrap,
            "seed": self.seed,
            "switch_tau": self.switch_tau,
        }


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(finite, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


def estimate(
    log: BanditLog,
    policy: TargetPolicy,
    *,
    estimators: Sequence[Estimator],
    reward_model: str = "mean",
    n_boot: int = 1000,
    seed: int = 0,
    min_support: int = 10,
    model: RewardModel | None = None,
) -> tuple[list[dict[str, Any]], dict[str, float], list[str]]:
    """Point estimates with bootstrap CIs, diagnostics and warnings for one policy on one log."""
    if log.propensity is None:
        raise DataError(f"{log.source} has no propensities")
    if model is None and any(e.needs_model for e in estimators):
        model = fit_reward_model(log, reward_model)
    terms, overlap = event_terms(log, policy, model, min_support=min_support)
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        point = [float(e.value(terms.w, terms.r, terms.q, terms.v)) for e in estimators]
    boots = bootstrap_values(terms, estimators, n_boot, rng) if n_boot > 0 else None
    rows = []
    for j, est in enumerate(estimators):
        lo, hi = percentile_ci(boots[:, j]) if boots is not None else (math.nan, math.nan)
        se = float(np.nanstd(boots[:, j], ddof=1)) if boots is not None and n_boot > 1 else math.nan
        rows.append(
            {"estimator": est.name, "value": point[j], "ci_low": lo, "ci_high": hi, "std_error": se}
        )
    diag = {**weight_diagnostics(terms.w), **overlap, "min_support": float(min_support)}
    return rows, diag, diagnostic_warnings(diag, log.n)


def evaluate_ope(
    log_path: str | Path,
    policy_spec: str,
    *,
    estimators: Sequence[str] = DEFAULT_ESTIMATORS,
    n_boot: int = 1000,
    ground_truth: str | Path | None = None,
    reward_model: str = "mean",
    context_cols: str | None = None,
    switch_tau: float = 100.0,
    min_support: int = 10,
    fit_fraction: float = 0.5,
    epsilon: float | None = None,
    seed: int = 0,
) -> OpeResult:
    """The job behind ``rtml evaluate ope``: estimate ``policy_spec``'s value on a log.

    See ``policyspec.build_policy`` for the SPEC grammar. With ``ground_truth`` (a log
    collected by the evaluated policy itself), its mean reward is the on-policy value and
    each estimate gets its relative error ``|estimate - truth| / truth``.
    """
    from rtml_cli.evaluation.policyspec import build_policy

    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if switch_tau <= 0:
        raise UsageError("--switch-tau must be positive")
    if min_support < 1:
        raise UsageError("--min-support must be at least 1")
    ests = make_estimators(estimators, switch_tau=switch_tau)
    full = load_bandit_log(log_path, context_cols=context_cols)
    built = build_policy(
        policy_spec, full, fit_fraction=fit_fraction, epsilon=epsilon, context_cols=context_cols
    )
    log = built.eval_log
    rows, diag, warnings = estimate(
        log,
        built.policy,
        estimators=ests,
        reward_model=reward_model,
        n_boot=n_boot,
        seed=seed,
        min_support=min_support,
    )
    truth = None
    gt_warnings: list[str] = []
    if ground_truth is not None:
        gt = load_bandit_log(ground_truth, require_propensity=False, what="ground-truth log")
        gt_warnings = gt.warnings
        value = float(gt.reward.mean())
        rng = np.random.default_rng(seed + 1)
        if n_boot > 0:
            means = np.array([gt.reward[rng.integers(0, gt.n, gt.n)].mean() for _ in range(n_boot)])
            lo, hi = percentile_ci(means)
        else:
            lo = hi = math.nan
        truth = {
            "log": str(ground_truth),
            "n_events": gt.n,
            "value": value,
            "ci_low": lo,
            "ci_high": hi,
        }
        for row in rows:
            row["relative_error"] = (
                abs(row["value"] - value) / abs(value) if value != 0 else math.nan
            )
            row["truth_in_ci"] = bool(row["ci_low"] <= value <= row["ci_high"])
    return OpeResult(
        log=str(log_path),
        n_events=log.n,
        n_actions=log.n_actions,
        n_positions=log.n_positions,
        policy={"spec": policy_spec, "description": built.description, "n_fit_events": built.n_fit},
        reward_model=reward_model,
        logged_value=float(log.reward.mean()),
        estimates=rows,
        diagnostics=diag,
        warnings=full.warnings + gt_warnings + warnings + built.warnings,
        bootstrap=n_boot,
        seed=seed,
        ground_truth=truth,
        switch_tau=switch_tau if any(isinstance(e, SwitchDR) for e in ests) else None,
    )


def plot_ope(result: OpeResult, path: str | Path) -> None:
    """A PNG: each estimate with its 95% CI, and the ground truth when known."""
    from rtml_cli.fsutil import PNG_OUTPUT, atomic_path

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.5))
    names = [e["estimator"] for e in result.estimates]
    values = np.array([e["value"] for e in result.estimates])
    lo = np.array([e["ci_low"] for e in result.estimates])
    hi = np.array([e["ci_high"] for e in result.estimates])
    err = np.vstack([values - lo, hi - values])
    ax.errorbar(range(len(names)), values, yerr=np.nan_to_num(err), fmt="o", capsize=4)
    if result.ground_truth is not None:
        ax.axhline(result.ground_truth["value"], color="tab:red", ls="--", label="on-policy value")
        ax.legend(loc="best")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("estimated value")
    ax.set_title(f"{result.policy['spec']} on {Path(result.log).name}")
    fig.tight_layout()
    with atomic_path(path, PNG_OUTPUT, option="--plot") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'rtml[plot]'") from None
    return plt
