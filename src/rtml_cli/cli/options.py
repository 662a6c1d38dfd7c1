"""Command-line options shared by several commands, spelled and typed once.

Time windows are ``--start``/``--end`` everywhere (``--from``/``--to`` are accepted as
aliases, as ``rtml simulate`` spelled them first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.output import FormatOption, QuietOption

__all__ = [
    "split_words",
    "AddressOption",
    "BaselineRecsOption",
    "EndOption",
    "EngineOption",
    "EventMapOption",
    "FormatOption",
    "IgnoreEventsOption",
    "ItemsOption",
    "KOption",
    "MapOption",
    "PlotOption",
    "QuietOption",
    "SeedOption",
    "SessionGapOption",
    "ShardsOption",
    "StartOption",
    "StrategyModuleOption",
    "WorldOption",
]

SeedOption = Annotated[
    int,
    typer.Option(
        "--seed", min=0, help="Random seed: the same input and seed give the same output."
    ),
]
ItemsOption = Annotated[
    str | None,
    typer.Option("--items", help="Item catalogue Parquet (item_id, optional category, title)."),
]
WorldOption = Annotated[
    Path | None,
    typer.Option("--world", help="A sample world's world.json (default: beside the events)."),
]
KOption = Annotated[int, typer.Option("--k", "-k", help="List length K (HR@K, MRR@K, NDCG@K).")]
PlotOption = Annotated[
    Path | None, typer.Option("--plot", help="Also write a PNG chart here (needs matplotlib).")
]
StartOption = Annotated[
    str | None, typer.Option("--start", "--from", help="Start of the window (ISO 8601, UTC).")
]
EndOption = Annotated[
    str | None, typer.Option("--end", "--to", help="End of the window (ISO 8601, UTC).")
]
StrategyModuleOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--strategy-module",
        help="A Python file whose import registers your own strategies "
        "(rtml_cli.online.plugins.register_strategy), checked against the strategy contract "
        "before any work; repeatable.",
    ),
]

# The team's own lists (rtml simulate, rtml migrate)
BaselineRecsOption = Annotated[
    Path | None,
    typer.Option(
        "--baseline-recs",
        help="Your team's own precomputed lists (Parquet/CSV: user_id, rank, item_id, "
        "optional as_of; null user_id = fallback list), served as strategy 'baseline'.",
    ),
]
# Reading a team's export (rtml data import, rtml migrate)
MapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="Contract column = source column, e.g. ts=event_time,user_id=uid (repeatable).",
    ),
]
EventMapOption = Annotated[
    list[str] | None,
    typer.Option(
        "--map-event",
        help="Source event value = contract event (view, cart, purchase), e.g. "
        "add_to_cart=cart (repeatable, or comma-separated). Other values outside the "
        "contract are an error.",
    ),
]
IgnoreEventsOption = Annotated[
    str | None,
    typer.Option(
        "--ignore-events",
        help="Comma-separated source event values whose rows are dropped (counted).",
    ),
]
SessionGapOption = Annotated[
    str,
    typer.Option(
        "--session-gap", help="Inactivity gap that ends a session when the source has none."
    ),
]
# Distributed replay (simulate, retrain): online.distributed; values checked there (exit 2).
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local: in this process; ray: the shards as Ray tasks (pip install 'rtml\\[ray]').",
    ),
]
AddressOption = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="--engine ray: the Ray cluster (HOST:PORT, ray://HOST:PORT or auto); default: a "
        "local Ray instance. Exit 69 if it does not answer.",
    ),
]
ShardsOption = Annotated[
    int | None,
    typer.Option(
        "--shards",
        help="Split the replay into N shards by session (CRC-32 of session_id), at most N "
        "tasks at once; default: the cluster's CPUs with --engine ray, none with local.",
    ),
]


def split_words(text: str | None) -> list[str]:
    """A comma-separated option value as its words (``"a, b,,c"`` → ``["a", "b", "c"]``)."""
    return [word.strip() for word in (text or "").split(",") if word.strip()]
