"""The ``rtml evaluate contextual`` job: contextual bandits vs "most clickable" greedy.

Every request comes from a user of a world whose click model is known; a policy sees the
user's observable context (``ClickModel.user_context``) and recommends ``k`` distinct
items, best first. Online mode (``online``) measures what each policy's exploration buys;
offline mode (``offline``) asks whether its value could have been estimated from the
world's logs. Policies: ``policies.CONTEXTUAL_POLICIES``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtml_cli.errors import UsageError
from rtml_cli.evaluation.contextual.offline import run_offline
from rtml_cli.evaluation.contextual.online import OnlineRun, one_blas_thread, run_online
from rtml_cli.evaluation.contextual.policies import CONTEXTUAL_POLICIES, make_policies
from rtml_cli.evaluation.contextual.world import load_click_model, offline_logs, request_weights
from rtml_cli.evaluation.ope.log import BanditLog

MODES = ("online", "offline", "both")


@dataclass
class ContextualResult:
    """Everything ``rtml evaluate contextual`` reports (``to_dict`` is the JSON document)."""

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


def evaluate_contextual(
    world: str | Path,
    *,
    policies: Sequence[str] = tuple(CONTEXTUAL_POLICIES),
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
    _check_options(mode, epsilon, n_boot, alpha, ts_scale)
    model, root = load_click_model(world)
    top_n = top_n if top_n is not None else max(k, math.ceil(0.2 * model.n_items))
    if not 1 <= top_n < model.n_items:
        raise UsageError(f"--top-n must be between 1 and {model.n_items - 1}")
    logs: dict[str, BanditLog] = {}
    notes: list[str] = []
    if mode != "online":
        logs, notes = offline_logs(
            root, model, logged=logged, random_log=random_log, required=mode == "offline"
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


def _check_options(mode: str, epsilon: float, n_boot: int, alpha: float, ts_scale: float) -> None:
    if mode not in MODES:
        raise UsageError("--mode must be online, offline or both")
    if not 0 <= epsilon <= 1:
        raise UsageError("--epsilon must be in [0, 1]")
    if n_boot < 0:
        raise UsageError("--bootstrap must be 0 or more")
    if alpha < 0 or ts_scale < 0:
        raise UsageError("--alpha and --ts-scale must be >= 0")
