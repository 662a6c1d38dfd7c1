"""Contextual bandits as an exploration strategy, in a world whose click model is known.

Every request comes from a user; a policy sees the user's observable context
(``ClickModel.user_context``) and recommends ``k`` distinct items, best first. The world
clicks each shown item with its true probability (``ClickModel.prob``, position bias
included) and the policy learns from those ``k`` impressions only — feedback on items it
never shows does not exist. Policies share one interface, ``ContextualPolicy``:

- ``greedy``: the "most clickable" trap — per item click rate (clicks + prior) / (impressions
  + 1), top-k for everyone; items that are never shown never get a chance;
- ``epsilon-greedy``: the same, but each slot shows a uniformly random item with prob. ε;
- ``linucb``: disjoint LinUCB (Li et al. 2010): per item ridge regression of click on the
  context, ranked by ``x·θ_a + α sqrt(x' A_a^-1 x)``;
- ``lints``: linear Thompson sampling (Agrawal & Goyal 2013) with the same statistics,
  ranked by a posterior draw ``x·θ_a + v sqrt(x' A_a^-1 x) z``, ``z ~ N(0, 1)`` per item —
  the exact marginal of ``x·θ~`` for ``θ~ ~ N(θ_a, v² A_a^-1)``;
- ``uniform``: k random items.

Policies update after every batch of ``batch_size`` requests, as a serving system that
refreshes its model every few seconds would. Online mode reports CTR, cumulative (pseudo-)
regret against the oracle that shows each user their k truly most clickable items,
long-tail coverage, and the cost of suboptimal actions. Offline mode freezes each policy
after the online run (LinUCB/TS rank by their posterior mean) and asks whether its value
could have been estimated from the world's logs: by the replay method (Li et al. 2011) on
the uniformly random log, and by IPS/SNIPS/DR on the non-uniform log, next to the exact
value from the click model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import DataError, InputMissing, UsageError

# --------------------------------------------------------------------------- policies


class ContextualPolicy:
    """Recommends ``k`` items per request from the user's context and learns from clicks.

    ``select(X, k, rng)`` returns a ``(len(X), k)`` array of distinct item indices, best
    first; ``update(X, items, clicks)`` receives one row per impression;
    ``slate_probs(X, k)`` is the frozen policy's per-impression distribution over items
    (the probability that a random slot of its slate shows each item), used offline.
    """

    name: ClassVar[str] = ""
    contextual: ClassVar[bool] = False

    def reset(self, n_items: int, dim: int, rng: np.random.Generator) -> None:
        self.n_items = n_items
        self.dim = dim
        # A fixed random tie-break so equal scores do not always favour low item indices.
        self.tiebreak = rng.random(n_items) * 1e-9

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Exploitation scores (b, n_items): what the frozen policy ranks by."""
        raise NotImplementedError  # pragma: no cover

    def select(self, X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        return top_k(self.scores(X) + self.tiebreak, k)

    def update(self, X: np.ndarray, items: np.ndarray, clicks: np.ndarray) -> None:
        """Learn from impressions (one row of ``X`` per shown item)."""

    def slate_probs(self, X: np.ndarray, k: int) -> np.ndarray:
        slate = top_k(self.scores(X) + self.tiebreak, k)
        out = np.zeros((X.shape[0], self.n_items))
        np.put_along_axis(out, slate, 1.0 / k, axis=1)
        return out


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores per row, best first."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class UniformPolicy(ContextualPolicy):
    """k distinct items uniformly at random: maximal exploration, no exploitation."""

    name = "uniform"

    def scores(self, X):
        return np.zeros((X.shape[0], self.n_items))

    def select(self, X, k, rng):
        return top_k(rng.random((X.shape[0], self.n_items)), k)

    def slate_probs(self, X, k):
        return np.full((X.shape[0], self.n_items), 1.0 / self.n_items)


class GreedyCTR(ContextualPolicy):
    """Greedy on each item's estimated click rate ``(clicks + m) / (impressions + 1)``, ``m``
    the click rate seen so far: the same "most clickable" list for every user."""

    name = "greedy"

    def reset(self, n_items, dim, rng):
        super().reset(n_items, dim, rng)
        self.clicks = np.zeros(n_items)
        self.shown = np.zeros(n_items)

    def estimates(self) -> np.ndarray:
        prior = self.clicks.sum() / self.shown.sum() if self.shown.sum() else 0.0
        return (self.clicks + prior) / (self.shown + 1.0)

    def scores(self, X):
        return np.broadcast_to(self.estimates(), (X.shape[0], self.n_items))

    def update(self, X, items, clicks):
        self.shown += np.bincount(items, minlength=self.n_items)
        self.clicks += np.bincount(items, weights=clicks, minlength=self.n_items)


class EpsilonGreedy(GreedyCTR):
    """Greedy, but each slot shows a uniformly random (not yet shown) item with prob. ε."""

    name = "epsilon-greedy"

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = epsilon

    def select(self, X, k, rng):
        slate = super().select(X, k, rng)
        explore = rng.random(slate.shape) < self.epsilon
        if explore.any():
            # Random items ranked by a fresh random score; take the first not already shown.
            for row, col in zip(*np.nonzero(explore), strict=True):
                candidates = rng.permutation(self.n_items)
                taken = set(slate[row].tolist())
                slate[row, col] = next(c for c in candidates if c not in taken)
        return slate

    def slate_probs(self, X, k):
        return (1 - self.epsilon) * super().slate_probs(X, k) + self.epsilon / self.n_items


class LinUCB(ContextualPolicy):
    """Disjoint LinUCB: per item ridge regression of click on context, optimism ``α``."""

    name = "linucb"
    contextual = True

    def __init__(self, alpha: float = 1.0, l2: float = 1.0) -> None:
        self.alpha = alpha
        self.l2 = l2

    def reset(self, n_items, dim, rng):
        super().reset(n_items, dim, rng)
        self.A = np.tile(self.l2 * np.eye(dim), (n_items, 1, 1))
        self.A_inv = np.tile(np.eye(dim) / self.l2, (n_items, 1, 1))
        self.b = np.zeros((n_items, dim))
        self.theta = np.zeros((n_items, dim))

    def scores(self, X):
        return X @ self.theta.T

    def width(self, X: np.ndarray) -> np.ndarray:
        """``sqrt(x' A_a^-1 x)`` for every request and item (b, n_items)."""
        var = np.einsum("bd,nde,be->bn", X, self.A_inv, X, optimize=True)
        return np.sqrt(np.maximum(var, 0.0))

    def select(self, X, k, rng):
        return top_k(self.scores(X) + self.alpha * self.width(X) + self.tiebreak, k)

    def update(self, X, items, clicks):
        touched = np.unique(items)
        outer = np.einsum("md,me->mde", X, X)
        np.add.at(self.A, items, outer)
        np.add.at(self.b, items, clicks[:, None] * X)
        self.A_inv[touched] = np.linalg.inv(self.A[touched])
        self.theta[touched] = np.einsum("nde,ne->nd", self.A_inv[touched], self.b[touched])


class LinTS(LinUCB):
    """Linear Thompson sampling: rank by a posterior draw with scale ``v``."""

    name = "lints"

    def __init__(self, v: float = 0.25, l2: float = 1.0) -> None:
        super().__init__(alpha=0.0, l2=l2)
        self.v = v

    def select(self, X, k, rng):
        z = rng.standard_normal((X.shape[0], self.n_items))
        return top_k(self.scores(X) + self.v * self.width(X) * z + self.tiebreak, k)


POLICIES: dict[str, Callable[..., ContextualPolicy]] = {
    "greedy": lambda **kw: GreedyCTR(),
    "epsilon-greedy": lambda epsilon=0.1, **kw: EpsilonGreedy(epsilon),
    "linucb": lambda alpha=1.0, **kw: LinUCB(alpha),
    "lints": lambda ts_scale=0.25, **kw: LinTS(ts_scale),
    "uniform": lambda **kw: UniformPolicy(),
}


def make_policies(names: Sequence[str], **params: float) -> list[ContextualPolicy]:
    out = []
    for raw in names:
        name = raw.strip().lower()
        if name not in POLICIES:
            raise UsageError(f"unknown policy {raw!r}; choose from {', '.join(POLICIES)}")
        out.append(POLICIES[name](**params))
    if not out:
        raise UsageError("--policies names no policy")
    return out


# --------------------------------------------------------------------------- online


@dataclass
class OnlineRun:
    policy: str
    requests: int
    impressions: int
    clicks: int
    ctr: float
    expected_ctr: float
    oracle_ctr: float
    cumulative_regret: float
    regret_per_1k_requests: float
    suboptimal_share: float
    tail_impression_share: float
    tail_click_share: float
    catalogue_coverage: float
    regret_curve: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def one_blas_thread():
    """A context in which BLAS uses one thread.

    The per-batch products here are tiny ((32 x d) @ (d x items)); extra BLAS threads only
    spin-wait on them, which on a busy 2-core machine made LinUCB ~20x slower.
    """
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def popular_items(model: ClickModel, top_n: int) -> np.ndarray:
    """The ``top_n`` most popular items of the world (by its popularity term)."""
    return np.argsort(-model.popularity_logit, kind="stable")[:top_n]


def run_online(
    model: ClickModel,
    policies: Sequence[ContextualPolicy],
    *,
    requests: int,
    k: int,
    batch_size: int = 32,
    top_n: int,
    seed: int = 0,
    user_weights: np.ndarray | None = None,
    curve_points: int = 50,
) -> list[OnlineRun]:
    """Let each policy serve the same request stream; measure what its exploration buys."""
    if not 1 <= k <= model.n_items:
        raise UsageError(f"--k must be between 1 and the {model.n_items} items of the world")
    if k > model.n_positions:
        raise UsageError(f"--k {k} exceeds the click model's {model.n_positions} positions")
    if requests < 1 or batch_size < 1:
        raise UsageError("--requests and --batch-size must be positive")
    rng = np.random.default_rng(seed)
    p = None if user_weights is None else user_weights / user_weights.sum()
    users = rng.choice(model.n_users, size=requests, p=p)
    X_all = model.user_context
    positions = np.arange(1, k + 1)
    tail = np.ones(model.n_items, dtype=bool)
    tail[popular_items(model, top_n)] = False
    # The oracle: each user's k truly most clickable items, best first.
    oracle_value = np.zeros(requests)
    oracle_sets = np.zeros((requests, k), dtype=np.int64)
    for start in range(0, requests, 4096):
        u = users[start : start + 4096]
        probs = model.all_probs(u, 1)
        best = top_k(probs, k)
        oracle_sets[start : start + 4096] = best
        oracle_value[start : start + 4096] = model.prob(u[:, None], best, positions[None, :]).sum(1)
    marks = np.unique(np.linspace(0, requests, curve_points + 1).astype(int)[1:])
    runs = []
    for j, policy in enumerate(policies):
        prng = np.random.default_rng([seed, j + 1])
        policy.reset(model.n_items, X_all.shape[1], prng)
        shown = np.zeros(model.n_items)
        clicked = np.zeros(model.n_items)
        expected = np.zeros(requests)
        suboptimal = 0
        total_clicks = 0
        for start in range(0, requests, batch_size):
            u = users[start : start + batch_size]
            X = X_all[u]
            slate = policy.select(X, k, prng)
            prob = model.prob(u[:, None], slate, positions[None, :])
            clicks = (prng.random(prob.shape) < prob).astype(float)
            expected[start : start + len(u)] = prob.sum(axis=1)
            best = oracle_sets[start : start + len(u)]
            suboptimal += int((~(slate[:, :, None] == best[:, None, :]).any(axis=2)).sum())
            items = slate.ravel()
            shown += np.bincount(items, minlength=model.n_items)
            clicked += np.bincount(items, weights=clicks.ravel(), minlength=model.n_items)
            total_clicks += int(clicks.sum())
            policy.update(np.repeat(X, k, axis=0), items, clicks.ravel())
        regret = np.cumsum(oracle_value - expected)
        impressions = requests * k
        runs.append(
            OnlineRun(
                policy=policy.name,
                requests=requests,
                impressions=impressions,
                clicks=total_clicks,
                ctr=total_clicks / impressions,
                expected_ctr=float(expected.sum() / impressions),
                oracle_ctr=float(oracle_value.sum() / impressions),
                cumulative_regret=float(regret[-1]),
                regret_per_1k_requests=float(1000 * regret[-1] / requests),
                suboptimal_share=suboptimal / impressions,
                tail_impression_share=float(shown[tail].sum() / impressions),
                tail_click_share=float(clicked[tail].sum() / max(clicked.sum(), 1)),
                catalogue_coverage=float(np.mean(shown > 0)),
                regret_curve=[float(regret[m - 1]) for m in marks],
            )
        )
    return runs


# --------------------------------------------------------------------------- offline


def simulate_log(
    model: ClickModel,
    n: int,
    *,
    k: int,
    rng: np.random.Generator,
    behaviour: str = "uniform",
    temperature: float = 1.0,
) -> dict[str, np.ndarray]:
    """A logged-feedback table from the click model: one row per impression.

    Position is uniform in 1..k; ``behaviour`` ``uniform`` picks the item uniformly,
    ``popularity`` by softmax(popularity_logit / temperature) — a non-uniform logging
    policy whose propensities are exact.
    """
    users = rng.integers(0, model.n_users, n)
    pos = rng.integers(1, k + 1, n)
    if behaviour == "uniform":
        probs = np.full(model.n_items, 1.0 / model.n_items)
    elif behaviour == "popularity":
        z = model.popularity_logit / temperature
        probs = np.exp(z - z.max())
        probs /= probs.sum()
    else:
        raise UsageError(f"unknown behaviour {behaviour!r}")
    items = rng.choice(model.n_items, size=n, p=probs)
    reward = model.sample_clicks(rng, users, items, pos).astype(float)
    out = {
        "ts": np.datetime64("2024-01-01T00:00:00", "us") + np.arange(n) * 1_000_000,
        "user_idx": users,
        "action": items,
        "position": pos,
        "reward": reward,
        "propensity": probs[items],
    }
    for c in range(model.user_context.shape[1]):
        out[f"ctx_{c}"] = model.user_context[users, c]
    return out


def world_log(frame, model: ClickModel, *, what: str):
    """A ``BanditLog`` over *all* items of the world (action = item index), with user_idx."""
    from rtml_cli.evaluation.ope import bandit_log_from_frame

    log = bandit_log_from_frame(frame, source=what, context_cols="", what="bandit log")
    if "user_idx" not in frame.columns:
        raise DataError(f"{what} has no user_idx column: offline mode needs the world's users")
    actions = log.actions.astype(np.int64)
    if actions.min() < 0 or actions.max() >= model.n_items:
        raise DataError(f"{what}: actions must be item indices 0..{model.n_items - 1}")
    users = log.extra["user_idx"].astype(np.int64)
    if users.min() < 0 or users.max() >= model.n_users:
        raise DataError(f"{what}: user_idx must be in 0..{model.n_users - 1}")
    if log.positions.max() > model.n_positions:
        raise DataError(f"{what}: positions beyond the click model's {model.n_positions}")
    log.action_idx = actions[log.action_idx]
    log.actions = np.arange(model.n_items)
    return log


class FrozenTarget:
    """A frozen contextual policy as an OPE ``TargetPolicy`` over a world log."""

    def __init__(self, policy: ContextualPolicy, model: ClickModel, k: int) -> None:
        self.policy, self.model, self.k = policy, model, k
        self.name = policy.name
        self.description = f"frozen {policy.name}"

    def probs(self, log, rows):
        users = log.extra["user_idx"][rows].astype(np.int64)
        return self.policy.slate_probs(self.model.user_context[users], self.k)


def true_value(model: ClickModel, target: FrozenTarget, log) -> float:
    """Exact per-impression click rate of ``target`` on the log's users and positions."""
    from rtml_cli.evaluation.ope import iter_chunks

    total = 0.0
    users = log.extra["user_idx"].astype(np.int64)
    pos = log.positions[log.position_idx]
    for rows in iter_chunks(log.n, model.n_items):
        pi = target.probs(log, rows)
        for p in np.unique(pos[rows]):
            m = pos[rows] == p
            total += float(np.sum(pi[m] * model.all_probs(users[rows][m], int(p))))
    return total / log.n


def replay(target: FrozenTarget, log, rng: np.random.Generator, n_boot: int) -> dict[str, float]:
    """Replay (Li et al. 2011) on a uniformly random log, for slates: an event counts when
    the logged item is in the slate the frozen policy would show — for a policy whose slot
    shows item ``a`` with probability ``pi(a|x)``, that is probability ``k pi(a|x)`` — and the
    estimate is the mean reward of the counted events."""
    users = log.extra["user_idx"].astype(np.int64)
    accepted = np.zeros(log.n, dtype=bool)
    for rows in np.array_split(np.arange(log.n), max(1, log.n // 2048)):
        pi = target.policy.slate_probs(target.model.user_context[users[rows]], target.k)
        in_slate = np.minimum(1.0, target.k * pi[np.arange(len(rows)), log.action_idx[rows]])
        accepted[rows] = rng.random(len(rows)) < in_slate
    r = log.reward
    n_acc = int(accepted.sum())
    value = float(r[accepted].mean()) if n_acc else math.nan
    lo = hi = math.nan
    if n_boot > 0 and n_acc:
        idx = rng.integers(0, log.n, size=(n_boot, log.n))
        acc = accepted[idx]
        with np.errstate(invalid="ignore"):
            boots = (r[idx] * acc).sum(axis=1) / acc.sum(axis=1)
        from rtml_cli.evaluation.ope import percentile_ci

        lo, hi = percentile_ci(boots)
    return {"value": value, "ci_low": lo, "ci_high": hi, "accepted_events": n_acc}


def run_offline(
    model: ClickModel,
    policies: Sequence[ContextualPolicy],
    *,
    k: int,
    logged=None,
    random_log=None,
    n_boot: int = 200,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Offline estimates of each frozen policy next to its exact value (see module doc)."""
    from rtml_cli.evaluation.ope import estimate, make_estimators

    rows = []
    for j, policy in enumerate(policies):
        target = FrozenTarget(policy, model, k)
        row: dict[str, Any] = {"policy": policy.name}
        if random_log is not None:
            row["true_value_random_log"] = true_value(model, target, random_log)
            row["replay"] = replay(
                target, random_log, np.random.default_rng([seed, 100 + j]), n_boot
            )
        if logged is not None:
            row["true_value_logged"] = true_value(model, target, logged)
            est, diag, warns = estimate(
                logged,
                target,
                estimators=make_estimators(["ips", "snips", "dr"]),
                n_boot=n_boot,
                seed=seed + j,
            )
            for e in est:
                row[e["estimator"]] = {kk: e[kk] for kk in ("value", "ci_low", "ci_high")}
            row["max_weight"] = diag["max_weight"]
            row["effective_sample_size"] = diag["effective_sample_size"]
            row["target_share_never_logged"] = diag["target_share_never_logged"]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- the job


@dataclass
class ContextualResult:
    world: str
    n_users: int
    n_items: int
    k: int
    top_n: int
    batch_size: int
    seed: int
    online: list[OnlineRun]
    offline: list[dict[str, Any]] | None
    params: dict[str, float]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "world": self.world,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "k": self.k,
            "top_n": self.top_n,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "params": self.params,
            "online": [r.to_dict() for r in self.online],
            "offline": self.offline,
            "notes": self.notes,
        }


def load_world(world: str | Path) -> tuple[ClickModel, Path]:
    root = Path(world)
    path = root / "click_model.npz" if root.is_dir() else root
    if not path.exists():
        raise InputMissing(
            f"{path} does not exist: give the sample world's directory (rtml data sample --out "
            "DIR) or its click_model.npz"
        )
    try:
        model = ClickModel.load(path)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"{path} is not a click model (.npz from rtml data sample): {exc}") from exc
    return model, path.parent


def request_weights(root: Path, model: ClickModel) -> np.ndarray | None:
    """Who sends the requests: ``click_users.parquet``'s ``weight`` (the world's traffic, the
    distribution its bandit logs were drawn from) when present, else uniform (``None``)."""
    path = root / "click_users.parquet"
    if not path.exists():
        return None
    from rtml_cli.evaluation.ope import read_table

    frame = read_table(path, what="click users")
    if not {"user_idx", "weight"} <= set(frame.columns):
        raise DataError(f"{path} needs columns user_idx and weight")
    idx = frame.get_column("user_idx").to_numpy()
    w = frame.get_column("weight").cast(float).to_numpy()
    if idx.min() < 0 or idx.max() >= model.n_users or (w < 0).any() or not w.sum() > 0:
        raise DataError(f"{path}: user_idx must index the click model's users, weights >= 0")
    out = np.zeros(model.n_users)
    np.add.at(out, idx, w)
    return out


def evaluate_contextual(
    world: str | Path,
    *,
    policies: Sequence[str] = tuple(POLICIES),
    requests: int = 20_000,
    k: int = 3,
    batch_size: int = 32,
    top_n: int | None = None,
    epsilon: float = 0.1,
    alpha: float = 1.0,
    ts_scale: float = 0.25,
    mode: str = "both",
    logged: str | Path | None = None,
    random_log: str | Path | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> ContextualResult:
    """The job behind ``rtml evaluate contextual`` (module docstring)."""
    from rtml_cli.evaluation.ope import read_table

    if mode not in ("online", "offline", "both"):
        raise UsageError("--mode must be online, offline or both")
    if not 0 <= epsilon <= 1:
        raise UsageError("--epsilon must be in [0, 1]")
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if alpha < 0 or ts_scale < 0:
        raise UsageError("--alpha and --ts-scale must be >= 0")
    model, root = load_world(world)
    top_n = top_n if top_n is not None else max(k, math.ceil(0.2 * model.n_items))
    if not 1 <= top_n < model.n_items:
        raise UsageError(f"--top-n must be between 1 and {model.n_items - 1}")
    notes: list[str] = []
    logs = {}
    if mode != "online":
        for key, given, default in (
            ("logged", logged, root / "bandit.parquet"),
            ("random", random_log, root / "bandit_random.parquet"),
        ):
            path = Path(given) if given is not None else default
            if path.exists():
                logs[key] = world_log(read_table(path, what="bandit log"), model, what=str(path))
                notes.extend(logs[key].warnings)
            elif given is not None:
                raise InputMissing(f"bandit log {path} does not exist")
            else:
                notes.append(
                    f"no {path.name} next to the click model: its offline column is skipped"
                )
        if not logs and mode == "offline":
            raise InputMissing(
                f"offline mode needs bandit.parquet and/or bandit_random.parquet in {root}"
            )
    user_weights = request_weights(root, model)
    pols = make_policies(policies, epsilon=epsilon, alpha=alpha, ts_scale=ts_scale)
    with one_blas_thread():
        online = run_online(
            model,
            pols,
            requests=requests,
            k=k,
            batch_size=batch_size,
            top_n=top_n,
            seed=seed,
            user_weights=user_weights,
        )
        offline = None
        if mode != "online" and logs:
            offline = run_offline(
                model,
                pols,
                k=k,
                logged=logs.get("logged"),
                random_log=logs.get("random"),
                n_boot=n_boot,
                seed=seed,
            )
    if mode == "offline":
        notes.append("offline policies were first trained online for --requests requests")
    return ContextualResult(
        world=str(world),
        n_users=model.n_users,
        n_items=model.n_items,
        k=k,
        top_n=top_n,
        batch_size=batch_size,
        seed=seed,
        online=online,
        offline=offline,
        params={"epsilon": epsilon, "alpha": alpha, "ts_scale": ts_scale, "requests": requests},
        notes=notes,
    )


def plot_contextual(result: ContextualResult, path: str | Path) -> None:
    """A PNG of each policy's cumulative regret over requests."""
    from rtml_cli.evaluation.ope import _pyplot
    from rtml_cli.fsutil import PNG_OUTPUT, atomic_path

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    for run in result.online:
        xs = np.linspace(0, run.requests, len(run.regret_curve) + 1)[1:]
        ax.plot(xs, run.regret_curve, label=run.policy)
    ax.set_xlabel("requests")
    ax.set_ylabel("cumulative regret (expected clicks lost)")
    ax.set_title(f"{result.n_items} items, k={result.k}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    with atomic_path(path, PNG_OUTPUT, option="--plot") as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
