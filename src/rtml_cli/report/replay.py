"""Stages 1 → 2 → 3 from a replay: the simulate document, its RESULTS, or both.

Figures come from the simulate document when it is given (they are the ones its tables
showed), else they are computed from RESULTS; intervals always come from RESULTS (a
session bootstrap, paired for differences). HR, MRR and NDCG are over the requests that
have a truth, and every figure says how many those are.
"""

from __future__ import annotations

from typing import Any

from rtml_cli.report.context import Context, diff, scaled
from rtml_cli.report.model import Claim, Label, Num, Para, Part, Section, Table

METRIC_COLUMN = {"hr": "hit", "mrr": "rr", "ndcg": "ndcg"}
SEGMENTS = ("anonymous", "new", "returning")
HOW_TO_REPLAY = (
    "No replay was given. Run `rtml simulate EVENTS --artifacts ROOT --out results.parquet "
    "--format json > simulate.json` (add --ablation and --freshness-sweep 0s,5m,1h for the "
    "Stage 3 sections) and pass both files."
)
NO_INTERVAL = "no interval: give the RESULTS Parquet of `rtml simulate --out`"


def stage_of(name: str) -> int | None:
    """The migration stage of a strategy (its registry entry), None for an unknown name."""
    from rtml_cli.online.strategies import STRATEGIES

    base = name.partition("@")[0]
    if base not in STRATEGIES:
        return None
    stage = STRATEGIES.entry(base).meta.get("stage")
    return int(stage) if stage is not None else None


def is_variant(name: str) -> bool:
    """An ablation or a freshness-sweep point: not a strategy a team would ship as such."""
    from rtml_cli.online.strategies import ABLATIONS

    return "@" in name or name in ABLATIONS


