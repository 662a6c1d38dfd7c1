"""`rtml data …`: the data contracts, validation, the sample world and importers."""

from __future__ import annotations

import typer

from rtml_cli.output import FormatOption, OutputFormat

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


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
