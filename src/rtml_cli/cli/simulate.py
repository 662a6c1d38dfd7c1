"""`rtml simulate`: replay session logs to measure what online prediction buys over batch."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from rtml_cli.cli.options import (
    AddressOption,
    BaselineRecsOption,
    EndOption,
    EngineOption,
    FormatOption,
    KOption,
    QuietOption,
    SeedOption,
    ShardsOption,
    StartOption,
    StrategyModuleOption,
    WorldOption,
)
from rtml_cli.online.strategies import DEFAULT_STRATEGIES, REGISTRY
from rtml_cli.output import OutputFormat


class Ann(str, Enum):
    annoy = "annoy"
    ivf = "ivf"


class Protocol(str, Enum):
    next_unseen = "next-unseen"
    next_item = "next-item"


def simulate_cmd(
    events: Annotated[
        str, typer.Argument(help="Event log: a Parquet file, a glob or a directory.")
    ],
    artifacts: Annotated[
        Path,
        typer.Option(
            "--artifacts", "-a", help="Precompute ROOT (its latest run) or one run directory."
        ),
    ],
    strategies: Annotated[
        str,
        typer.Option(
            "--strategies",
            "-s",
            help="Comma-separated strategy names; 'name@5m' sets a streaming strategy's "
            f"freshness. One of: {', '.join(REGISTRY.names())}, or a plug-in's.",
        ),
    ] = ",".join(DEFAULT_STRATEGIES),
    strategy_module: StrategyModuleOption = None,
    k: KOption = 20,
    start: StartOption = None,
    end: EndOption = None,
    freshness: Annotated[
        str,
        typer.Option(
            "--freshness", help="Lag before streaming features are visible: 0s, 60s, 5m, 1h…"
        ),
    ] = "60s",
    candidates: Annotated[
        int, typer.Option("--candidates", help="Candidates per generator for online-ranker.")
    ] = 500,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard", help="Serve only shard i/n of the sessions (CRC-32 of session_id)."
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the per-request RESULTS Parquet here."),
    ] = None,
    seed: SeedOption = 0,
    decay: Annotated[
        float,
        typer.Option("--decay", help="Per-step weight decay of older session items (0, 1]."),
    ] = 0.7,
    ablation: Annotated[
        bool,
        typer.Option(
            "--ablation",
            help="Add online-ranker without each feature family (batch, realtime, streaming).",
        ),
    ] = False,
    freshness_sweep: Annotated[
        str | None,
        typer.Option(
            "--freshness-sweep",
            help="Add online-ranker at each of these freshness lags, e.g. 0s,60s,5m,1h.",
        ),
    ] = None,
    search_k: Annotated[
        int,
        typer.Option(
            "--search-k",
            help="Annoy search_k of session-embedding (-1: n × trees; lower is faster, less exact).",
        ),
    ] = -1,
    ann: Annotated[
        Ann,
        typer.Option(
            "--ann",
            case_sensitive=False,
            help="Nearest-neighbour search of session-embedding and online-ranker: annoy (the "
            "published index, one query per request) or ivf (an in-memory IVF over the same "
            "embeddings, built at start; both then serve micro-batches, one search each; "
            "recall vs exact in bench/RESULTS.md).",
        ),
    ] = Ann.annoy,
    nprobe: Annotated[
        int,
        typer.Option("--nprobe", help="Lists the ivf search probes (more: slower, more exact)."),
    ] = 2,
    micro_batch: Annotated[
        int,
        typer.Option(
            "--micro-batch",
            help="Consecutive requests a batching strategy serves per call (with --ann ivf); its "
            "latency is the call's time divided by the batch. Lists do not depend on it.",
        ),
    ] = 256,
    train_window: Annotated[
        str,
        typer.Option("--train-window", help="Window before the as-of the ranker is trained on."),
    ] = "7d",
    protocol: Annotated[
        Protocol,
        typer.Option(
            "--protocol",
            case_sensitive=False,
            help="next-unseen: lists never hold an item the session has seen, the truth is "
            "the first later unseen item; next-item: the truth is the next event's item, "
            "re-views included (as in published session-based benchmarks).",
        ),
    ] = Protocol.next_unseen,
    sample: Annotated[
        str | None,
        typer.Option(
            "--sample",
            help="Replay a deterministic hash sample of the sessions: a share (10%) or a "
            "number of sessions (5000); the streaming state still counts every event.",
        ),
    ] = None,
    baseline_recs: BaselineRecsOption = None,
    bootstrap: Annotated[
        int,
        typer.Option(
            "--bootstrap",
            help="Session-bootstrap replicates behind every 95% interval (0: no intervals).",
        ),
    ] = 1000,
    world: WorldOption = None,
    engine: EngineOption = "local",
    address: AddressOption = None,
    shards: ShardsOption = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Replay sessions after the artifacts' as-of and serve each request with every strategy.

    Reports HR@K, MRR@K, NDCG@K, coverage and latency per strategy, overall and by
    visitor segment (anonymous / new / returning); --out writes one row per request and
    strategy for `rtml evaluate`. The window is [--start, --end) (--from/--to also work),
    from the artifacts' as-of to the end of the log by default. --seed seeds the ranker's
    training sample. --world (default: the world.json next to EVENTS, if any) adds the
    ground-truth burst slice. --engine ray runs the replay as --shards tasks on a Ray cluster
    (--address; default: a local Ray instance), with the same results.
    """
    from rtml_cli.data.world import find_world
    from rtml_cli.online import write_results
    from rtml_cli.online.distributed import check_engine_options
    from rtml_cli.online.plugins import load_strategies
    from rtml_cli.online.replay import parse_shard
    from rtml_cli.online.strategies import expand_names
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    lag = parse_duration(freshness)
    names = expand_names(
        strategies, ablation=ablation, freshness_sweep=freshness_sweep, freshness=lag
    )
    check_engine_options(engine, address, shards)
    load_strategies(names, strategy_module or [])  # plug-ins, checked before any work
    shard_spec = parse_shard(shard)
    if out is not None:
        from rtml_cli.fsutil import PARQUET_OUTPUT, check_output

        check_output(out, PARQUET_OUTPUT, option="--out")
    window = dict(
        start=parse_timestamp(start) if start else None,
        end=parse_timestamp(end) if end else None,
    )
    result = _run(
        events,
        artifacts,
        names,
        show=fmt is OutputFormat.table and not quiet,
        engine=(engine, address, shards, strategy_module or []),
        k=k,
        freshness=lag,
        n_candidates=candidates,
        shard=shard_spec,
        seed=seed,
        decay=decay,
        search_k=search_k,
        ann=ann.value,
        nprobe=nprobe,
        micro_batch=micro_batch,
        train_window=parse_duration(train_window),
        protocol=protocol.value,
        sample=sample,
        bootstrap=bootstrap,
        baseline_recs=baseline_recs,
        # an explicit --world is read (and checked: it must have bursts) by simulate
        world=world if world is not None else find_world(events),
        **window,
    )
    from rtml_cli.output import Rows, finish, warn

    for message in result.info["warnings"]:
        warn(message)
    if out is not None:
        write_results(result.frame, out, result.info)
    doc = result.to_dict()
    doc["results"] = str(out) if out is not None else None
    finish(
        doc,
        fmt,
        lambda: _render(result, out),
        kind="simulate",
        rows=Rows(tables=("summary", "slices")),
        quiet=quiet,
    )


