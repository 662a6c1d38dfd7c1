"""`rtml evaluate ope` and `rtml evaluate contextual`: logged bandit feedback.

``ope`` estimates a new policy's value from a log collected by another policy;
``contextual`` shows what contextual exploration buys over "most clickable" greedy in the
sample world, online and from its logs. The work is in ``rtml_cli.evaluation``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.output import FormatOption, OutputFormat, QuietOption

SeedOption = Annotated[int, typer.Option("--seed", help="Seed for bootstrap and simulation.")]
PlotOption = Annotated[
    Path | None,
    typer.Option("--plot", help="Also write a PNG chart to this path (needs matplotlib)."),
]


def ope_cmd(
    log: Annotated[str, typer.Argument(help="Bandit log (Parquet file, directory or glob).")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            "-p",
            help=(
                "Policy to evaluate: uniform | log:OTHER.parquet (another log's behaviour) | "
                "greedy[:EPS] | linear[:EPS] (learned from the log) | TABLE.parquet/.csv "
                "(action,prob[,position] or prob_<action> per event). See README."
            ),
        ),
    ],
    estimators: Annotated[
        str,
        typer.Option("--estimators", "-e", help="Comma-separated: ips,snips,dm,dr,sndr,switch-dr."),
    ] = "ips,snips,dm,dr,sndr,switch-dr",
    bootstrap: Annotated[
        int,
        typer.Option("--bootstrap", "-b", help="Bootstrap resamples for the 95% CIs (0: none)."),
    ] = 1000,
    ground_truth: Annotated[
        str | None,
        typer.Option(
            "--ground-truth",
            help="A log collected by the evaluated policy itself: its mean reward is the truth.",
        ),
    ] = None,
    reward_model: Annotated[
        str,
        typer.Option(
            "--reward-model",
            help="DM/DR reward model: mean (per action x position) or logistic (on context).",
        ),
    ] = "mean",
    context_cols: Annotated[
        str | None,
        typer.Option(
            "--context-cols",
            help="Context columns: names or prefixes ending in * (default: ctx_*).",
        ),
    ] = None,
    switch_tau: Annotated[
        float,
        typer.Option("--switch-tau", help="Switch-DR: use the model alone above this weight."),
    ] = 100.0,
    min_support: Annotated[
        int,
        typer.Option(
            "--min-support",
            help="Overlap: an action at a position is 'rare' below this many events.",
        ),
    ] = 10,
    fit_fraction: Annotated[
        float,
        typer.Option(
            "--fit-fraction",
            help="greedy/linear: fit on this earliest share of the log, evaluate on the rest.",
        ),
    ] = 0.5,
    seed: SeedOption = 0,
    plot: PlotOption = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Off-policy evaluation: estimate a policy's value from a log collected by another.

    Prints each estimator's value with a bootstrap 95% CI, the weight diagnostics (effective
    sample size, largest weight, overlap) and, with --ground-truth, each relative error.
    """
    from rtml_cli.evaluation.ope import evaluate_ope, plot_ope
    from rtml_cli.output import emit_json, info, warn

    names = [s for s in estimators.split(",") if s.strip()]
    info(f"evaluating policy {policy} on {log} …", quiet=quiet or fmt is OutputFormat.json)
    result = evaluate_ope(
        log,
        policy,
        estimators=names,
        n_boot=bootstrap,
        ground_truth=ground_truth,
        reward_model=reward_model,
        context_cols=context_cols,
        switch_tau=switch_tau,
        min_support=min_support,
        fit_fraction=fit_fraction,
        seed=seed,
    )
    for message in result.warnings:
        warn(message)
    if plot is not None:
        plot_ope(result, plot)
        info(f"wrote {plot}", quiet=quiet)
    if quiet:
        return
    if fmt is OutputFormat.json:
        emit_json(result.to_dict())
        return
    _render_ope(result)


def _render_ope(result) -> None:
    from rtml_cli.output import make_table, print_tables

    truth = result.ground_truth
    columns = ["estimator", "estimate", "95% CI low", "95% CI high", "std error"]
    if truth:
        columns += ["relative error", "truth in CI"]
    rows = []
    for e in result.estimates:
        row = [e["estimator"], e["value"], e["ci_low"], e["ci_high"], e["std_error"]]
        if truth:
            row += [e["relative_error"], e["truth_in_ci"]]
        rows.append(row)
    caption = f"policy: {result.policy['description']}; reward model: {result.reward_model}"
    if result.switch_tau is not None:
        caption += f"; switch-DR tau {result.switch_tau:g}"
    tables = [
        make_table(
            f"Off-policy estimates on {result.log} ({result.n_events:,} events, "
            f"{result.n_actions} actions, {result.n_positions} positions; bootstrap {result.bootstrap})",
            columns,
            rows,
            caption=caption,
            digits=5,
        )
    ]
    d = result.diagnostics
    diag_rows = [
        ("logged policy's value (mean reward)", result.logged_value),
        ("effective sample size", d["effective_sample_size"]),
        ("effective sample size / events", d["ess_share"]),
        ("largest importance weight", d["max_weight"]),
        ("mean importance weight (≈1 when supports overlap)", d["mean_weight"]),
        ("target probability on actions never logged", d["target_share_never_logged"]),
        (
            f"target probability on actions logged < {int(d['min_support'])} times",
            d["target_share_rarely_logged"],
        ),
    ]
    if truth:
        diag_rows.insert(
            0,
            (
                f"on-policy value in {truth['log']} ({truth['n_events']:,} events), 95% CI "
                f"{truth['ci_low']:.5g}–{truth['ci_high']:.5g}",
                truth["value"],
            ),
        )
    tables.append(make_table("Diagnostics", ["quantity", "value"], diag_rows, digits=5))
    print_tables(*tables)


def register(evaluate_app: typer.Typer) -> None:
    evaluate_app.command("ope")(ope_cmd)
