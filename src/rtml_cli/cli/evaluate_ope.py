"""`rtml evaluate ope` and `rtml evaluate contextual`: logged bandit feedback.

``ope`` estimates a new policy's value from a log collected by another policy;
``contextual`` shows what contextual exploration buys over "most clickable" greedy in the
sample world, online and from its logs. The work is in ``rtml_cli.evaluation.ope`` and
``rtml_cli.evaluation.contextual``; the names and defaults of their plug-ins (estimators,
policy SPEC forms, reward models, contextual policies) come from their registries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from rtml_cli.cli.options import FormatOption, KOption, PlotOption, QuietOption, SeedOption
from rtml_cli.evaluation.contextual.job import MODES
from rtml_cli.evaluation.contextual.policies import CONTEXTUAL_POLICIES
from rtml_cli.evaluation.ope.estimators import DEFAULT_ESTIMATORS, ESTIMATORS
from rtml_cli.evaluation.ope.job import DEFAULT_REWARD_MODEL
from rtml_cli.evaluation.ope.reward_models import REWARD_MODELS
from rtml_cli.evaluation.ope.specs import TARGET_POLICIES
from rtml_cli.output import OutputFormat

_SPEC_FORMS = " | ".join(f"{e.obj.syntax} ({e.description})" for e in TARGET_POLICIES.entries())
_REWARD_MODELS = " | ".join(f"{e.name} ({e.description})" for e in REWARD_MODELS.entries())


def ope_cmd(
    log: Annotated[str, typer.Argument(help="Bandit log (Parquet file, directory or glob).")],
    policy: Annotated[
        str,
        typer.Option(
            "--policy",
            "-p",
            help=f"Policy to evaluate: {_SPEC_FORMS}. See docs/evaluate.md.",
        ),
    ],
    estimators: Annotated[
        str,
        typer.Option("--estimators", "-e", help=f"Comma-separated: {','.join(ESTIMATORS)}."),
    ] = ",".join(DEFAULT_ESTIMATORS),
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
        typer.Option("--reward-model", help=f"DM/DR reward model: {_REWARD_MODELS}."),
    ] = DEFAULT_REWARD_MODEL,
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

    --seed seeds the bootstrap. --plot draws each estimate with its CI (and the truth).

    Example: rtml evaluate ope random.parquet --policy log:bts.parquet --ground-truth bts.parquet
    """
    from rtml_cli.evaluation.ope import evaluate_ope, plot_ope
    from rtml_cli.output import Rows, finish, info, warn
    from rtml_cli.plotting import check_png_target

    if plot is not None:
        check_png_target(plot)

    names = [s for s in estimators.split(",") if s.strip()]
    info(f"evaluating policy {policy} on {log} …", quiet=quiet or fmt is not OutputFormat.table)
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
    finish(
        result.to_dict,
        fmt,
        lambda: _render_ope(result),
        kind="evaluate ope",
        rows=Rows(tables=("estimates",)),
        quiet=quiet,
    )


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
        ("effective sample size", round(d["effective_sample_size"], 1)),
        ("effective sample size / events", d["ess_share"]),
        ("largest importance weight", round(d["max_weight"], 2)),
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