class Replay:
    """The figures of one replay, each a :class:`Num` with its origin."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.sim = ctx.inputs.one("simulate")
        self.results = ctx.inputs.results
        info = (self.sim.doc.get("info") or {}) if self.sim else {}
        self.info = info
        self.protocol = info.get("protocol") or (self.results.protocol if self.results else None)
        if self.sim is not None:
            rows = self.sim.doc.get("summary") or []
            self.strategies = list(dict.fromkeys(r["strategy"] for r in rows))
        else:
            assert self.results is not None
            self.strategies = self.results.strategies
        self.k = (
            self.ctx.num(self.sim, ("info", "k"), "k")
            if self.sim
            else Num(float(self.results.k), "k", ("results", "k"))
            if self.results
            else None
        )

    # ---------------------------------------------------------------------------- figures
    def _row(self, strategy: str, segment: str) -> int | None:
        for index, row in enumerate(self.sim.doc.get("summary") or [] if self.sim else []):
            if row.get("strategy") == strategy and row.get("segment") == segment:
                return index
        return None

    def value(self, strategy: str, metric: str = "hr", segment: str = "all") -> Num | None:
        """HR/MRR/NDCG (``metric``) or a count of the strategy in ``segment``."""
        fmt = "count" if metric.startswith("requests") else "rate"
        if self.sim is not None:
            index = self._row(strategy, segment)
            return (
                None if index is None else self.ctx.num(self.sim, ("summary", index, metric), fmt)
            )
        if self.results is None:
            return None
        return results_value(self.results.frame, strategy, metric, segment)

    def latency(self, strategy: str, q: int) -> Num | None:
        if self.sim is not None:
            index = self._row(strategy, "all")
            if index is not None:
                return self.ctx.num(self.sim, ("summary", index, f"latency_p{q}_ms"), "ms")
        if self.results is not None and "latency_us" in self.results.frame.columns:
            micro = results_value(self.results.frame, strategy, f"latency_p{q}", "all")
            return scaled(micro, 0.001, "ms") if micro is not None else None
        return None

    def rate_interval(self, strategy: str, metric: str = "hr", segment: str = "all"):
        """(low, high) of a rate: the simulate document's own interval, else the bootstrap
        of RESULTS, else None."""
        index = self._row(strategy, segment) if self.sim is not None else None
        if index is not None:
            key = ("summary", index, f"{metric}_ci")
            low = self.ctx.num(self.sim, (*key, 0), "rate")  # type: ignore[arg-type]
            high = self.ctx.num(self.sim, (*key, 1), "rate")  # type: ignore[arg-type]
            if low is not None and high is not None:
                return low, high
        boot = self.ctx.bootstrap
        if boot is None:
            return None
        estimate = boot.rate(strategy, METRIC_COLUMN[metric], segment)
        if estimate.low is None:
            return None
        return self.ctx.interval(
            estimate, ("rate", strategy, METRIC_COLUMN[metric], segment), "rate"
        )

    def difference(self, a: str, b: str, segment: str = "all", metric: str = "hr"):
        """(delta, (low, high) or None, cannot_tell): ``a`` minus ``b``, paired."""
        va, vb = self.value(a, metric, segment), self.value(b, metric, segment)
        if va is None or vb is None:
            return None
        delta = diff(va, vb)
        if segment == "all":
            bounds = self._doc_difference(a, b, metric)
            if bounds is not None:
                return delta, bounds, bounds[0].value <= 0 <= bounds[1].value
        boot = self.ctx.bootstrap
        if boot is None:
            return delta, None, False
        estimate = boot.difference(a, b, METRIC_COLUMN[metric], segment)
        if estimate.low is None:
            return delta, None, False
        bounds = self.ctx.interval(
            estimate, ("diff", a, b, METRIC_COLUMN[metric], segment), "delta"
        )
        return delta, bounds, estimate.cannot_tell

    def _doc_difference(self, a: str, b: str, metric: str) -> tuple[Num, Num] | None:
        """The simulate document's paired interval of ``a`` minus ``b`` (``differences``)."""
        if self.sim is None:
            return None
        for index, row in enumerate(self.sim.doc.get("differences") or []):
            pair = (row.get("a"), row.get("b"))
            if pair not in ((a, b), (b, a)):
                continue
            key = ("differences", index, f"{metric}_delta_ci")
            low = self.ctx.num(self.sim, (*key, 0), "delta")
            high = self.ctx.num(self.sim, (*key, 1), "delta")
            if low is None or high is None:
                return None
            if pair == (a, b):
                return low, high
            return Num(-high.value, "delta", ("neg", high)), Num(-low.value, "delta", ("neg", low))
        return None

    def latency_interval(self, strategy: str, q: int):
        boot = self.ctx.bootstrap
        if boot is None or "latency_us" not in boot.frame.columns:
            return None
        estimate = boot.quantile(strategy, q / 100)
        if estimate.low is None:
            return None
        low, high = self.ctx.interval(estimate, ("quantile", strategy, q), "ms")
        return scaled(low, 0.001, "ms"), scaled(high, 0.001, "ms")

    # -------------------------------------------------------------------------- words
    @property
    def target(self) -> str:
        if self.protocol == "next-item":
            return "of the next item"
        return "of the next unseen item"

    def headline(self, stage: int, by: str = "hr") -> str | None:
        """The strategy that speaks for a stage: batch for 1, the best Stage-2 one, and the
        online ranker (else the best non-variant) for 3."""
        names = [s for s in self.strategies if stage_of(s) == stage and not is_variant(s)]
        if not names:
            return None
        if stage == 1:  # the team's own lists when given, else rtml's nightly batch list
            for name in ("baseline", "batch"):
                if name in names:
                    return name
        if stage == 3 and "online-ranker" in names:
            return "online-ranker"
        return max(names, key=lambda s: (self.value(s, by) or Num(-1.0, "rate", ())).value)


def results_value(frame: Any, strategy: str, metric: str, segment: str) -> Num | None:
    """A figure computed from RESULTS (origin ``("results", metric, strategy, segment)``)."""
    import polars as pl

    rows = frame.filter(pl.col("strategy") == strategy)
    if segment != "all":
        rows = rows.filter(pl.col("segment") == segment)
    if rows.height == 0:
        return None
    origin = ("results", metric, strategy, segment)
    if metric in METRIC_COLUMN:
        column = rows[METRIC_COLUMN[metric]].drop_nulls().cast(float)
        return Num(float(column.mean()), "rate", origin) if column.len() else None
    if metric == "requests":
        return Num(float(rows.height), "count", origin)
    if metric == "requests_with_truth":
        return Num(float(rows["hit"].drop_nulls().len()), "count", origin)
    if metric.startswith("latency_p"):
        q = int(metric.removeprefix("latency_p")) / 100
        return Num(float(rows["latency_us"].cast(float).quantile(q, "linear")), "value", origin)
    raise KeyError(metric)