def _run(
    events: str,
    artifacts: Path,
    names: list[str],
    *,
    show: bool,
    engine: tuple[str, str | None, int | None, list[Path]],
    **options: Any,
) -> Any:
    """``simulate``, with a progress bar on stderr when ``show``; sharded (``--engine``,
    ``--shards``) by ``online.distributed``, with a line per finished shard."""
    name, address, shards, modules = engine
    if name != "local" or shards is not None:
        return _run_sharded(events, artifacts, names, show, name, address, shards, modules, options)
    from rtml_cli.online import simulate
    from rtml_cli.online.engine import check_options
    from rtml_cli.online.strategies import trains
    from rtml_cli.output import info

    check_options(names, **options)
    if show and trains(names):
        info("training online-ranker on the window before the as-of…")
    with replay_progress(show) as progress:
        return simulate(events, artifacts, strategies=names, progress=progress, **options)


@contextlib.contextmanager
def replay_progress(show: bool) -> Iterator[Callable[[int, int], None] | None]:
    """A progress callback for ``simulate`` that draws requests done and requests/s on
    stderr (None when not ``show``); also used by ``rtml migrate``."""
    if not show:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    from rtml_cli.output import stderr_console

    with Progress(
        TextColumn("replaying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} requests/s"),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task("replay", total=None, rate="–")
        started = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if not started[0]:
                started[0] = now
            elapsed = now - started[0]
            rate = f"{done / elapsed:,.0f}" if elapsed > 0 else "–"
            bar.update(task, completed=done, total=total, rate=rate)

        yield progress


def _run_sharded(
    events: str,
    artifacts: Path,
    names: list[str],
    show: bool,
    engine: str,
    address: str | None,
    shards: int | None,
    modules: list[Path],
    options: dict[str, Any],
) -> Any:
    from rtml_cli.online.distributed import open_executor, simulate_sharded
    from rtml_cli.output import info

    def on_shard(done: int, total: int, requests: int, all_requests: int, seconds: float) -> None:
        rate = f"{requests / seconds:,.0f}" if seconds > 0 else "–"
        info(
            f"shards done: {done}/{total}; {requests:,} of {all_requests:,} requests, "
            f"{rate} requests/s",
            quiet=not show,
        )

    with open_executor(engine, address, shards) as executor:
        if show:
            info(f"replaying on {engine} in {shards or executor.workers()} shard(s)…")
        return simulate_sharded(
            events,
            artifacts,
            executor=executor,
            shards=shards,
            strategy_modules=modules,
            on_shard=on_shard,
            strategies=names,
            **options,
        )


def _ci(pair: list[float] | None, signed: bool = False) -> str:
    """A 95% interval as text, e.g. ``0.492–0.506`` (``–`` without one)."""
    if not pair:
        return "–"
    form = "{:+.3f}" if signed else "{:.3f}"
    return (
        f"{form.format(pair[0])} to {form.format(pair[1])}"
        if signed
        else (f"{form.format(pair[0])}–{form.format(pair[1])}")
    )


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _render(result: Any, out: Path | None) -> None:
    """The tables: all visitors, by segment, the slices, then ablation and freshness."""
    from rtml_cli.output import print_tables

    tables = [_overall_table(result, out), _segment_table(result)]
    if result.replicates and len(result.strategies) > 1:
        tables.append(_ranking_table(result))
    if result.slices:
        tables.append(_slices_table(result))
    tables += _comparison_tables(result)
    print_tables(*tables)


def _overall_table(result: Any, out: Path | None) -> Any:
    from rtml_cli.output import make_table

    info = result.info
    k = info["k"]
    columns = [
        "strategy",
        "requests",
        f"HR@{k}",
        "95% CI",
        f"MRR@{k}",
        f"NDCG@{k}",
        "HR later",
        "HR buy",
        "cover",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ]
    overall = [
        [
            r["strategy"],
            r["requests"],
            r["hr"],
            _ci(r.get("hr_ci")),
            r["mrr"],
            r["ndcg"],
            r["hr_later"],
            r["hr_purchase"],
            r["coverage"],
            _ms(r["latency_p50_ms"]),
            _ms(r["latency_p95_ms"]),
            _ms(r["latency_p99_ms"]),
        ]
        for r in result.summary
        if r["segment"] == "all"
    ]
    # a sampled replay's requests come from the sampled sessions, not every session
    sessions = info["sessions_served"] if info.get("sample") else info["sessions_in_window"]
    caption = (
        f"{info['requests']:,} requests from {sessions:,} sessions, "
        f"{info['window_start']} → {info['window_end'] or 'end of log'}; as-of {info['as_of']}; "
        f"freshness {info['freshness_s']:g}s"
        + (f"; shard {info['shard']}" if info["shard"] else "")
        + (
            f"; sample: {info['sample']}"
            + (" of the sessions" if str(info["sample"]).endswith("%") else "")
            + f" ({info['sessions_served']:,} of {info['sessions_in_window']:,} sessions, "
            f"{info['requests']:,} of {info['requests_before_sample']:,} requests)"
            if info.get("sample")
            else ""
        )
        + f"; {info['requests_per_second'] or 0:,.0f} requests/s.\n"
        + _denominators(result)
        + "; cover: share of the catalogue ever served"
    )
    if info["unknown_items"]:
        caption += (
            f"\n{info['unknown_items']:,} item(s) unknown to the artifacts "
            f"({info['unknown_item_events']:,} events, {info['requests_with_unknown_truth']:,} "
            "requests whose next item no strategy could serve)"
        )
    served = info["rankers"].get("baseline", {}).get("served_from")
    if served:
        stats = info["rankers"]["baseline"]
        caption += (
            f"\nbaseline (your lists): {served['own']:,} requests got the visitor's own list, "
            f"{served['fallback']:,} your fallback list, {served['popular']:,} the popularity "
            f"list; {stats['unknown_item_rows']:,} list rows name items the artifacts do not know"
        )
    if out is not None:
        caption += f"\nRESULTS: {out}"
    return make_table("simulate: all visitors", columns, overall, caption=caption, digits=3)


_PROTOCOL_TRUTH = {
    "next-unseen": ("the first later item the session has not seen", "an unseen item"),
    "next-item": ("the next event's item, re-views included", "any item"),
}


def _denominators(result: Any) -> str:
    """Every figure's denominator, in words (the overall table's footnote)."""
    info = result.info
    k = info["k"]
    first = next(r for r in result.summary if r["segment"] == "all")
    with_truth = first["requests_with_truth"]
    truth, bought = _PROTOCOL_TRUTH[info["protocol"]]
    text = (
        f"Protocol {info['protocol']}: the truth is {truth}. HR@{k}, MRR@{k}, NDCG@{k}, HR "
        f"later: over the {with_truth:,} requests that have one"
    )
    if first["requests_without_truth"]:
        text += (
            f" ({first['requests_without_truth']:,} have none: the session brings nothing new; "
            "not counted as misses)"
        )
    return text + (
        f"; HR buy: over the {first['purchase_requests']:,} requests followed by a cart or "
        f"purchase of {bought}"
    )


def _segment_table(result: Any) -> Any:
    from rich.text import Text

    from rtml_cli.output import make_table

    k = result.info["k"]
    rows = [r for r in result.summary if r["segment"] != "all" and r["requests"]]
    if rows and all(r["segment"] == "anonymous" for r in rows):
        return Text(
            "by visitor segment: every session is anonymous (the log has no user ids), so "
            "the table above is the anonymous segment"
        )
    seg_columns = ["strategy", "segment", "with truth", f"HR@{k}", f"MRR@{k}", f"NDCG@{k}"]
    seg_columns += ["HR buy", "cover", "p50 ms", "p99 ms"]
    by_segment = [
        [
            r["strategy"],
            r["segment"],
            r["requests_with_truth"],
            r["hr"],
            r["mrr"],
            r["ndcg"],
            r["hr_purchase"],
            r["coverage"],
            _ms(r["latency_p50_ms"]),
            _ms(r["latency_p99_ms"]),
        ]
        for r in rows
    ]
    caption = "with truth: the requests HR, MRR and NDCG are over (the denominator)"
    return make_table(
        "by visitor segment", seg_columns, by_segment, caption=caption, digits=3, key_columns=2
    )


def _ranking_table(result: Any) -> Any:
    """Each strategy against the one ranked just below it, with the paired interval: is the
    ranking decided, or can the data not tell?"""
    from rtml_cli.output import make_table

    k = result.info["k"]
    ranked = sorted(
        (r for r in result.summary if r["segment"] == "all" and r["hr"] is not None),
        key=lambda r: -r["hr"],
    )
    rows = []
    for upper, lower in zip(ranked, ranked[1:], strict=False):
        ci = result.delta_ci(upper["strategy"], lower["strategy"])
        decided = ci is not None and (ci[0] > 0 or ci[1] < 0)
        rows.append(
            [
                upper["strategy"],
                lower["strategy"],
                upper["hr"] - lower["hr"],
                _ci(ci, signed=True),
                "yes" if decided else "cannot tell",
            ]
        )
    return make_table(
        f"ranking by HR@{k}: is each strategy ahead of the next?",
        ["strategy", "ahead of", "ΔHR", "95% CI", "decided"],
        rows,
        caption=f"paired intervals: {result.info['intervals']}",
        digits=3,
    )


def _slices_table(result: Any) -> Any:
    from rtml_cli.output import make_table

    info = result.info
    k = info["k"]
    slice_names = list(info.get("slices", {}))
    slice_cols = ["strategy"]
    for name in slice_names:
        slice_cols += [f"{name} requests", f"{name} HR@{k}", f"{name} MRR@{k}"]
    rows = []
    for name in result.strategies:
        row = [name]
        for slice_name in slice_names:
            r = result.slice_for(name, slice_name)
            row += [r["requests"], r["hr"], r["mrr"]]
        rows.append(row)
    notes = "; ".join(f"{name}: {text}" for name, text in info["slices"].items())
    return make_table("slices", slice_cols, rows, caption=notes, digits=3)


def _comparison_tables(result: Any) -> list[Any]:
    """The ablation and the freshness sweep against online-ranker, when the run has them."""
    from rtml_cli.output import make_table

    k = result.info["k"]
    doc = result.to_dict()
    slice_names = list(result.info.get("slices", {}))
    cmp_cols = ["strategy", f"HR@{k}", f"MRR@{k}", f"NDCG@{k}", "ΔHR", "ΔHR 95% CI", "ΔMRR"]
    for name in slice_names:
        cmp_cols += [f"HR {name}", f"ΔHR {name}"]
    tables = []
    for key, title in (
        ("ablation", "ablation: online-ranker without one feature family"),
        ("freshness", "freshness sweep: online-ranker with staler streaming features"),
    ):
        if key in doc:
            ref = result.summary_for("online-ranker")
            first = ["online-ranker", ref["hr"], ref["mrr"], ref["ndcg"], 0.0, "–", 0.0]
            for name in slice_names:
                mine = result.slice_for("online-ranker", name)
                first += [None if mine is None else mine["hr"], 0.0]
            rows = [first]
            for c in doc[key]:
                row = [c["strategy"], c["hr"], c["mrr"], c["ndcg"], c["hr_delta"]]
                row += [_ci(c.get("hr_delta_ci"), signed=True), c["mrr_delta"]]
                for name in slice_names:
                    row += [c.get(f"hr_{name}"), c.get(f"hr_{name}_delta")]
                rows.append(row)
            tables.append(make_table(title, cmp_cols, rows, digits=3))
    return tables


def register(app: typer.Typer) -> None:
    app.command("simulate", rich_help_panel="Stages 2-3: online prediction")(simulate_cmd)