def contextual_cmd(
    world: Annotated[
        str | None,
        typer.Argument(
            help="Sample world directory (click_model.npz, bandit*.parquet) or .npz; "
            "leave it out to replay policies on your own --log."
        ),
    ] = None,
    policies: Annotated[
        str,
        typer.Option("--policies", help=f"Comma-separated: {','.join(CONTEXTUAL_POLICIES)}."),
    ] = ",".join(CONTEXTUAL_POLICIES),
    mode: Annotated[
        str,
        typer.Option("--mode", help="online (simulate), offline (estimate from the logs) or both."),
    ] = MODES[-1],
    requests: Annotated[
        int, typer.Option("--requests", "-n", help="Requests per policy.")
    ] = 20_000,
    k: KOption = 3,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Policies update after this many requests.")
    ] = 32,
    top_n: Annotated[
        int | None,
        typer.Option("--top-n", help="Long tail = items outside the N most popular (default 20%)."),
    ] = None,
    epsilon: Annotated[float, typer.Option("--epsilon", help="epsilon-greedy exploration.")] = 0.1,
    alpha: Annotated[float, typer.Option("--alpha", help="LinUCB optimism.")] = 1.0,
    ts_scale: Annotated[
        float, typer.Option("--ts-scale", help="Linear TS posterior scale v.")
    ] = 0.25,
    log: Annotated[
        str | None,
        typer.Option(
            "--log",
            help="Without WORLD: your bandit log, replayed (Li et al. 2011). With WORLD: "
            "the non-uniform log for IPS/DR (default WORLD/bandit.parquet).",
        ),
    ] = None,
    context_cols: Annotated[
        str | None,
        typer.Option(
            "--context-cols",
            help="--log: context columns, names or prefixes ending in * (default: "
            "ctx_*,user_feature_*,user-item_affinity_*, those present).",
        ),
    ] = None,
    items: Annotated[
        str | None,
        typer.Option(
            "--items",
            help="--log: item table (item_id + features, e.g. X.items.parquet from "
            "rtml data import); every logged action must be in it.",
        ),
    ] = None,
    assume_uniform: Annotated[
        bool,
        typer.Option(
            "--assume-uniform",
            help="--log: the log has no propensities but was logged uniformly at random.",
        ),
    ] = False,
    min_matched: Annotated[
        int | None,
        typer.Option(
            "--min-matched",
            help="--log: a policy with fewer (effective) matched events is not ranked "
            "(default 100).",
        ),
    ] = None,
    random_log: Annotated[
        str | None,
        typer.Option(
            "--random-log", help="Uniform log for replay (default WORLD/bandit_random.parquet)."
        ),
    ] = None,
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", "-b", help="Bootstrap resamples for offline CIs.")
    ] = 200,
    seed: SeedOption = 0,
    plot: PlotOption = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Contextual bandits vs "most clickable" greedy: in the sample world, or on your own log.

    With WORLD: online, CTR, cumulative regret against the oracle, long-tail coverage and the
    cost of suboptimal actions; offline, each frozen policy's replay (uniform log) and
    IPS/SNIPS/DR (non-uniform log) estimates next to its exact value from the click model.
    --k is the slate size; --plot draws each policy's cumulative regret.

    Without WORLD, on --log: each policy learns online from the log's events whose logged
    action it chose (replay, Li et al. 2011; IPS-weighted when the propensities are not
    uniform): matched events, CTR with a bootstrap 95% CI, CTR over time, long-tail share
    and coverage, and a verdict that says when the log cannot decide. --plot draws the CTR
    over time.

    --seed seeds the simulation, the replay and the bootstrap.

    Examples: rtml evaluate contextual sample_data/shop --requests 20000 --plot regret.png;
    rtml evaluate contextual --log random.parquet --items random.items.parquet
    """
    from rtml_cli.evaluation.contextual import evaluate_contextual, plot_contextual
    from rtml_cli.output import Rows, finish, info
    from rtml_cli.plotting import check_png_target

    names = [p for p in policies.split(",") if p.strip()]
    if world is None:
        _contextual_log(
            log,
            LogOptions(
                policies=names,
                context_cols=context_cols,
                items=items,
                assume_uniform=assume_uniform,
                min_matched=100 if min_matched is None else min_matched,
                random_log=random_log,
                batch_size=batch_size,
                top_n=top_n,
                epsilon=epsilon,
                alpha=alpha,
                ts_scale=ts_scale,
                bootstrap=bootstrap,
                seed=seed,
            ),
            plot=plot,
            fmt=fmt,
            quiet=quiet,
        )
        return
    _world_only(context_cols, items, assume_uniform, min_matched)
    if plot is not None:
        check_png_target(plot)

    info(
        f"running {policies} for {requests:,} requests in {world} …",
        quiet=quiet or fmt is not OutputFormat.table,
    )
    result = evaluate_contextual(
        world,
        policies=names,
        requests=requests,
        k=k,
        batch_size=batch_size,
        top_n=top_n,
        epsilon=epsilon,
        alpha=alpha,
        ts_scale=ts_scale,
        mode=mode,
        logged=log,
        random_log=random_log,
        n_boot=bootstrap,
        seed=seed,
    )
    for note in result.notes:
        info(note, quiet=quiet)
    if plot is not None:
        plot_contextual(result, plot)
        info(f"wrote {plot}", quiet=quiet)
    finish(
        result.to_dict,
        fmt,
        lambda: _render_contextual(result),
        kind="evaluate contextual",
        rows=Rows(tables=("online", "offline")),
        quiet=quiet,
    )


def _render_contextual(result) -> None:
    from rtml_cli.output import make_table, print_tables

    tables = []
    if result.online:
        oracle = result.online[0].oracle_ctr
        rows = [
            (
                r.policy,
                r.ctr,
                r.expected_ctr,
                round(r.cumulative_regret, 1),
                round(r.regret_per_1k_requests, 1),
                r.suboptimal_share,
                r.tail_impression_share,
                r.tail_click_share,
                r.catalogue_coverage,
            )
            for r in result.online
        ]
        tables.append(
            make_table(
                f"Online: {result.online[0].requests:,} requests x {result.k} items, "
                f"{result.n_items} items, {result.n_users} users (oracle CTR {oracle:.4f})",
                [
                    "policy",
                    "CTR",
                    "E[CTR]",
                    "regret",
                    "lost clicks /1k req",
                    "subopt. impr.",
                    "tail impr.",
                    "tail clicks",
                    "items shown",
                ],
                rows,
                caption=(
                    "regret: expected clicks of the oracle (each user's k truly most clickable "
                    "items) minus the policy's; subopt. impr.: share of impressions outside the "
                    f"oracle's k; tail: items outside the {result.top_n} most popular (share of "
                    "impressions / of clicks); items shown: share of the catalogue ever shown"
                ),
            )
        )
    if result.offline:
        offline_rows = []
        for r in result.offline:
            for method, truth_key in (
                ("ips", "true_value_logged"),
                ("snips", "true_value_logged"),
                ("dr", "true_value_logged"),
                ("replay", "true_value_random_log"),
            ):
                e = r.get(method)
                if e is None:
                    continue
                truth = r[truth_key]
                offline_rows.append(
                    (
                        r["policy"],
                        method,
                        truth,
                        e["value"],
                        f"{e['ci_low']:.4f}–{e['ci_high']:.4f}",
                        e["error"],
                        int(round(e.get("accepted_events", r.get("effective_sample_size")))),
                    )
                )
        tables.append(
            make_table(
                "Offline: each frozen policy estimated from the logs vs its exact value",
                ["policy", "method", "true value", "estimate", "95% CI", "error", "events*"],
                offline_rows,
                caption=(
                    "ips/snips/dr on the non-uniform log, replay on the uniformly random log; "
                    "value = click rate per impression at the log's users and positions; "
                    "*effective sample size (ips/snips/dr) or replayed events"
                ),
            )
        )
    print_tables(*tables)


def _world_only(
    context_cols: str | None, items: str | None, assume_uniform: bool, min_matched: int | None
) -> None:
    """The log-mode options make no sense next to a sample world: refuse them there."""
    from rtml_cli.errors import UsageError

    given = [
        name
        for name, value in (
            ("--context-cols", context_cols),
            ("--items", items),
            ("--assume-uniform", assume_uniform or None),
            ("--min-matched", min_matched),
        )
        if value is not None
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to a replay on "
            "--log without WORLD; leave WORLD out or drop them"
        )


@dataclass
class LogOptions:
    """The options of ``rtml evaluate contextual --log`` (no WORLD), as the job takes them."""

    policies: list[str]
    context_cols: str | None
    items: str | None
    assume_uniform: bool
    min_matched: int
    random_log: str | None
    batch_size: int
    top_n: int | None
    epsilon: float
    alpha: float
    ts_scale: float
    bootstrap: int
    seed: int


def _contextual_log(log: str | None, o: LogOptions, *, plot, fmt, quiet: bool) -> None:
    """``rtml evaluate contextual --log LOG``: replay each policy on a team's own log."""
    from rtml_cli.errors import UsageError
    from rtml_cli.evaluation.contextual import evaluate_contextual_log, plot_contextual_log
    from rtml_cli.output import Rows, finish, info, warn
    from rtml_cli.plotting import check_png_target

    if log is None:
        raise UsageError("give a sample world (WORLD) or your own bandit log (--log LOG.parquet)")
    if o.random_log is not None:
        raise UsageError("--random-log applies with WORLD only; without it, --log is replayed")
    if plot is not None:
        check_png_target(plot)
    info(
        f"replaying {','.join(o.policies)} on {log} …", quiet=quiet or fmt is not OutputFormat.table
    )
    result = evaluate_contextual_log(
        log,
        policies=o.policies,
        context_cols=o.context_cols,
        items=o.items,
        assume_uniform=o.assume_uniform,
        batch_size=o.batch_size,
        top_n=o.top_n,
        epsilon=o.epsilon,
        alpha=o.alpha,
        ts_scale=o.ts_scale,
        n_boot=o.bootstrap,
        min_matched=o.min_matched,
        seed=o.seed,
    )
    for message in result.warnings:
        warn(message)
    if plot is not None:
        plot_contextual_log(result, plot)
        info(f"wrote {plot}", quiet=quiet)
    finish(
        result.to_dict,
        fmt,
        lambda: _render_contextual_log(result),
        kind="evaluate contextual log",
        rows=Rows(tables=("policies",)),
        quiet=quiet,
    )


