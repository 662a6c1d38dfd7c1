"""Model evaluation: bandits vs A/B tests, off-policy estimates, contextual exploration."""

from __future__ import annotations

from typing import Any

from rtml_cli import plotting
from rtml_cli.report.context import Context, diff
from rtml_cli.report.inputs import Document
from rtml_cli.report.model import Claim, Label, Num, Para, Part, Section, Table

HOW_TO_BANDITS = (
    "No bandit evaluation was given. Run `rtml evaluate results.parquet --arms "
    "batch,session-embedding,online-ranker --format json > bandits.json` (or `rtml evaluate "
    "--arm control=0.040 --arm new=0.045 --format json` to plan one) and pass the document."
)
HOW_TO_OPE = (
    "No off-policy estimate was given. Run `rtml evaluate ope LOG --policy SPEC --format json "
    "> ope.json` and pass the document."
)
HOW_TO_CONTEXTUAL = (
    "No contextual-bandit run was given. Run `rtml evaluate contextual WORLD --format json > "
    "contextual.json` and pass the document."
)
#: Overlap is weak below this share of effective events or above this largest weight.
WEAK_ESS_SHARE = 0.1
WEAK_MAX_WEIGHT = 100.0


def _unit(doc: dict[str, Any]) -> str:
    """What a reward counts: clicks in planning mode, hits of the next item in a replay."""
    if doc.get("mode") == "results":
        return f"{doc.get('reward', 'hit')}s@K of the next item"
    return "clicks"


def _short_unit(doc: dict[str, Any]) -> str:
    return "hits@K" if doc.get("mode") == "results" else "clicks"


def _policy(doc: dict[str, Any], name: str) -> int | None:
    for index, row in enumerate(doc.get("policies") or []):
        if row.get("policy") == name:
            return index
    return None


def _bandit(doc: dict[str, Any]) -> int | None:
    """Thompson sampling when it ran, else the bandit that decided soonest."""
    index = _policy(doc, "thompson")
    if index is not None:
        return index
    bandits = [
        (i, r)
        for i, r in enumerate(doc.get("policies") or [])
        if r.get("kind") == "bandit" and (r.get("requests_to_decision") or {}).get("median")
    ]
    if not bandits:
        return None
    return min(bandits, key=lambda item: item[1]["requests_to_decision"]["median"])[0]


def bandit_claim(ctx: Context, document: Document) -> Claim | None:
    doc = document.doc
    b, a = _bandit(doc), _policy(doc, "ab")
    if b is None or a is None:
        return None
    name = doc["policies"][b]["policy"]
    median = ctx.num(document, ("policies", b, "requests_to_decision", "median"), "count")
    low = ctx.num(document, ("policies", b, "requests_to_decision", "p5"), "count")
    high = ctx.num(document, ("policies", b, "requests_to_decision", "p95"), "count")
    ab = ctx.num(document, ("policies", a, "requests_to_decision", "median"), "count")
    seeds = ctx.num(document, ("seeds",), "count")
    if median is None or ab is None:
        return None
    setting = "replaying RESULTS" if doc.get("mode") == "results" else "planning"
    arms = " vs ".join(arm["arm"] for arm in doc.get("arms") or [])
    parts: list[Part] = [f"{setting.capitalize()} ", Label(arms), ": a ", Label(name)]
    parts += [" evaluation would decide in a median ", median, " requests"]
    if low is not None and high is not None and seeds is not None:
        parts += [" (90% of ", seeds, " runs between ", low, " and ", high, ")"]
    parts += [" instead of ", ab, " for a fixed A/B test"]
    picked = ctx.num(document, ("policies", b, "picked_best_share"), "percent")
    picked_ab = ctx.num(document, ("policies", a, "picked_best_share"), "percent")
    slower_to_be_right = False
    if picked is not None and picked_ab is not None:
        from rtml_cli.evaluation.routing.report import correct_rate_gap

        parts += [", picking the best arm in ", picked, " of runs (A/B: ", picked_ab, ")"]
        policies = doc["policies"]
        slower_to_be_right = (
            correct_rate_gap(policies[b], policies[a], int(doc.get("seeds", 1))) > 0
        )
        if slower_to_be_right:
            parts.append(
                " — less often beyond the runs' Monte-Carlo error: it is not faster at the same "
                "error rate (raise --threshold and compare again)"
            )
    lost_b = ctx.num(document, ("policies", b, "clicks_lost_mean"), "value")
    lost_a = ctx.num(document, ("policies", a, "clicks_lost_mean"), "value")
    if lost_b is not None and lost_a is not None:
        saved = diff(lost_a, lost_b, "value")
        parts += [
            ", and loses ",
            Num(abs(saved.value), "value", ("abs", saved)),
            f" {'fewer' if saved.value >= 0 else 'more'} {_unit(doc)} while experimenting "
            "(mean over runs)",
        ]
    parts.append(".")
    return Claim("Model evaluation", parts, weak=slower_to_be_right)


