"""Reference values for `rtml evaluate contextual --log`: Open Bandit Pipeline's replay on OBD.

Replays two kinds of policy with Open Bandit Pipeline (obp 0.5.7: ``obp.simulator.replay.
run_bandit_replay`` + ``obp.ope.ReplayMethod``) on the OBD "men" random log shipped in
``sample_data/obd/random/men`` and prints the figures that ``tests/test_evaluation_
contextual_log.py`` freezes (``OBP_REFERENCE``):

- a *fixed* policy, "always show item a", for every item a: the matched-event count and the
  replay estimate (deterministic, so rtml must match it exactly);
- the *uniform* policy (``obp.policy.Random``) over ``SEEDS`` seeds: the mean and standard
  deviation of the estimate and of the matched count (random, so rtml's seeds must agree
  in distribution, not draw for draw).

obp is not a dependency of rtml (it pins old torch/seaborn and needs Python < 3.11), so run
this in a throwaway virtual environment, never in rtml's ``.venv``::

    python3.11 -m venv /tmp/obp-venv
    /tmp/obp-venv/bin/pip install torch==2.13.0        # the CPU build (any torch works)
    /tmp/obp-venv/bin/pip download --no-deps --ignore-requires-python -d /tmp/obp-dl obp==0.5.7
    /tmp/obp-venv/bin/pip install --no-deps --ignore-requires-python /tmp/obp-dl/obp-0.5.7.tar.gz
    /tmp/obp-venv/bin/pip install matplotlib mypy-extensions "numpy<2" "pandas<2" pyyaml \\
        seaborn scikit-learn scipy tqdm
    /tmp/obp-venv/bin/python bench/obd_replay_reference.py > /tmp/obp_reference.json

(``--ignore-requires-python``: obp 0.5.7 declares Python < 3.11 but its replay and
estimators run on 3.11; its loader needs ``pip install "pandas<2" "numpy<2"``; and its
``run_bandit_replay`` calls the ``tqdm`` module instead of the function, so this script
replaces that progress bar with a plain loop before calling it.) Paste the printed JSON
into ``OBP_REFERENCE`` in the test.
"""

from __future__ import annotations

import gzip
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OBD = ROOT / "sample_data" / "obd"
SEEDS = 100


def load_random_log(workdir: Path):
    """OBD's "men" random log through obp's own loader (it reads an uncompressed CSV)."""
    from obp.dataset import OpenBanditDataset

    target = workdir / "random" / "men"
    target.mkdir(parents=True)
    with (
        gzip.open(OBD / "random" / "men" / "men.csv.gz") as src,
        open(target / "men.csv", "wb") as dst,
    ):
        shutil.copyfileobj(src, dst)
    shutil.copy(OBD / "random" / "men" / "item_context.csv", target / "item_context.csv")
    dataset = OpenBanditDataset(behavior_policy="random", campaign="men", data_path=workdir)
    return dataset.obtain_batch_bandit_feedback()


def replay_value(feedback: dict, policy) -> tuple[float, int]:
    """obp's replay of ``policy`` (one slot: positions ignored) and its ReplayMethod value."""
    import obp.simulator.replay as obp_replay
    from obp.ope import ReplayMethod

    # obp 0.5.7's replay.py does `import tqdm as tqdm` and then calls the module
    # (TypeError: 'module' object is not callable); give it the function it meant.
    obp_replay.tqdm = lambda iterable, total=None: iterable  # type: ignore[assignment]
    run_bandit_replay = obp_replay.run_bandit_replay
    one_slot = {**feedback, "position": None}
    action_dist = run_bandit_replay(bandit_feedback=one_slot, policy=policy)
    matched = int(action_dist[np.arange(feedback["n_rounds"]), feedback["action"], 0].sum())
    value = ReplayMethod().estimate_policy_value(
        reward=feedback["reward"], action=feedback["action"], action_dist=action_dist
    )
    return float(value), matched


def fixed_policy(action: int, n_actions: int):
    """A context-free obp policy that always shows ``action``."""
    from dataclasses import dataclass

    from obp.policy.base import BaseContextFreePolicy

    @dataclass
    class Fixed(BaseContextFreePolicy):
        def select_action(self) -> np.ndarray:
            return np.array([action])

        def update_params(self, action: int, reward: float) -> None:
            self.n_trial += 1

    return Fixed(n_actions=n_actions)


def main() -> None:
    import obp
    from obp.policy import Random

    with tempfile.TemporaryDirectory() as tmp:
        feedback = load_random_log(Path(tmp))
    n_actions = int(feedback["n_actions"])
    fixed = {}
    for a in range(n_actions):
        value, matched = replay_value(feedback, fixed_policy(a, n_actions))
        fixed[str(a)] = {"matched_events": matched, "ctr": value}
    values, matches = [], []
    for seed in range(SEEDS):
        value, matched = replay_value(feedback, Random(n_actions=n_actions, random_state=seed))
        values.append(value)
        matches.append(matched)
    out = {
        "obp_version": obp.__version__,
        "n_rounds": int(feedback["n_rounds"]),
        "n_actions": n_actions,
        "log_ctr": float(np.mean(feedback["reward"])),
        "fixed": fixed,
        "uniform": {
            "seeds": SEEDS,
            "ctr_mean": float(np.mean(values)),
            "ctr_sd": float(np.std(values, ddof=1)),
            "matched_mean": float(np.mean(matches)),
            "matched_sd": float(np.std(matches, ddof=1)),
        },
    }
    json.dump(out, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
