"""Routing between models: A/B tests versus bandits (``rtml evaluate [bandits]``).

- ``policies``: the ``RoutingPolicy`` interface (allocation + decision, vectorised over
  seeds), the A/B tests and the bandits, registered in ``ROUTING_POLICIES``;
- ``arms``: where rewards come from (Bernoulli planning arms or a replay reward matrix);
  ``results``: a replay RESULTS file as that matrix;
- ``runner``: one policy over many seeded request streams; ``report``: every policy's
  summary and the verdict; ``abtest`` and ``posterior``: the statistics;
- ``job``: ``evaluate_routing``, the command's job; ``plot``: ``--plot``.

Modules import each other, never this package; the names below are re-exported for callers.
"""

from rtml_cli.evaluation.routing.job import evaluate_routing
from rtml_cli.evaluation.routing.plot import plot_report, plot_runs
from rtml_cli.evaluation.routing.policies import (
    DEFAULT_POLICIES,
    ROUTING_POLICIES,
    RoutingPolicy,
    Settings,
    Step,
    make_policy,
)
from rtml_cli.evaluation.routing.runner import PolicyRun, run_policy

__all__ = [
    "DEFAULT_POLICIES",
    "ROUTING_POLICIES",
    "PolicyRun",
    "RoutingPolicy",
    "Settings",
    "Step",
    "evaluate_routing",
    "make_policy",
    "plot_report",
    "plot_runs",
    "run_policy",
]