def ope_claim(ctx: Context, document: Document) -> Claim | None:
    doc = document.doc
    estimates = doc.get("estimates") or []
    if not estimates:
        return None
    value = ctx.num(document, ("estimates", 0, "value"), "value")
    low = ctx.num(document, ("estimates", 0, "ci_low"), "value")
    high = ctx.num(document, ("estimates", 0, "ci_high"), "value")
    logged = ctx.num(document, ("logged_value",), "value")
    if value is None:
        return None
    parts: list[Part] = [
        Label(str(doc.get("policy", {}).get("spec"))),
        " estimated from the log ",
        Label(_name(doc.get("log"))),
        ": ",
        Label(estimates[0]["estimator"].upper()),
        " ",
        value,
    ]
    cannot_tell = False
    if low is not None and high is not None:
        parts += [" (95% CI ", low, " to ", high, ")"]
    if logged is not None:
        parts += [" against ", logged, " for the logging policy"]
        if low is not None and high is not None and low.value <= logged.value <= high.value:
            cannot_tell = True
            parts.append(" (the interval includes it: the data cannot tell them apart)")
    truth = ctx.num(document, ("ground_truth", "value"), "value")
    if truth is not None:
        parts += ["; the policy's own log says ", truth]
    weak = _weak(ctx, document)
    if weak:
        parts += ["; overlap is weak (", *weak, "): trust it less"]
    parts.append(".")
    return Claim("Off-policy", parts, cannot_tell=cannot_tell, weak=bool(weak))


def _weak(ctx: Context, document: Document) -> list[Part]:
    diag = document.doc.get("diagnostics") or {}
    parts: list[Part] = []
    share = diag.get("ess_share")
    if share is not None and share < WEAK_ESS_SHARE:
        ess = ctx.num(document, ("diagnostics", "effective_sample_size"), "count")
        n = ctx.num(document, ("n_events",), "count")
        if ess is not None and n is not None:
            parts += ["effective sample size ", ess, " of ", n, " events"]
    weight = diag.get("max_weight")
    if weight is not None and weight > WEAK_MAX_WEIGHT:
        if parts:
            parts.append(", ")
        parts += ["largest weight ", ctx.num(document, ("diagnostics", "max_weight"), "value")]  # type: ignore[list-item]
    return parts


def _name(path: Any) -> str:
    from pathlib import Path

    return Path(str(path)).name


def contextual_claim(ctx: Context, document: Document) -> Claim | None:
    doc = document.doc
    online = doc.get("online") or []
    greedy = next((i for i, r in enumerate(online) if r.get("policy") == "greedy"), None)
    if greedy is None or len(online) < 2:
        return None
    best = max(
        (i for i, r in enumerate(online) if i != greedy),
        key=lambda i: online[i].get("ctr") or 0.0,
    )

    def ctr_parts(index: int) -> list[Part]:
        ctr = ctx.num(document, ("online", index, "ctr"), "rate")
        clicks = ctx.num(document, ("online", index, "clicks"), "count")
        shown = ctx.num(document, ("online", index, "impressions"), "count")
        if ctr is None:
            return ["n/a"]
        out: list[Part] = [ctr]
        if clicks is not None and shown is not None:
            band = plotting.wilson(clicks.value, shown.value)
            if band is not None:
                out += [
                    " (95% CI ",
                    Num(band[0], "rate", ("wilson", "low", clicks, shown)),
                    " to ",
                    Num(band[1], "rate", ("wilson", "high", clicks, shown)),
                    ")",
                ]
        return out

    tail = ctx.num(document, ("online", best, "tail_click_share"), "percent")
    tail_greedy = ctx.num(document, ("online", greedy, "tail_click_share"), "percent")
    parts: list[Part] = [
        Label(online[best]["policy"]),
        " reaches a click-through rate of ",
        *ctr_parts(best),
        " against ",
        *ctr_parts(greedy),
        " for the greedy 'most clickable' policy",
    ]
    if tail is not None and tail_greedy is not None:
        parts += [", with ", tail, " of clicks on long-tail items (greedy: ", tail_greedy, ")"]
    parts.append(" in the sample world (its click model is known).")
    return Claim("Contextual exploration", parts)