def _render_contextual_log(result) -> None:
    from rtml_cli.output import make_table, print_tables

    weighted = not result.uniform
    columns = ["policy", "matched", "clicks", "CTR", "95% CI"]
    columns += ["ESS"] if weighted else []
    columns += ["tail choices", "tail clicks", "items chosen"]
    rows = []
    for p in result.policies:
        row: list = [
            p.policy,
            p.matched_events,
            p.clicks,
            p.ctr,
            f"{p.ci_low:.4f}–{p.ci_high:.4f}",
        ]
        row += [round(p.effective_sample_size, 1)] if weighted else []
        row += [p.tail_choice_share, p.tail_click_share, p.coverage]
        rows.append(row)
    caption = (
        f"{result.uniformity}; positions: {result.positions_handling}. matched: events whose "
        "logged action the policy chose (it learns from those only); "
        + ("ESS: effective sample size of the 1/propensity weights; " if weighted else "")
        + f"tail: actions outside the {result.top_n} most clicked in the log (share of the "
        "policy's choices / of its matched clicks); items chosen: share of actions ever chosen"
    )
    title = (
        f"{'Replay' if result.uniform else 'IPS-weighted replay'} on {result.log}: {result.n_events:,} events, "
        f"{result.n_actions} actions, {result.n_features} context features"
    )
    from rich.text import Text

    print_tables(
        make_table(title, columns, rows, caption=caption),
        Text(f"Verdict: {result.verdict['text']}"),
    )


def register(evaluate_app: typer.Typer) -> None:
    evaluate_app.command("ope")(ope_cmd)
    evaluate_app.command("contextual")(contextual_cmd)