# ------------------------------------------------------------------------------ sentences
def _interval_parts(bounds, fmt_sep: str = " to ") -> list[Part]:
    low, high = bounds
    return ["95% CI ", low, fmt_sep, high]


def _change(replay: Replay, a: str, b: str, segment: str = "all") -> tuple[list[Part], bool]:
    """'(+0.287, 95% CI +0.280 to +0.294)' and whether the data cannot tell."""
    found = replay.difference(a, b, segment)
    if found is None:
        return [], False
    delta, bounds, cannot_tell = found
    if bounds is None:
        return ["(", delta, f"; {NO_INTERVAL})"], False
    parts: list[Part] = ["(", delta, ", ", *_interval_parts(bounds), ")"]
    if cannot_tell:
        parts.append(": the interval includes zero, the data cannot tell")
    return parts, cannot_tell


def stage2_claims(replay: Replay) -> list[Claim]:
    s1, s2 = replay.headline(1), replay.headline(2)
    if s1 is None or s2 is None or replay.k is None:
        return []
    v1, v2 = replay.value(s1), replay.value(s2)
    n, total = replay.value(s1, "requests_with_truth"), replay.value(s1, "requests")
    if v1 is None or v2 is None or n is None or total is None:
        return []
    change, cannot_tell = _change(replay, s2, s1)
    verb = (
        "changes" if cannot_tell or not change else ("raises" if v2.value >= v1.value else "lowers")
    )
    parts: list[Part] = [
        "Stage 2 (",
        Label(s2),
        f") {verb} HR@",
        replay.k,
        f" {replay.target} from ",
        v1,
        " (",
        Label(s1),
        ") to ",
        v2,
        " ",
        *change,
        ", over ",
        n,
        " requests with a truth (of ",
        total,
        ").",
    ]
    claims = [Claim("Stage 1 → 2", parts, cannot_tell=cannot_tell)]
    segment = _segment_claim(replay, s1, s2, "anonymous", "anonymous visitors", n)
    if segment is not None:
        claims.append(segment)
    return claims


def _segment_claim(
    replay: Replay, s1: str, s2: str, segment: str, who: str, overall: Num
) -> Claim | None:
    v1, v2 = replay.value(s1, segment=segment), replay.value(s2, segment=segment)
    n = replay.value(s1, "requests_with_truth", segment)
    if v1 is None or v2 is None or n is None or not n.value:
        return None
    from rtml_cli.report.context import ratio

    share = ratio(n, overall, "percent")
    change, cannot_tell = _change(replay, s2, s1, segment)
    parts: list[Part] = [f"For {who} (", n, " requests with a truth"]
    if share is not None:
        parts += [", ", share, " of them"]
    parts += ["): from ", v1, " to ", v2, " ", *change, "."]
    return Claim("Stage 1 → 2", parts, cannot_tell=cannot_tell)


def stage3_claims(replay: Replay) -> list[Claim]:
    claims: list[Claim] = []
    s2, s3 = replay.headline(2), replay.headline(3)
    if s2 is not None and s3 is not None and replay.k is not None:
        v2, v3 = replay.value(s2), replay.value(s3)
        if v2 is not None and v3 is not None:
            change, cannot_tell = _change(replay, s3, s2)
            claims.append(
                Claim(
                    "Stage 2 → 3",
                    [
                        "Stage 3 (",
                        Label(s3),
                        ") reaches HR@",
                        replay.k,
                        " ",
                        v3,
                        " against ",
                        v2,
                        " for Stage 2 (",
                        Label(s2),
                        ") ",
                        *change,
                        ".",
                    ],
                    cannot_tell=cannot_tell,
                )
            )
    streaming = _streaming_claim(replay)
    if streaming is not None:
        claims.append(streaming)
    fresh = _freshness_claim(replay)
    if fresh is not None:
        claims.append(fresh)
    return claims