def evaluation_sections(ctx: Context) -> tuple[list[Claim], list[Section]]:
    claims: list[Claim] = []
    blocks: list[Any] = []
    bandits = ctx.inputs.of("evaluate bandits")
    seen: set[str] = set()
    for document in bandits:
        claim = bandit_claim(ctx, document)
        if claim is not None:
            claims.append(claim)
        blocks += _bandit_blocks(ctx, document, seen)
    if not bandits:
        blocks.append(Para(HOW_TO_BANDITS, "missing"))
    ope_blocks: list[Any] = []
    for document in ctx.inputs.of("evaluate ope"):
        claim = ope_claim(ctx, document)
        if claim is not None:
            claims.append(claim)
        ope_blocks += _ope_blocks(ctx, document)
    if not ope_blocks:
        ope_blocks.append(Para(HOW_TO_OPE, "missing"))
    context_blocks: list[Any] = []
    contextual = ctx.inputs.one("evaluate contextual")
    if contextual is not None:
        claim = contextual_claim(ctx, contextual)
        if claim is not None:
            claims.append(claim)
        context_blocks += _contextual_blocks(ctx, contextual)
    else:
        context_blocks.append(Para(HOW_TO_CONTEXTUAL, "missing"))
    return claims, [
        Section("bandits", "Model evaluation: bandits vs A/B tests", blocks),
        Section("ope", "Off-policy evaluation", ope_blocks),
        Section("contextual", "Contextual exploration", context_blocks),
    ]


def _bandit_blocks(ctx: Context, document: Document, seen: set[str]) -> list[Any]:
    doc = document.doc
    unit = _unit(doc)
    arms = ", ".join(
        f"{a['arm']} {a['mean_reward']:.4g}" + (" (best)" if a.get("best") else "")
        for a in doc.get("arms") or []
    )
    mode = doc.get("mode")
    intro = (
        f"`{_name(document.path)}`: {mode} mode, arms (mean reward) {arms}; "
        f"{doc.get('seeds')} runs of {doc.get('horizon'):,} requests each."
    )
    if mode == "results":
        intro += (
            f" The reward is {doc.get('reward')}: a hit of the next item in the top K "
            f"(protocol {doc.get('protocol')}), never a click; {doc.get('dropped_requests', 0):,} "
            f"requests without a truth were dropped, {doc.get('requests_in_results', 0):,} kept."
        )
    rows = []
    for p in doc.get("policies") or []:
        rtd = p.get("requests_to_decision") or {}
        rows.append(
            [
                p["policy"],
                f"{_fmt(rtd.get('median'), ',.0f')} ({_fmt(rtd.get('p5'), ',.0f')}–"
                f"{_fmt(rtd.get('p95'), ',.0f')})",
                _fmt(p.get("decided_share"), "%"),
                _fmt(p.get("picked_best_share"), "%"),
                f"{_fmt(p.get('regret_mean'), ',.1f')} ({_fmt(p.get('regret_p95'), ',.1f')})",
                _fmt(p.get("clicks_lost_mean"), ",.1f"),
            ]
        )
    label = "lost " + ("hits" if mode == "results" else "clicks")
    blocks: list[Any] = [
        Para(intro),
        Table(
            "Per policy, over the runs",
            [
                "policy",
                "requests to decide: median (5th–95th pct)",
                "decided",
                "picked best",
                "regret: mean (p95)",
                f"{label} while testing",
            ],
            rows,
            note=f"Regret and lost rewards count {unit}; percentiles are over the runs.",
            numeric=[False, True, True, True, True, True],
        ),
        ctx.chart(
            f"decision-{document.path.stem}",
            "Requests until a decision",
            "Requests each policy needed to decide, median with the 5th to 95th percentile "
            "over runs: " + "; ".join(f"{r[0]} {r[1]}" for r in rows),
            lambda: plotting.decision_figure(doc),
        ),
        ctx.chart(
            f"bandits-{document.path.stem}",
            "Cumulative regret and traffic to the best arm",
            f"Two line charts over requests served: cumulative regret in {unit} (mean over "
            "runs) and the share of traffic sent to the best arm, one line per policy.",
            lambda: plotting.bandits_figure(doc, reward=_short_unit(doc)),
        ),
    ]
    for caveat in doc.get("caveats") or []:
        if caveat not in seen:
            seen.add(caveat)
            blocks.append(Para(caveat, "warning"))
    return blocks


