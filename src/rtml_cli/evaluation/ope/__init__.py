"""Off-policy evaluation (OPE) of logged bandit feedback: ``rtml evaluate ope``.

One module per seam (as obp's ``ope/estimators.py`` beside ``regression_model.py``):

- ``log``: read and validate a bandit log into a ``BanditLog`` (``load_bandit_log``,
  ``read_table``);
- ``targets``: the ``TargetPolicy`` interface and its implementations; ``specs``: the
  ``--policy SPEC`` grammar (``build_policy``; one ``SpecKind`` per form in
  ``TARGET_POLICIES``);
- ``reward_models``: ``RewardModel`` for DM/DR (``REWARD_MODELS``);
- ``estimators``: IPS, SNIPS, DM, DR, SNDR, Switch-DR (``ESTIMATORS``);
- ``diagnostics``: per-event terms, the bootstrap, weight and overlap diagnostics;
- ``job``: ``estimate`` (one policy on one log) and ``evaluate_ope`` (the command's job);
  ``plot``: ``--plot``.

Modules import each other, never this package; the names below are re-exported for callers.
"""

from rtml_cli.evaluation.ope.diagnostics import (
    bootstrap_values,
    diagnostic_warnings,
    event_terms,
    percentile_ci,
    weight_diagnostics,
)
from rtml_cli.evaluation.ope.estimators import (
    DEFAULT_ESTIMATORS,
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    Estimator,
    EventTerms,
    SwitchDR,
    make_estimators,
)
from rtml_cli.evaluation.ope.job import OpeResult, estimate, evaluate_ope
from rtml_cli.evaluation.ope.log import (
    BanditLog,
    bandit_log_from_frame,
    load_bandit_log,
    read_table,
    resolve_context_columns,
)
from rtml_cli.evaluation.ope.plot import plot_ope
from rtml_cli.evaluation.ope.reward_models import (
    REWARD_MODELS,
    LogisticRewardModel,
    MeanRewardModel,
    RewardModel,
    fit_reward_model,
)
from rtml_cli.evaluation.ope.specs import TARGET_POLICIES, BuiltPolicy, build_policy
from rtml_cli.evaluation.ope.targets import (
    PROB_TOLERANCE,
    EventTablePolicy,
    PositionTablePolicy,
    ScorePolicy,
    TargetPolicy,
    iter_chunks,
)

__all__ = [
    "DEFAULT_ESTIMATORS",
    "DM",
    "DR",
    "ESTIMATORS",
    "IPS",
    "PROB_TOLERANCE",
    "REWARD_MODELS",
    "SNDR",
    "SNIPS",
    "TARGET_POLICIES",
    "BanditLog",
    "BuiltPolicy",
    "Estimator",
    "EventTablePolicy",
    "EventTerms",
    "LogisticRewardModel",
    "MeanRewardModel",
    "OpeResult",
    "PositionTablePolicy",
    "RewardModel",
    "ScorePolicy",
    "SwitchDR",
    "TargetPolicy",
    "bandit_log_from_frame",
    "bootstrap_values",
    "build_policy",
    "diagnostic_warnings",
    "estimate",
    "evaluate_ope",
    "event_terms",
    "fit_reward_model",
    "iter_chunks",
    "load_bandit_log",
    "make_estimators",
    "percentile_ci",
    "plot_ope",
    "read_table",
    "resolve_context_columns",
    "weight_diagnostics",
]
