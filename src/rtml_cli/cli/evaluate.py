"""`rtml evaluate …`: choosing between models — bandits vs A/B, off-policy evaluation.

``rtml evaluate RESULTS …`` (no subcommand) runs the default ``bandits`` subcommand.
Each evaluation family lives in its own module and adds its commands to ``evaluate_app``.
"""

from __future__ import annotations

import typer

from rtml_cli.cli import default_command_group

evaluate_app = typer.Typer(
    cls=default_command_group("bandits"),
    help=(
        "Compare routing policies (A/B test vs bandits) on replay results or planned arms; "
        "`ope` and `contextual` evaluate logged bandit feedback."
    ),
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    # Submodules add their commands to evaluate_app here (one import each).
    from rtml_cli.cli import evaluate_bandits, evaluate_ope

    evaluate_bandits.register(evaluate_app)
    evaluate_ope.register(evaluate_app)
    app.add_typer(evaluate_app, name="evaluate", rich_help_panel="Model evaluation")