def clicks_claim(replay: Replay) -> Claim | None:
    """With ``--hit-to-click``: the Stage-3 headline strategy's extra hits over the Stage-1
    comparator (online-ranker when it was replayed, else the best Stage-2 strategy) as
    expected clicks per 1,000 requests with a truth, stated as the user's assumption. None
    without it."""
    rate = replay.ctx.options.hit_to_click
    s1 = replay.headline(1)
    best = replay.headline(3) or replay.headline(2)
    if rate is None or s1 is None or best is None or replay.k is None:
        return None
    found = replay.difference(best, s1)
    if found is None:
        return None
    delta, bounds, cannot_tell = found
    factor = 1000 * rate
    parts: list[Part] = [
        "Assuming ",
        replay.ctx.option("hit_to_click", "percent"),
        " of hits@",
        replay.k,
        " become clicks (your --hit-to-click, not measured here), ",
        Label(best),
        " would bring ",
        scaled(delta, factor, "tenths"),
        " more clicks per 1,000 requests with a truth than ",
        Label(s1),
    ]
    if bounds is not None:
        low, high = bounds
        parts += [
            " (95% CI ",
            scaled(low, factor, "tenths"),
            " to ",
            scaled(high, factor, "tenths"),
        ]
        parts.append("; the interval includes zero)" if cannot_tell else ")")
    parts.append(".")
    return Claim("Business translation", parts, cannot_tell=cannot_tell, weak=True)


def _slice_value(replay: Replay, slice_name: str, strategy: str, key: str = "hr") -> Num | None:
    if replay.sim is None:
        return None
    for index, row in enumerate(replay.sim.doc.get("slices") or []):
        if row.get("slice") == slice_name and row.get("strategy") == strategy:
            fmt = "count" if key == "requests" else "rate"
            return replay.ctx.num(replay.sim, ("slices", index, key), fmt)
    return None


def _slice_interval(replay: Replay, slice_name: str, strategy: str) -> tuple[Num, Num] | None:
    if replay.sim is None:
        return None
    for index, row in enumerate(replay.sim.doc.get("slices") or []):
        if row.get("slice") == slice_name and row.get("strategy") == strategy:
            low = replay.ctx.num(replay.sim, ("slices", index, "hr_ci", 0), "rate")
            high = replay.ctx.num(replay.sim, ("slices", index, "hr_ci", 1), "rate")
            return (low, high) if low is not None and high is not None else None
    return None


def _streaming_claim(replay: Replay) -> Claim | None:
    ranker, ablated = "online-ranker", "online-ranker-no-streaming"
    if ranker not in replay.strategies or ablated not in replay.strategies:
        return None
    change = replay.difference(ranker, ablated)
    if change is None:
        return None
    delta, bounds, cannot_tell = change
    parts: list[Part] = [
        "Streaming features (",
        Label(ranker),
        " vs ",
        Label(ablated),
        ") add ",
        delta,
    ]
    if bounds is not None:
        parts += [" overall (", *_interval_parts(bounds), ")"]
        if cannot_tell:
            parts.append(": the data cannot tell")
    else:
        parts += [f" overall ({NO_INTERVAL})"]
    with_slice = _slice_value(replay, "trending", ranker), _slice_value(replay, "trending", ablated)
    n = _slice_value(replay, "trending", ranker, "requests")
    if with_slice[0] is not None and with_slice[1] is not None and n is not None:
        parts += [
            "; for trending items ",
            diff(with_slice[0], with_slice[1]),
            " (",
            n,
            " requests; no interval: RESULTS does not mark slices)",
        ]
    parts.append(".")
    return Claim("Stage 2 → 3", parts, cannot_tell=cannot_tell)


def freshness_points(replay: Replay) -> list[tuple[str, float]]:
    """(strategy, freshness in seconds) of the ranker at each lag the replay served."""
    rankers = replay.info.get("rankers") or {}
    points = []
    for name in replay.strategies:
        if name != "online-ranker" and not name.startswith("online-ranker@"):
            continue
        lag = (rankers.get(name) or {}).get("freshness_s")
        if lag is None and name.startswith("online-ranker@"):
            from rtml_cli.timeutil import parse_duration

            lag = parse_duration(name.partition("@")[2]).total_seconds()
        if lag is None and name == "online-ranker":
            lag = replay.info.get("freshness_s")
        if lag is not None:
            points.append((name, float(lag)))
    return sorted(points, key=lambda p: p[1])


