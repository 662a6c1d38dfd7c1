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


# --- rtml data import ----------------------------------------------------------------


class ImportFormat(str, Enum):
    obd = "obd"
    recbole = "recbole"
    session_rec = "session-rec"
    csv = "csv"
    parquet = "parquet"


class TsUnit(str, Enum):
    s = "s"
    ms = "ms"
    us = "us"
    iso = "iso"


@data_app.command("import")
def import_cmd(
    source: Annotated[
        str, typer.Argument(help="The log to convert (a .csv/.csv.gz, .inter, .tsv or Parquet).")
    ],
    input_format: Annotated[
        ImportFormat,
        typer.Option("--format", help="Source format.", case_sensitive=False),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    mapping: Annotated[
        list[str] | None,
        typer.Option(
            "--map",
            help="Contract column = source column, e.g. ts=event_time,user_id=uid (repeatable).",
        ),
    ] = None,
    ts_unit: Annotated[
        TsUnit | None,
        typer.Option(
            "--ts-unit",
            help="How times are encoded: s, ms, us epochs or iso strings "
            "(default: s for numbers, iso for text).",
            case_sensitive=False,
        ),
    ] = None,
    session_gap: Annotated[
        str,
        typer.Option(
            "--session-gap", help="Inactivity gap that ends a session when the source has none."
        ),
    ] = "30m",
    items_out: Annotated[
        Path | None,
        typer.Option(
            "--items-out",
            help="Where to write items that come with the source (RecBole .item, OBD "
            "item_context.csv); default OUT with .items.parquet.",
        ),
    ] = None,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="obd: logging-policy name (default: from the path)."),
    ] = None,
    event: Annotated[
        str,
        typer.Option("--event", help="Event name for sources without an event column."),
    ] = "view",
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the import summary as JSON on stdout.")
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Convert a real log (OBD, RecBole, session-rec, CSV, Parquet) into an rtml contract.

    OBD files become a bandit log; every other format an event log, sessionized
    per user at --session-gap when the source has no session ids.
    """
    from rtml_cli.data.importers import import_log, parse_mapping
    from rtml_cli.output import emit_json, info, make_table, print_tables, warn
    from rtml_cli.timeutil import parse_duration

    result = import_log(
        input_format.value,
        source,
        out,
        mapping=parse_mapping(mapping),
        ts_unit=ts_unit.value if ts_unit else None,
        session_gap=parse_duration(session_gap),
        items_out=items_out,
        policy=policy,
        event=event,
    )
    for message in result.warnings:
        warn(message)
    info(f"wrote {result.out} ({result.rows:,} rows) in {result.seconds:.1f}s", quiet=quiet)
    if as_json:
        emit_json(result.to_dict())
        return
    if quiet:
        return
    rows: list[tuple[str, object]] = [
        ("format", result.format),
        ("source", result.source),
        ("written", f"{result.out} ({result.kind} contract)"),
        ("rows", result.rows),
        ("time range", f"{result.ts_min} … {result.ts_max}"),
    ]
    if result.kind == "bandit":
        rows += [
            ("policy", result.policy),
            ("actions", result.actions),
            ("mean reward", result.reward_mean),
            ("propensity range", f"{result.propensity_min:.6g} … {result.propensity_max:.6g}"),
        ]
    else:
        how = (
            f"cut per user at a {session_gap} gap" if result.sessionized else "given by the source"
        )
        rows += [
            ("users", result.users),
            ("sessions", f"{result.sessions:,} ({how})"),
            ("items", result.items),
        ]
    if result.items_out:
        rows.append(("items written", f"{result.items_out} ({result.items_rows:,} rows)"))
    shown = result.columns if len(result.columns) <= 10 else result.columns[:8]
    more = len(result.columns) - len(shown)
    rows.append(("columns", ", ".join(shown) + (f", … (+{more} more)" if more else "")))
    print_tables(make_table(f"rtml data import --format {result.format}", ["", "value"], rows))


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
