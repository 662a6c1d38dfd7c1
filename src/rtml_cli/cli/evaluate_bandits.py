"""`rtml evaluate [bandits] …`: A/B tests versus bandits on replay results or planned arms."""

from __future__ import annotations

from typing import Annotated

import typer

from rtml_cli.cli.options import FormatOption, PlotOption, QuietOption, SeedOption
from rtml_cli.evaluation.routing.policies import DEFAULT_POLICIES, ROUTING_POLICIES
from rtml_cli.evaluation.routing.results import REWARDS
from rtml_cli.evaluation.routing.runner import DEFAULT_BATCH_SIZE, DEFAULT_SEEDS
from rtml_cli.output import OutputFormat


def bandits_cmd(
    results: Annotated[
        str | None,
        typer.Argument(
            help="RESULTS Parquet from `rtml simulate` (file, directory or glob); its strategies are the arms.",
            show_default=False,
        ),
    ] = None,
    arm: Annotated[
        list[str] | None,
        typer.Option(
            "--arm",
            help="Planning mode: a Bernoulli arm NAME=RATE (repeat), e.g. --arm control=0.040 --arm new=0.045.",
        ),
    ] = None,
    arms: Annotated[
        str | None,
        typer.Option(help="RESULTS mode: comma-separated strategies to compare (default: all)."),
    ] = None,
    reward: Annotated[
        str, typer.Option(help=f"RESULTS mode: reward column: {'|'.join(REWARDS)}.")
    ] = REWARDS[0],
    requests: Annotated[
        int | None,
        typer.Option(
            help="Requests per run. Default: RESULTS mode, every request once; planning mode, "
            "twice the A/B test's required sample (at least 10,000)."
        ),
    ] = None,
    resample: Annotated[
        str,
        typer.Option(
            help="RESULTS mode: permute (each run: every request once, in a new order) or "
            "bootstrap (draw with replacement; allows --requests above the file's size)."
        ),
    ] = "permute",
    policies: Annotated[
        str,
        typer.Option(help=f"Comma-separated routing policies: {', '.join(ROUTING_POLICIES)}."),
    ] = ",".join(DEFAULT_POLICIES),
    control: Annotated[
        str | None, typer.Option(help="The control arm of the A/B tests (default: the first arm).")
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="A/B traffic weights per arm, e.g. 90,10 (default: equal split)."),
    ] = None,
    mde: Annotated[
        float | None,
        typer.Option(
            help="A/B minimum detectable effect, absolute (0.005 = +0.5 points). Default: the "
            "true gap between the best arm and the runner-up (with two arms: the control)."
        ),
    ] = None,
    alpha: Annotated[float, typer.Option(help="A/B significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="A/B power at the MDE.")] = 0.8,
    threshold: Annotated[
        float, typer.Option(help="Bandits declare a winner when P(arm is best) >= this.")
    ] = 0.95,
    value_remaining: Annotated[
        float | None,
        typer.Option(
            help="Bandits also stop when the 95th percentile of the relative value remaining "
            "falls below this fraction (e.g. 0.01)."
        ),
    ] = None,
    min_requests: Annotated[
        int, typer.Option(help="No decision (bandits, sequential A/B) before this many requests.")
    ] = 0,
    min_arm_requests: Annotated[
        int, typer.Option(help="Bandits declare a winner only after it served this many requests.")
    ] = 100,
    epsilon: Annotated[float, typer.Option(help="epsilon-greedy's exploration rate.")] = 0.1,
    seeds: Annotated[
        int, typer.Option(help="Repetitions (each a new request order).")
    ] = DEFAULT_SEEDS,
    batch_size: Annotated[
        int,
        typer.Option(help="Requests per policy update (production bandits update in batches)."),
    ] = DEFAULT_BATCH_SIZE,
    seed: SeedOption = 0,
    plot: PlotOption = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Compare an A/B test with bandits: requests to a decision, right-arm rate, regret, clicks lost.

    Give a RESULTS file (every strategy is an arm; every arm's reward on every request is
    known, so all policies run on the same request streams) or planning arms with --arm.
    --plot writes cumulative regret and best-arm traffic share per policy.
    """
    from rtml_cli.evaluation.routing import evaluate_routing, plot_report
    from rtml_cli.output import Rows, finish, info
    from rtml_cli.plotting import check_png_target

    if plot:
        check_png_target(plot)
    report, runs = evaluate_routing(
        results=results,
        arm_specs=arm or [],
        arms=_split_list(arms),
        reward=reward,
        requests=requests,
        resample=resample,
        policies=tuple(_split_list(policies) or ()),
        control=control,
        split=_split_floats(split, "--split"),
        mde=mde,
        alpha=alpha,
        power=power,
        threshold=threshold,
        value_remaining=value_remaining,
        min_requests=min_requests,
        min_arm_requests=min_arm_requests,
        epsilon=epsilon,
        seeds=seeds,
        batch_size=batch_size,
        seed=seed,
        log=lambda msg: info(msg, quiet=quiet),
    )
    if plot:
        plot_report(report, runs, plot)
        info(f"wrote {plot}", quiet=quiet)
    finish(
        report,
        fmt,
        lambda: _render(report),
        kind="evaluate bandits",
        rows=Rows(tables=("arms", "policies")),
        quiet=quiet,
    )


def _split_list(text: str | None) -> list[str] | None:
    from rtml_cli.cli.options import split_words

    return None if text is None else split_words(text)


def _split_floats(text: str | None, option: str) -> list[float] | None:
    from rtml_cli.errors import UsageError

    parts = _split_list(text)
    if parts is None:
        return None
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise UsageError(f"{option} must be comma-separated numbers, got {text!r}") from None


def _render(report: dict) -> None:
    from rtml_cli.output import make_table, print_tables

    caption = None
    if report["mode"] == "results":
        protocol = report.get("protocol") or "next-unseen (not recorded: RESULTS before 0.2)"
        caption = (
            f"over the {report['requests_in_results']:,} requests with a {report['reward']} "
            f"reward for every arm ({report['dropped_requests']:,} without one dropped); "
            f"replay protocol {protocol}"
        )
    arms = make_table(
        "Arms (Bernoulli rates)"
        if report["mode"] == "planning"
        else f"Arms (mean {report['reward']})",
        ["arm", "mean reward", "best", "control"],
        [(a["arm"], a["mean_reward"], a["best"], a["control"]) for a in report["arms"]],
        caption=caption,
        digits=5,
    )
    rows = []
    for p in report["policies"]:
        q = p["requests_to_decision"]
        interval = "–" if q["median"] is None else f"{q['p5']:,.0f}–{q['p95']:,.0f}"
        rows.append(
            (
                p["policy"],
                _pct(p["decided_share"]),
                q["median"],
                interval,
                _pct(p["picked_best_share"]),
                round(p["regret_mean"], 1),
                _pct(p["best_arm_traffic_share"]),
                round(p["clicks_lost_mean"], 1),
                "–" if p["decision_gap_mean"] is None else f"{p['decision_gap_mean']:.4f}",
            )
        )
    main = make_table(
        f"Policies: {report['seeds']} runs x {report['horizon']:,} requests "
        f"(batch {report['batch_size']}, P(best) >= {report['threshold']})",
        [
            "policy",
            "decided",
            "requests to decide",
            "90% interval",
            "picked best",
            "regret",
            "best share",
            "lost in test",
            "pick gap",
        ],
        rows,
        digits=3,
    )
    _fit(main, right=(1, 3, 4, 6, 8))
    plan = report["ab_plan"]
    ab_rows = []
    for p in report["policies"]:
        if "ab" not in p:
            continue
        d = p["ab"]
        ab_rows.append(
            (
                p["policy"],
                plan["required_requests"] if p["policy"] == "ab" else None,
                d["true_effect"],
                d["observed_effect_median"],
                f"[{d['ci_low_median']:+.5f}, {d['ci_high_median']:+.5f}]",
                _pct(d["ci_coverage"]),
                None if d["srm_p_median"] is None else round(d["srm_p_median"], 3),
                _pct(d["srm_flagged_share"]),
            )
        )
    tables = [arms, main]
    if ab_rows:
        tables.append(
            _fit(
                make_table(
                    f"A/B tests: control {plan['control']}, MDE {plan['mde']:+.5f}"
                    + (
                        f" in {report['reward']} (a proxy metric, not clicks)"
                        if report["mode"] == "results"
                        else ""
                    )
                    + f", alpha {plan['alpha']}, power {plan['power']}",
                    [
                        "policy",
                        "required requests",
                        "true effect",
                        "observed effect",
                        f"{1 - plan['alpha']:.0%} CI",
                        "CI covers truth",
                        "SRM p",
                        "SRM alarms",
                    ],
                    ab_rows,
                    digits=5,
                    caption="Medians over runs. CI: Wald for ab; the always-valid mSPRT confidence "
                    "sequence for ab-sequential. SRM alarm: traffic split chi-square p < 0.001.",
                ),
                right=(5, 7),
            )
        )
    text = [f"[bold]Verdict:[/bold] {report['verdict']}"]
    text += [f"[dim]Note: {c}[/dim]" for c in report["caveats"]]
    if not plan["fits_in_stream"]:
        text.append(
            f"[dim]Note: the A/B test needs {plan['required_requests']:,} requests, more than "
            f"the {report['horizon']:,} simulated; use --requests (and --resample bootstrap).[/dim]"
        )
    from rich.text import Text

    print_tables(*tables, *(Text.from_markup(t) for t in text))


def _pct(share: float | None) -> str:
    return "–" if share is None else f"{share:.0%}"


def _fit(table, *, right: tuple[int, ...] = ()):
    """Right-align the columns of numbers shown as text (shares, intervals); the width is
    ``make_table``'s business."""
    for index in right:
        table.columns[index].justify = "right"
    return table


def register(app: typer.Typer) -> None:
    app.command("bandits")(bandits_cmd)