def _freshness_claim(replay: Replay) -> Claim | None:
    points = freshness_points(replay)
    if len(points) < 2:
        return None
    (fresh, fresh_s), (stale, stale_s) = points[0], points[-1]
    change = replay.difference(fresh, stale)
    if change is None:
        return None
    delta, bounds, cannot_tell = change
    parts: list[Part] = [
        "Streaming features ",
        Label(_lag_text(fresh_s)),
        " old instead of ",
        Label(_lag_text(stale_s)),
        " change HR by ",
        delta,
    ]
    if bounds is not None:
        parts += [" (", *_interval_parts(bounds), ")"]
        if cannot_tell:
            parts.append(": the data cannot tell")
    else:
        parts.append(f" ({NO_INTERVAL})")
    parts.append(".")
    return Claim("Stage 2 → 3", parts, cannot_tell=cannot_tell)


def _lag_text(seconds: float) -> str:
    from datetime import timedelta

    from rtml_cli.timeutil import format_duration

    return format_duration(timedelta(seconds=seconds)) if seconds else "0s"


def latency_claim(replay: Replay) -> Claim | None:
    rows = []
    for stage in (1, 2, 3):
        name = replay.headline(stage)
        p99 = replay.latency(name, 99) if name else None
        if name and p99 is not None:
            rows.append((name, p99))
    if not rows:
        return None
    name, p99 = max(rows, key=lambda r: r[1].value)
    budget = replay.ctx.option("budget_ms", "ms")
    within = p99.value <= budget.value
    parts: list[Part] = [
        "The slowest headline strategy, ",
        Label(name),
        ", answers 99% of requests within ",
        p99,
    ]
    bounds = replay.latency_interval(name, 99)
    if bounds is not None:
        parts += [" (", *_interval_parts(bounds), ")"]
    parts += [
        " in process, ",
        "within" if within else "over",
        " the budget of ",
        budget,
        " for the whole request (network and feature lookups not included).",
    ]
    return Claim("Latency", parts, weak=not within)


# ------------------------------------------------------------------------------ sections
def replay_sections(ctx: Context) -> tuple[list[Claim], list[Section]]:
    """The verdict's replay claims and the Stage 1 → 2 → 3 sections."""
    if ctx.inputs.one("simulate") is None and ctx.inputs.results is None:
        return [], [Section("stages", "Stage 1 → 2 → 3", [Para(HOW_TO_REPLAY, "missing")])]
    replay = Replay(ctx)
    claims = [*stage2_claims(replay), *stage3_claims(replay)]
    for extra in (clicks_claim(replay), latency_claim(replay)):
        if extra is not None:
            claims.append(extra)
    sections = [
        _stages_section(replay),
        _latency_section(replay),
        _freshness_section(replay),
        _ablation_section(replay),
    ]
    return claims, sections


def _fmt_ci(value: Num | None, bounds) -> str:
    if value is None:
        return "–"
    if bounds is None:
        return value.text
    return f"{value.text} ({bounds[0].text}–{bounds[1].text})"


def _stages_section(replay: Replay) -> Section:
    ctx = replay.ctx
    k = replay.k.text if replay.k else "K"
    protocol = replay.protocol or "unknown"
    intro = (
        f"Replay protocol: **{protocol}** — HR@{k} is the share of requests whose truth (the "
        f"item {'the visitor viewed next' if protocol == 'next-item' else 'the visitor viewed next that the session had not seen'}) "
        f"is in the list of {k}; MRR and NDCG weigh it by its rank. Every figure counts only "
        "the requests that have a truth; the column 'with truth' is its denominator. "
        + _intervals_text(replay)
    )
    blocks: list[Any] = [Para(intro)]
    served = _baseline_para(replay)
    if served is not None:
        blocks.append(served)
    rows, chart_rows = [], []
    for name in replay.strategies:
        hr = replay.value(name)
        bounds = replay.rate_interval(name)
        n, total = replay.value(name, "requests_with_truth"), replay.value(name, "requests")
        rows.append(
            [
                name,
                str(stage_of(name) or "–"),
                _fmt_ci(hr, bounds),
                _text(replay.value(name, "mrr")),
                _text(replay.value(name, "ndcg")),
                _text(n),
                _text(total),
            ]
        )
        if hr is not None:
            chart_rows.append((name, hr.value, bounds))
    blocks.append(
        Table(
            f"Accuracy per strategy (HR@{k} {replay.target})",
            ["strategy", "stage", f"HR@{k} (95% CI)", "MRR", "NDCG", "with truth", "requests"],
            rows,
            numeric=[False, False, True, True, True, True, True],
        )
    )
    if chart_rows:
        blocks.append(
            ctx.chart(
                "stages",
                f"HR@{k} per strategy",
                f"HR@{k} {replay.target} per strategy with 95% intervals: "
                + "; ".join(f"{n} {v:.3f}" for n, v, _ in chart_rows),
                lambda: _points_figure(
                    chart_rows, f"HR@{k} {replay.target} (share of requests with a truth)"
                ),
            )
        )
    blocks += _segment_blocks(replay, k)
    blocks += _slice_blocks(replay, k)
    return Section("stages", "Stage 1 → 2 → 3", blocks)


