"""The known world contextual bandits are evaluated in: its click model, traffic and logs.

A sample world directory (``rtml data sample --out DIR``) holds ``click_model.npz`` (the
truth: every user's click probability for every item and position), ``click_users.parquet``
(who sends requests) and two bandit logs drawn from the click model. This reads only those;
a world's ``world.json`` (``rtml_cli.data.world.read_world``) is not needed here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rtml_cli.data.clickmodel import ClickModel
from rtml_cli.errors import DataError, InputMissing
from rtml_cli.evaluation.contextual.offline import world_log
from rtml_cli.evaluation.ope.log import BanditLog, read_table

# The world's logs: a popularity-skewed one for IPS/SNIPS/DR, a uniformly random one for replay.
LOGGED = "bandit.parquet"
RANDOM_LOG = "bandit_random.parquet"


def load_click_model(world: str | Path) -> tuple[ClickModel, Path]:
    """The click model of a sample world (its directory or its ``click_model.npz``) and the
    directory its logs sit in."""
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


def offline_logs(
    root: Path,
    model: ClickModel,
    *,
    logged: str | Path | None,
    random_log: str | Path | None,
    required: bool,
) -> tuple[dict[str, BanditLog], list[str]]:
    """The world's logs as ``{"logged": …, "random": …}`` (each when present) and notes.

    A log given explicitly must exist; a default one that is missing is noted and skipped;
    with ``required`` (offline mode) at least one must be there.
    """
    notes: list[str] = []
    logs: dict[str, BanditLog] = {}
    for key, given, default in (
        ("logged", logged, root / LOGGED),
        ("random", random_log, root / RANDOM_LOG),
    ):
        path = Path(given) if given is not None else default
        if path.exists():
            logs[key] = world_log(read_table(path, what="bandit log"), model, what=str(path))
            notes.extend(logs[key].warnings)
        elif given is not None:
            raise InputMissing(f"bandit log {path} does not exist")
        else:
            notes.append(f"no {path.name} next to the click model: its offline column is skipped")
    if not logs and required:
        raise InputMissing(f"offline mode needs {LOGGED} and/or {RANDOM_LOG} in {root}")
    return logs, notes
