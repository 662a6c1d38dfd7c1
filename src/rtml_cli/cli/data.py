"""`rtml data …`: the data contracts, validation, the sample world and importers."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.output import FormatOption, OutputFormat, QuietOption

data_app = typer.Typer(
    help="Check, generate and import the logs every other command reads.",
    no_args_is_help=True,
)


@data_app.command("contracts")
def contracts_cmd(fmt: FormatOption = OutputFormat.table) -> None:
    """Print the columns each input contract requires (events, items, bandit, results)."""
    from rtml_cli import contracts
    from rtml_cli.output import emit_json, make_table, print_tables

    all_contracts = [contracts.EVENTS, contracts.ITEMS, contracts.BANDIT, contracts.RESULTS]
    if fmt is OutputFormat.json:
        emit_json(
            {
                c.name: {
                    "required": [vars(col) for col in c.required],
                    "optional": [vars(col) for col in c.optional],
                }
                for c in all_contracts
            }
        )
        return
    tables = []
    for c in all_contracts:
        rows = [
            (col.name, col.kind, "yes", "yes" if col.nullable else "no", col.doc)
            for col in c.required
        ]
        rows += [
            (col.name, col.kind, "no", "yes" if col.nullable else "no", col.doc)
            for col in c.optional
        ]
        tables.append(
            make_table(
                f"{c.name} contract", ["column", "type", "required", "nullable", "meaning"], rows
            )
        )
    print_tables(*tables)


class WorldSizeChoice(str, Enum):
    tiny = "tiny"
    small = "small"
    medium = "medium"
    large = "large"


@data_app.command("sample")
def sample_cmd(
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Directory to write the world to (replaced as a whole)."),
    ],
    seed: Annotated[
        int, typer.Option("--seed", min=0, help="Random seed: same seed, same files.")
    ] = 0,
    size: Annotated[
        WorldSizeChoice,
        typer.Option(
            "--size",
            case_sensitive=False,
            help="tiny (tests, ~10k events), small (~150k events, the committed sample_data/shop), "
            "medium (~2M events), large (>=10M events, >=100k items).",
        ),
    ] = WorldSizeChoice.small,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Generate a sample shop with known ground truth: events, items, bandit logs, click model."""
    from rtml_cli.data.world import generate_world
    from rtml_cli.output import emit_json, info, make_table, print_tables, progress

    with progress(quiet) as bar:
        task = bar.add_task(f"generating {size.value} world", total=None)
        summary = generate_world(
            out,
            seed=seed,
            size=size.value,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    info(f"wrote sample world to {out} in {summary['elapsed_s']}s", quiet=quiet)
    if quiet:
        return
    if fmt is OutputFormat.json:
        emit_json({k: v for k, v in summary.items() if k not in ("categories",)})
        return
    seg = summary["segments"]
    rows = [
        ("directory", str(out)),
        ("size / seed", f"{summary['size']} / {summary['seed']}"),
        ("events", summary["n_events"]),
        (
            "event mix (view/cart/purchase)",
            " / ".join(f"{v:,}" for v in summary["event_counts"].values()),
        ),
        ("users", summary["n_users"]),
        ("sessions", summary["n_sessions"]),
        ("anonymous share of sessions", seg["anonymous_share"]),
        ("anonymous or new after cutoff", seg["anonymous_or_new_share_after_cutoff"]),
        ("items (new at shift)", f"{summary['n_items']:,} ({summary['shift']['n_new_items']:,})"),
        ("bundles / categories", f"{len(summary['bundles'])} / {len(summary['categories'])}"),
        ("start", summary["start"]),
        ("end", summary["end"]),
        ("history cutoff", summary["history_cutoff"]),
        ("shift time", summary["shift_time"]),
        ("trending bursts", len(summary["bursts"])),
        (
            "bandit rows (per log) / arms",
            f"{summary['click_model']['bandit_rows']:,} / {summary['click_model']['n_arms']}",
        ),
        (
            "true CTR: logging / uniform / best",
            " / ".join(
                f"{summary['click_model'][k]:.4f}"
                for k in ("value_logging_policy", "value_uniform_policy", "value_best_policy")
            ),
        ),
    ]
    print_tables(make_table("sample world", ["", "value"], rows))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