def _baseline_para(replay: Replay) -> Para | None:
    """Whom the team's lists (``baseline``) served: their own list, the team's fallback list
    or rtml's popularity list, and the list rows naming items the log does not know."""
    stats = (replay.info.get("rankers") or {}).get("baseline") or {}
    served = stats.get("served_from")
    if not served:
        return None
    text = (
        f"`baseline` is your team's own lists (--baseline-recs), served as of each request: "
        f"{served.get('own', 0):,} requests got the visitor's own list, "
        f"{served.get('fallback', 0):,} your fallback list and {served.get('popular', 0):,} "
        f"the popularity list (no list and no fallback); {stats.get('users_with_lists', 0):,} "
        f"visitors have lists, and {stats.get('unknown_item_rows', 0):,} of the "
        f"{stats.get('rows', 0):,} list rows name items the log does not know (left out)."
    )
    return Para(text)


def _intervals_text(replay: Replay) -> str:
    ctx = replay.ctx
    given = replay.info.get("intervals")
    computed = (
        "figures the simulate document has no interval for get one from a session bootstrap "
        f"of RESULTS ({ctx.options.bootstrap:,} replicates, seed {ctx.options.seed})."
        if ctx.bootstrap
        else "figures without one in the simulate document have none (no RESULTS given)."
    )
    if given:
        return f"Intervals: {given}; {computed}"
    return f"Intervals: {computed}"


def _text(value: Num | None) -> str:
    return value.text if value is not None else "–"


def _segment_blocks(replay: Replay, k: str) -> list[Any]:
    rows = []
    for name in replay.strategies:
        if is_variant(name):
            continue
        cells = [name]
        for segment in SEGMENTS:
            hr = replay.value(name, segment=segment)
            n = replay.value(name, "requests_with_truth", segment)
            cells.append(
                f"{_fmt_ci(hr, replay.rate_interval(name, 'hr', segment))} of {_text(n)}"
                if hr is not None
                else "–"
            )
        rows.append(cells)
    if not rows:
        return []
    return [
        Table(
            f"HR@{k} by visitor segment (95% CI) of the requests with a truth",
            ["strategy", *SEGMENTS],
            rows,
            note="anonymous: no user id; new: first seen after the batch run's as-of; "
            "returning: seen before it.",
            numeric=[False, True, True, True],
        )
    ]


def _slice_blocks(replay: Replay, k: str) -> list[Any]:
    slices = (replay.sim.doc.get("slices") or []) if replay.sim else []
    if not slices:
        return [
            Para(
                "Slices (trending items, the world's bursts) are in the simulate document: "
                "pass `rtml simulate … --format json`.",
                "missing",
            )
        ]
    names = list(dict.fromkeys(r["slice"] for r in slices))
    rows = []
    for strategy in dict.fromkeys(r["strategy"] for r in slices):
        cells = [strategy]
        for name in names:
            hr = _slice_value(replay, name, strategy)
            n = _slice_value(replay, name, strategy, "requests")
            ci = _slice_interval(replay, name, strategy)
            cells.append(f"{_fmt_ci(hr, ci)} of {_text(n)}" if hr is not None else "–")
        rows.append(cells)
    notes = replay.info.get("slices") or {}
    note = " ".join(f"{name}: {text}." for name, text in notes.items())
    return [
        Table(
            f"HR@{k} by slice (95% CI where the simulate document has it), of the requests in "
            "the slice",
            ["strategy", *names],
            rows,
            note=note,
            numeric=[False, *[True] * len(names)],
        )
    ]


