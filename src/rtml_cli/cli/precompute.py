"""`rtml precompute` (the Stage-1 batch job) and `rtml neighbors` (inspect its embeddings)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.cli.options import FormatOption, ItemsOption, QuietOption, SeedOption
from rtml_cli.output import OutputFormat


def precompute_cmd(
    events: Annotated[
        str, typer.Argument(help="Events: a Parquet file, a glob or a directory of partitions.")
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Artifacts ROOT (runs/ and the latest link).")
    ],
    items: ItemsOption = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="Use only events strictly before this time (ISO 8601)."),
    ] = None,
    dim: Annotated[
        int | None, typer.Option("--dim", help="Embedding dimension (default 64).")
    ] = None,
    trees: Annotated[int, typer.Option("--trees", help="Annoy trees.")] = 50,
    top_k: Annotated[int, typer.Option("--top-k", help="Stage-1 recommendations per user.")] = 50,
    neighbors: Annotated[
        int, typer.Option("--neighbors", help="Item-item CF neighbours kept per item.")
    ] = 50,
    window: Annotated[
        int | None,
        typer.Option("--window", help="Co-occurrence window in session steps (default 5)."),
    ] = None,
    half_life: Annotated[
        str | None,
        typer.Option("--half-life", help="Decay of co-occurrence weights (default 30d)."),
    ] = None,
    warm_start: Annotated[
        Path | None,
        typer.Option(
            "--warm-start",
            help="Continue from this run (or ROOT) using only events since its as-of.",
        ),
    ] = None,
    full_every: Annotated[
        int,
        typer.Option(
            "--full-every",
            help="With --warm-start: publish a delta run (changed users and item tables; "
            "the rest read from its base run), and every Nth run counting the base a "
            "compacted self-contained one. 1: never a delta.",
        ),
    ] = 7,
    rebuild_threshold: Annotated[
        float,
        typer.Option(
            "--rebuild-threshold",
            help="A delta run rebuilds the Annoy index only when the embeddings moved more "
            "than this mean cosine distance since the index was built.",
        ),
    ] = 0.05,
    keep: Annotated[
        int | None,
        typer.Option("--keep", help="Keep the N newest runs (never latest, nor their bases)."),
    ] = None,
    seed: SeedOption = 0,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even if an identical run exists.")
    ] = False,
    max_staleness: Annotated[
        str | None,
        typer.Option(
            "--max-staleness",
            help="Exit 76 without publishing when the newest event is older than this "
            "(e.g. 26h): a stopped feed is noticed, not republished.",
        ),
    ] = None,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Build batch features, item embeddings, an Annoy index and Stage-1 recommendations.

    Writes ROOT/runs/<as-of>/ and switches ROOT/latest to it atomically; safe from cron
    (a lock on ROOT, nothing half-published, reruns are no-ops).
    """
    from rtml_cli.batch.precompute import STEPS, move_line, run_precompute
    from rtml_cli.output import finish, info, progress
    from rtml_cli.timeutil import parse_duration, parse_timestamp

    as_of_ts = parse_timestamp(as_of) if as_of is not None else None
    half = parse_duration(half_life) if half_life is not None else None
    with progress(quiet or fmt is not OutputFormat.table, transient=True) as bar:
        task = bar.add_task("precompute", total=len(STEPS))
        state: dict[str, str | None] = {"last": None}

        def on_step(step: str, done: int, total: int) -> None:
            if state["last"] is not None and not quiet and fmt is OutputFormat.table:
                bar.console.print(f"  done: {state['last']}", highlight=False)
            state["last"] = step if step != "done" else None
            bar.update(task, completed=done, description=step)

        result = run_precompute(
            events,
            out,
            items=items,
            as_of=as_of_ts,
            dim=dim,
            n_trees=trees,
            top_k=top_k,
            n_neighbors=neighbors,
            window=window,
            half_life=half,
            warm_start=warm_start,
            keep=keep,
            seed=seed,
            force=force,
            progress=on_step,
            max_staleness=parse_duration(max_staleness) if max_staleness else None,
            full_every=full_every,
            rebuild_threshold=rebuild_threshold,
        )
    move = result.manifest.get("index", {}).get("move")
    if move and not result.skipped:
        info(move_line(result.manifest["index"]), quiet=quiet)
    finish(result.summary, fmt, lambda: _render(result), kind="precompute", quiet=quiet)


def _render(result) -> None:
    from rtml_cli.output import info, make_table, print_tables

    if result.skipped:
        info(
            f"run {result.run_id} already exists with the same inputs and parameters: "
            "nothing to do (use --force to rebuild)"
        )
    manifest = result.manifest
    rows = manifest.get("rows", {})
    index = manifest.get("index", {})
    summary = make_table(
        f"precompute {result.run_id} ({result.mode}{', skipped' if result.skipped else ''})",
        ["what", "value"],
        [
            ("run directory", str(result.run_dir)),
            ("as of", result.as_of.isoformat()),
            ("events used", rows.get("events_before_as_of")),
            ("events read for the model", rows.get("events_read_for_model")),
            ("items", rows.get("items")),
            ("known users", rows.get("users")),
            ("co-occurrence pairs (nnz)", rows.get("cooccurrence_nnz")),
            ("Annoy recall@10 vs exact", index.get("recall_at_10")),
            ("Annoy trees / bytes", f"{index.get('n_trees')} / {index.get('bytes')}"),
            ("Annoy index built by", index.get("built_by", result.run_id)),
            (
                "delta of (chain length)",
                f"{delta['base']} ({delta['chain']})" if (delta := manifest.get("delta")) else "–",
            ),
            ("latest switched to this run", result.published),
            ("pruned runs", ", ".join(result.pruned) or "–"),
            ("wall time (s)", round(result.seconds, 2)),
        ],
    )
    steps = make_table(
        "steps",
        ["step", "seconds", "peak RSS (MB)"],
        [(s["step"], s["seconds"], s["peak_rss_mb"]) for s in result.steps],
    )
    print_tables(summary, steps)


def neighbors_cmd(
    item: Annotated[str, typer.Argument(help="The item id to look up.")],
    artifacts: Annotated[
        Path,
        typer.Option("--artifacts", "-a", help="Precompute ROOT or run directory."),
    ],
    # not options.KOption: K here is how many neighbours to show, not a list length for HR@K
    k: Annotated[int, typer.Option("--k", "-k", help="How many neighbours.")] = 10,
    method: Annotated[
        str,
        typer.Option(
            "--by", help="embedding: Annoy over the item embeddings; cf: item-item co-occurrence."
        ),
    ] = "embedding",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Print an item's nearest items, with category and title when the catalogue has them."""
    from rtml_cli.batch.neighbors import nearest_items
    from rtml_cli.output import Rows, finish, make_table, print_tables

    result = nearest_items(artifacts, item, k=k, method=method)

    def render() -> None:
        query = result["item"]
        rows = [
            (r["rank"], str(r["item_id"]), r["score"], r["category"], r["title"])
            for r in result["neighbors"]
        ]
        print_tables(
            make_table(
                f"nearest to {query['item_id']} ({query['category'] or 'no category'}"
                f"{', ' + query['title'] if query['title'] else ''}) by {method}",
                ["rank", "item_id", "similarity", "category", "title"],
                rows,
            )
        )

    finish(result, fmt, render, kind="neighbors", rows=Rows(tables=("neighbors",)))


def register(app: typer.Typer) -> None:
    app.command("precompute", rich_help_panel="Stage 1: batch prediction")(precompute_cmd)
    app.command("neighbors", rich_help_panel="Stage 1: batch prediction")(neighbors_cmd)
