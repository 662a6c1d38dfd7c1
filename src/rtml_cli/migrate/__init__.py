"""``rtml migrate``: from a team's own log to the migration report, in one resumable run.

``run_migrate(MigrateOptions(...))`` imports (a CSV export, or a log whose columns or event
values need mapping), validates, splits the log into history and a holdout, precomputes as of
the holdout's start, replays the holdout with every stage's strategies and the team's own
lists (``--baseline-recs``), checks popularity drift, evaluates bandits vs an A/B test on the
replay, and writes the report (``DIR/report.html``, ``DIR/report.md``) with every
intermediate output under DIR. See :mod:`rtml_cli.migrate.pipeline` for resuming.
"""

from rtml_cli.migrate.pipeline import LAYOUT, MigrateResult, StepRecord, run_migrate
from rtml_cli.migrate.plan import DEFAULT_HOLDOUT, STEPS, MigrateOptions, Split, plan_split

__all__ = [
    "DEFAULT_HOLDOUT",
    "LAYOUT",
    "STEPS",
    "MigrateOptions",
    "MigrateResult",
    "Split",
    "StepRecord",
    "plan_split",
    "run_migrate",
]