def _points_figure(rows, xlabel: str, *, log: bool = False, budget: float | None = None):
    from rtml_cli import plotting

    fig, ax = plotting.figure(width=7.0, height=0.6 + 0.34 * len(rows))
    plotting.points(
        ax,
        [r[0] for r in rows],
        [r[1] for r in rows],
        [r[2][0].value if r[2] else None for r in rows],
        [r[2][1].value if r[2] else None for r in rows],
        horizontal=True,
    )
    if budget is not None:
        plotting.reference_line(ax, budget, "latency budget", vertical=True)
        ax.legend(loc="lower right")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    return fig


def _latency_section(replay: Replay) -> Section:
    ctx = replay.ctx
    budget = ctx.options.budget_ms
    rows, chart_rows = [], []
    for name in replay.strategies:
        values = {q: replay.latency(name, q) for q in (50, 95, 99)}
        if values[99] is None:
            continue
        bounds = replay.latency_interval(name, 99)
        cells = {q: f"{v.value:.3g}" if v is not None else "–" for q, v in values.items()}
        if bounds is not None:
            cells[99] += f" ({bounds[0].value:.3g}–{bounds[1].value:.3g})"
        rows.append(
            [name, cells[50], cells[95], cells[99], "yes" if values[99].value <= budget else "NO"]
        )
        chart_rows.append((name, values[99].value, bounds))
    if not rows:
        return Section(
            "latency",
            "Latency against the budget",
            [
                Para(
                    "No latency figures: RESULTS without latency_us and no simulate document.",
                    "missing",
                )
            ],
        )
    blocks: list[Any] = [
        Para(
            f"Budget: {budget:g} ms for the whole request (`rtml report --budget-ms`). The "
            "figures are measured in process on one core, without network or feature-store "
            "lookups: what remains of the budget is for those."
        ),
        Table(
            "Latency per strategy (milliseconds)",
            ["strategy", "p50", "p95", "p99 (95% CI)", "p99 within budget"],
            rows,
            numeric=[False, True, True, True, False],
        ),
        ctx.chart(
            "latency",
            "p99 latency per strategy against the budget",
            f"p99 latency per strategy on a log scale against the {budget:g} ms budget: "
            + "; ".join(f"{n} {v:.3g} ms" for n, v, _ in chart_rows),
            lambda: _points_figure(
                chart_rows, "p99 latency (ms, log scale)", log=True, budget=budget
            ),
        ),
    ]
    return Section("latency", "Latency against the budget", blocks)


def _freshness_section(replay: Replay) -> Section:
    ctx = replay.ctx
    points = freshness_points(replay)
    if len(points) < 2:
        return Section(
            "freshness",
            "Freshness of streaming features",
            [
                Para(
                    "No freshness sweep: run `rtml simulate … --freshness-sweep 0s,5m,1h` (the "
                    "online ranker at each lag).",
                    "missing",
                )
            ],
        )
    k = replay.k.text if replay.k else "K"
    rows: list[list[str]] = []
    xs: list[int] = []
    ys: list[float | None] = []
    lows: list[float | None] = []
    highs: list[float | None] = []
    trend: list[float | None] = []
    trend_low: list[float | None] = []
    trend_high: list[float | None] = []
    for name, lag in points:
        hr = replay.value(name)
        bounds = replay.rate_interval(name)
        sliced = _slice_value(replay, "trending", name)
        rows.append([name, _lag_text(lag), _fmt_ci(hr, bounds), _text(sliced)])
        xs.append(len(xs))
        ys.append(hr.value if hr else None)
        lows.append(bounds[0].value if bounds else None)
        highs.append(bounds[1].value if bounds else None)
        trend.append(sliced.value if sliced else None)
        band = _slice_interval(replay, "trending", name)
        trend_low.append(band[0].value if band else None)
        trend_high.append(band[1].value if band else None)

    def make():
        from rtml_cli import plotting

        fig, ax = plotting.figure(width=7.0, height=3.4)
        series = [plotting.Series("all requests (95% CI)", xs, ys, lows, highs)]
        if any(t is not None for t in trend):
            has_band = any(v is not None for v in trend_low)
            series.append(
                plotting.Series(
                    "trending items" + (" (95% CI)" if has_band else " (no interval)"),
                    xs,
                    trend,
                    trend_low if has_band else None,
                    trend_high if has_band else None,
                )
            )
        plotting.lines(ax, series)
        ax.set_xticks(xs, [r[1] for r in rows])
        ax.set_xlabel("freshness lag of streaming features (s, m, h; in order, not to scale)")
        ax.set_ylabel(f"HR@{k} (share of requests)")
        ax.legend(loc="best")
        return fig

    return Section(
        "freshness",
        "Freshness of streaming features",
        [
            Table(
                f"The online ranker at each freshness lag (HR@{k}, 95% CI)",
                ["strategy", "lag", f"HR@{k} (95% CI)", "HR trending"],
                rows,
                numeric=[False, False, True, True],
            ),
            ctx.chart(
                "freshness",
                "HR against the freshness lag",
                f"Line plot of HR@{k} against the freshness lag of streaming features: "
                + "; ".join(f"{r[1]} {r[2]}" for r in rows),
                make,
            ),
        ],
    )