def _fmt(value: Any, spec: str) -> str:
    if value is None:
        return "–"
    if spec == "%":
        return f"{value * 100:.0f}%"
    return format(value, spec)


def _ope_blocks(ctx: Context, document: Document) -> list[Any]:
    doc = document.doc
    diag = doc.get("diagnostics") or {}
    weak = _weak(ctx, document)
    rows = [
        [
            e["estimator"],
            _fmt(e.get("value"), ".4g"),
            f"{_fmt(e.get('ci_low'), '.4g')}–{_fmt(e.get('ci_high'), '.4g')}",
            "" if e.get("truth_in_ci") is None else ("yes" if e["truth_in_ci"] else "no"),
        ]
        for e in doc.get("estimates") or []
    ]
    gt = doc.get("ground_truth")
    blocks: list[Any] = [
        Para(
            f"`{_name(document.path)}`: policy `{doc['policy']['spec']}` "
            f"({doc['policy'].get('description', '')}) estimated from `{_name(doc.get('log'))}` "
            f"({doc.get('n_events', 0):,} events, {doc.get('n_actions')} actions); the logging "
            f"policy's own value is {doc.get('logged_value')}"
            + (
                f"; the policy's own log: {gt['value']} ({gt['ci_low']}–{gt['ci_high']})."
                if gt
                else "."
            )
        ),
        Table(
            f"Estimates ({doc.get('bootstrap', 0):,} bootstrap resamples, seed {doc.get('seed')})",
            ["estimator", "value", "95% CI", "truth in CI"],
            rows,
            numeric=[False, True, True, False],
        ),
        Table(
            "Overlap diagnostics" + (" — WEAK" if weak else ""),
            [
                "effective sample size",
                "share of events",
                "largest weight",
                "mean weight",
                "target share never logged",
            ],
            [
                [
                    _fmt(diag.get("effective_sample_size"), ",.0f"),
                    _fmt(diag.get("ess_share"), "%"),
                    _fmt(diag.get("max_weight"), ".3g"),
                    _fmt(diag.get("mean_weight"), ".3g"),
                    _fmt(diag.get("target_share_never_logged"), "%"),
                ]
            ],
            note=f"Weak overlap: fewer than {WEAK_ESS_SHARE:.0%} effective events or a weight "
            f"above {WEAK_MAX_WEIGHT:g}; then IPS and DR rest on a few events.",
            numeric=[True] * 5,
        ),
        ctx.chart(
            f"ope-{document.path.stem}",
            "Estimates with 95% intervals",
            "Each estimator's value with its 95% bootstrap interval: "
            + "; ".join(f"{r[0]} {r[1]} ({r[2]})" for r in rows)
            + (f"; the on-policy value {gt['value']} as a dashed line" if gt else ""),
            lambda: plotting.ope_figure(doc),
        ),
    ]
    for warning in doc.get("warnings") or []:
        blocks.append(Para(warning, "warning"))
    return blocks


def _contextual_blocks(ctx: Context, document: Document) -> list[Any]:
    doc = document.doc
    rows = []
    for r in doc.get("online") or []:
        band = plotting.wilson(r.get("clicks") or 0, r.get("impressions") or 0)
        rows.append(
            [
                r["policy"],
                _fmt(r.get("ctr"), ".3f"),
                f"{band[0]:.3f}–{band[1]:.3f}" if band else "–",
                _fmt(r.get("cumulative_regret"), ",.0f"),
                _fmt(r.get("tail_impression_share"), "%"),
                _fmt(r.get("tail_click_share"), "%"),
            ]
        )
    return [
        Para(
            f"`{_name(document.path)}`: {doc.get('n_users', 0):,} users, {doc.get('n_items')} "
            f"items, {doc.get('k')} shown per request, {doc['params'].get('requests', 0):,} "
            f"requests (seed {doc.get('seed')}); a known click model, so regret is exact."
        ),
        Table(
            "Online policies",
            [
                "policy",
                "CTR",
                "95% CI (Wilson)",
                "regret (clicks)",
                "long-tail impressions",
                "long-tail clicks",
            ],
            rows,
            numeric=[False, True, True, True, True, True],
        ),
        ctx.chart(
            "contextual",
            "Cumulative regret per contextual policy",
            "Line chart of cumulative regret (expected clicks lost) over requests, one line "
            "per policy: " + "; ".join(f"{r[0]} {r[3]}" for r in rows),
            lambda: plotting.contextual_figure(doc),
        ),
    ]
