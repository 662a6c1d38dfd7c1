"""Contextual bandits as an exploration strategy, in a world whose click model is known.

- ``policies``: the ``ContextualPolicy`` interface, ``greedy`` (the "most clickable" trap:
  per item click rate, top-k for everyone), ``epsilon-greedy``, ``linucb`` (disjoint LinUCB,
  Li et al. 2010), ``lints`` (linear Thompson sampling, Agrawal & Goyal 2013: a posterior
  draw ``x·θ_a + v sqrt(x' A_a^-1 x) z`` per item, the exact marginal of ``x·θ~`` for
  ``θ~ ~ N(θ_a, v² A_a^-1)``) and ``uniform``, registered in ``CONTEXTUAL_POLICIES``;
- ``online``: every policy serves the same request stream (CTR, regret against the oracle,
  long-tail coverage, cost of suboptimal actions);
- ``offline``: each frozen policy estimated from the world's logs (replay on the uniform
  log, IPS/SNIPS/DR on the skewed one) next to its exact value;
- ``world``: the click model, traffic and logs of a sample world;
- ``logged``: ``evaluate_contextual_log``, the same policies replayed on a team's own
  bandit log (no world: replay on a uniform log, IPS-weighted replay otherwise, a verdict);
- ``job``: ``evaluate_contextual``, the ``rtml evaluate contextual`` job; ``plot``: ``--plot``.

Modules import each other, never this package; the names below are re-exported for callers.
"""

from rtml_cli.evaluation.contextual.job import MODES, ContextualResult, evaluate_contextual
from rtml_cli.evaluation.contextual.logged import (
    LogReplayResult,
    PolicyReplay,
    ReplayLog,
    evaluate_contextual_log,
    load_logged,
    replay_policy,
    verdict,
)
from rtml_cli.evaluation.contextual.offline import (
    FrozenTarget,
    replay,
    run_offline,
    simulate_log,
    true_value,
    world_log,
)
from rtml_cli.evaluation.contextual.online import OnlineRun, popular_items, run_online
from rtml_cli.evaluation.contextual.plot import plot_contextual, plot_contextual_log
from rtml_cli.evaluation.contextual.policies import (
    CONTEXTUAL_POLICIES,
    ContextualPolicy,
    EpsilonGreedyCTR,
    GreedyCTR,
    LinTS,
    LinUCB,
    UniformPolicy,
    make_policies,
    top_k,
)
from rtml_cli.evaluation.contextual.world import load_click_model, offline_logs, request_weights

__all__ = [
    "CONTEXTUAL_POLICIES",
    "MODES",
    "ContextualPolicy",
    "ContextualResult",
    "EpsilonGreedyCTR",
    "FrozenTarget",
    "GreedyCTR",
    "LinTS",
    "LinUCB",
    "LogReplayResult",
    "OnlineRun",
    "PolicyReplay",
    "ReplayLog",
    "UniformPolicy",
    "evaluate_contextual",
    "evaluate_contextual_log",
    "load_logged",
    "load_click_model",
    "make_policies",
    "offline_logs",
    "plot_contextual",
    "plot_contextual_log",
    "popular_items",
    "replay",
    "replay_policy",
    "request_weights",
    "run_offline",
    "run_online",
    "simulate_log",
    "top_k",
    "true_value",
    "verdict",
    "world_log",
]