def _ablation_section(replay: Replay) -> Section:
    from rtml_cli.online.strategies import ABLATIONS

    ctx = replay.ctx
    ablations = [a for a in ABLATIONS if a in replay.strategies]
    if "online-ranker" not in replay.strategies or not ablations:
        return Section(
            "ablation",
            "What each feature family buys",
            [Para("No ablation: run `rtml simulate … --ablation`.", "missing")],
        )
    rows, labels, values, lows, highs = [], [], [], [], []
    for name in ablations:
        found = replay.difference("online-ranker", name)
        if found is None:
            continue
        delta, bounds, cannot_tell = found
        family = name.removeprefix("online-ranker-no-")
        rows.append([family, _fmt_ci(delta, bounds), "the data cannot tell" if cannot_tell else ""])
        labels.append(f"{family} features")
        values.append(delta.value)
        lows.append(bounds[0].value if bounds else None)
        highs.append(bounds[1].value if bounds else None)
    k = replay.k.text if replay.k else "K"

    def make():
        from rtml_cli import plotting

        fig, ax = plotting.figure(width=7.0, height=0.8 + 0.45 * len(labels))
        plotting.bars(ax, labels, values, lows, highs)
        ax.set_xlabel(f"HR@{k} the ranker loses without the family (difference, 95% CI)")
        return fig

    return Section(
        "ablation",
        "What each feature family buys",
        [
            Para(
                "Each row is the online ranker minus the ranker without one feature family, "
                "on the same requests (paired bootstrap)."
            ),
            Table(
                f"HR@{k} the online ranker gains from each feature family",
                ["family", "HR change (95% CI)", ""],
                rows,
                numeric=[False, True, False],
            ),
            ctx.chart(
                "ablation",
                "What each feature family adds",
                "Bar chart of the HR the ranker gains from each feature family: "
                + "; ".join(f"{r[0]} {r[1]}" for r in rows),
                make,
            ),
        ],
    )


def replay_data(replay_ctx: Context) -> list[Any]:
    """The data section's lines about the replay window (from the simulate document)."""
    sim = replay_ctx.inputs.one("simulate")
    if sim is None:
        results = replay_ctx.inputs.results
        if results is None:
            return []
        return [
            Para(
                f"RESULTS {results.path.name}: {results.requests:,} requests, "
                f"{results.frame['session_id'].n_unique():,} sessions, "
                f"{len(results.strategies)} strategies, protocol {results.protocol}, K {results.k}."
            )
        ]
    info = sim.doc.get("info") or {}
    rows = [
        [
            "window",
            f"{info.get('window_start')} to {info.get('window_end')} (as-of {info.get('as_of')})",
        ],
        ["protocol", str(info.get("protocol"))],
        ["requests", _count(info.get("requests"))],
        ["requests without a truth", _count(info.get("requests_without_truth"))],
        [
            "requests whose truth is unknown to the artifacts",
            _count(info.get("requests_with_unknown_truth")),
        ],
        ["sessions in the window", _count(info.get("sessions_in_window"))],
        ["events in the window", _count(info.get("events_in_window"))],
        ["items unknown to the artifacts", _count(info.get("unknown_items"))],
        ["events on unknown items", _count(info.get("unknown_item_events"))],
    ]
    blocks: list[Any] = [Table("What was replayed", ["", ""], rows, numeric=[False, True])]
    for warning in info.get("warnings") or []:
        blocks.append(Para(f"simulate: {warning}", "warning"))
    return blocks


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) else ("–" if value is None else str(value))
