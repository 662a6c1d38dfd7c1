"""`rtml data …`: the data contracts, validation, the sample world and importers."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from rtml_cli.cli.options import (
    EventMapOption,
    FormatOption,
    IgnoreEventsOption,
    MapOption,
    QuietOption,
    SeedOption,
    SessionGapOption,
    split_words,
)
from rtml_cli.output import OutputFormat, fmt_cell

data_app = typer.Typer(
    help="Check, generate and import the logs every other command reads.",
    no_args_is_help=True,
)


@data_app.command("contracts")
def contracts_cmd(fmt: FormatOption = OutputFormat.table) -> None:
    """Print the columns each input contract requires (events, items, bandit, results)."""
    from rtml_cli import contracts
    from rtml_cli.output import finish, make_table, print_tables

    all_contracts = [contracts.EVENTS, contracts.ITEMS, contracts.BANDIT, contracts.RESULTS]
    doc = {
        c.name: {
            "required": [vars(col) for col in c.required],
            "optional": [vars(col) for col in c.optional],
        }
        for c in all_contracts
    }

    def render() -> None:
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
                    f"{c.name} contract",
                    ["column", "type", "required", "nullable", "meaning"],
                    rows,
                )
            )
        print_tables(*tables)

    def rows(doc: dict) -> list[dict]:
        return [
            {"contract": name, "required": required, **column}
            for name in (c.name for c in all_contracts)
            for required, key in ((True, "required"), (False, "optional"))
            for column in doc[name][key]
        ]

    finish(doc, fmt, render, kind="data contracts", rows=rows)


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
    seed: SeedOption = 0,
    size: Annotated[
        WorldSizeChoice,
        typer.Option(
            "--size",
            case_sensitive=False,
            help="tiny (tests, ~10k events), small (~150k events, the committed sample_data/shop), "
            "medium (~2M events), large (>=10M events, >=100k items).",
        ),
    ] = WorldSizeChoice.small,
    scale: Annotated[
        int,
        typer.Option(
            "--scale",
            min=1,
            help="Write the event log N times over (copies of the users and sessions with "
            "new ids, a day at a time in bounded memory): a benchmark load, e.g. --size large "
            "--scale 10 is ~105M events and ~3M users. Ground truth describes the first copy.",
        ),
    ] = 1,
    fmt: FormatOption = OutputFormat.table,
    quiet: QuietOption = False,
) -> None:
    """Generate a sample shop with known ground truth: events, items, bandit logs, click model."""
    from rtml_cli.data.world import generate_world
    from rtml_cli.output import finish, info, make_table, print_tables, progress

    with progress(quiet) as bar:
        task = bar.add_task(f"generating {size.value} world", total=None)
        summary = generate_world(
            out,
            seed=seed,
            size=size.value,
            scale=scale,
            on_progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    info(f"wrote sample world to {out} in {summary['elapsed_s']}s", quiet=quiet)

    def render() -> None:
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
            (
                "items (new at shift)",
                f"{summary['n_items']:,} ({summary['shift']['n_new_items']:,})",
            ),
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

    doc = {k: v for k, v in summary.items() if k not in ("categories",)}
    # the counts the table shows (the category list itself is in world.json)
    doc.update(
        n_categories=len(summary["categories"]),
        n_bundles=len(summary["bundles"]),
        n_bursts=len(summary["bursts"]),
    )
    finish(doc, fmt, render, kind="data sample", quiet=quiet)


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
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")],
    input_format: Annotated[
        ImportFormat | None,
        typer.Option(
            "--from-format",
            help="Source format (required; rtml 0.1 spelled it --format).",
            case_sensitive=False,
        ),
    ] = None,
    mapping: MapOption = None,
    ts_unit: Annotated[
        TsUnit | None,
        typer.Option(
            "--ts-unit",
            help="How times are encoded: s, ms, us epochs or iso strings "
            "(default: s for numbers, iso for text).",
            case_sensitive=False,
        ),
    ] = None,
    session_gap: SessionGapOption = "30m",
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
    event_map: EventMapOption = None,
    ignore_events: IgnoreEventsOption = None,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="table, json, csv or markdown, as for every command. For one release a "
            "source format given here instead of --from-format is still read as one, "
            "with a warning.",
        ),
    ] = OutputFormat.table.value,
    as_json: Annotated[
        bool, typer.Option("--json", help="Deprecated: use --format json.", hidden=True)
    ] = False,
    quiet: QuietOption = False,
) -> None:
    """Convert a real log (OBD, RecBole, session-rec, CSV, Parquet) into an rtml contract.

    OBD files become a bandit log; every other format an event log, sessionized
    per user at --session-gap when the source has no session ids.
    """
    from rtml_cli.data.importers import import_log, parse_event_map, parse_mapping
    from rtml_cli.output import finish, info, make_table, print_tables, warn
    from rtml_cli.timeutil import parse_duration

    source_format, output = _import_formats(input_format, fmt, as_json)
    result = import_log(
        source_format.value,
        source,
        out,
        mapping=parse_mapping(mapping),
        ts_unit=ts_unit.value if ts_unit else None,
        session_gap=parse_duration(session_gap),
        items_out=items_out,
        policy=policy,
        event=event,
        event_map=parse_event_map(event_map),
        ignore_events=split_words(ignore_events),
    )
    for message in result.warnings:
        warn(message)
    info(f"wrote {result.out} ({result.rows:,} rows) in {result.seconds:.1f}s", quiet=quiet)

    def render() -> None:
        rows: list[tuple[str, object]] = [
            ("format", result.format),
            ("source", result.source),
            ("written", f"{result.out} ({result.kind} contract)"),
            ("rows", result.rows),
            (
                "time range",
                f"{result.ts_min:%Y-%m-%d %H:%M:%S} … {result.ts_max:%Y-%m-%d %H:%M:%S} UTC",
            ),
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
                f"cut per user at a {session_gap} gap"
                if result.sessionized
                else "given by the source"
            )
            rows += [
                ("users", result.users),
                ("sessions", f"{result.sessions:,} ({how})"),
                ("items", result.items),
            ]
        if result.events_mapped:
            rows.append(
                (
                    "events mapped",
                    ", ".join(
                        f"{v} → {m['to']}" + (f" ({m['rows']:,} rows)" if m["rows"] >= 0 else "")
                        for v, m in result.events_mapped.items()
                    ),
                )
            )
        if result.events_ignored:
            rows.append(
                (
                    "events dropped",
                    ", ".join(f"{v} ({n:,} rows)" for v, n in result.events_ignored.items()),
                )
            )
        if result.items_out:
            rows.append(("items written", f"{result.items_out} ({result.items_rows:,} rows)"))
        shown = result.columns if len(result.columns) <= 10 else result.columns[:8]
        more = len(result.columns) - len(shown)
        rows.append(("columns", ", ".join(shown) + (f", … (+{more} more)" if more else "")))
        print_tables(
            make_table(f"rtml data import --from-format {result.format}", ["", "value"], rows)
        )

    finish(result.to_dict, output, render, kind="data import", quiet=quiet)


def _import_formats(
    input_format: ImportFormat | None, fmt: str, as_json: bool
) -> tuple[ImportFormat, OutputFormat]:
    """(source format, output format) from --from-format, --format and the old --json.

    rtml 0.1 spelled the source format --format. For one release (until 0.3) a
    --format value that names a source format, given without --from-format, is read as the
    source format (with a warning); with --from-format, --format is the output format.
    """
    from rtml_cli.errors import UsageError
    from rtml_cli.output import warn

    value = fmt.strip().lower()
    sources = {f.value for f in ImportFormat}
    outputs = [f.value for f in OutputFormat]
    output: OutputFormat | None = OutputFormat(value) if value in outputs else None
    if input_format is None and value in sources:
        warn(
            f"--format {value} names the source format: write --from-format {value} "
            "(from rtml 0.3 --format is only the output format, table|json|csv|markdown)"
        )
        input_format, output = ImportFormat(value), OutputFormat.table
    if output is None:
        raise UsageError(
            f"--format {fmt!r} is not an output format: use one of {', '.join(outputs)} "
            f"(the source format is --from-format)"
        )
    if input_format is None:
        raise UsageError(
            "give the source format with --from-format " + "|".join(f.value for f in ImportFormat)
        )
    if as_json:
        warn("--json is deprecated: use --format json")
        output = OutputFormat.json
    return input_format, output


# --- rtml data validate --------------------------------------------------------------


class Kind(str, Enum):
    events = "events"
    items = "items"
    bandit = "bandit"


@data_app.command("validate")
def validate_cmd(
    path: Annotated[
        str, typer.Argument(help="A Parquet file, a glob, or a directory of Parquet partitions.")
    ],
    kind: Annotated[
        Kind | None,
        typer.Option(
            "--kind",
            help="Contract to check (default: detected from the columns).",
            case_sensitive=False,
        ),
    ] = None,
    session_gap: Annotated[
        str,
        typer.Option(
            "--session-gap",
            help="events: the longest silence allowed inside one session; 'none' skips the check.",
        ),
    ] = "30m",
    fmt: FormatOption = OutputFormat.table,
) -> None:
    """Check a log against its contract: print a summary (exit 0) or every problem (exit 65)."""
    from rich.text import Text

    from rtml_cli.data.validate import validate
    from rtml_cli.output import Rows, finish, make_table, print_tables
    from rtml_cli.timeutil import parse_duration

    gap = None if session_gap.strip().lower() == "none" else parse_duration(session_gap)
    report = validate(path, kind=kind.value if kind else None, session_gap=gap)

    def render() -> None:
        how = "detected from its columns" if report.kind_detected else "as asked"
        title = f"{report.path}: a valid {report.kind} file ({how}; {report.files} file(s))"
        rows = []
        for key, value in report.summary.items():
            if isinstance(value, dict) and key == "events_per_session":
                value = "mean {} · median {} · p95 {}".format(
                    *(fmt_cell(value[k], 2) for k in ("mean", "median", "p95"))
                )
            elif isinstance(value, dict):
                value = ", ".join(f"{k}: {fmt_cell(v)}" for k, v in value.items())
            elif key == "time_range":
                value = " … ".join(f"{v:%Y-%m-%d %H:%M:%S}" for v in value) + " UTC"
            elif isinstance(value, list):
                value = ", ".join(str(v) for v in value)
            elif isinstance(value, float) and key.endswith("share"):
                value = f"{value:.1%}"
            rows.append((key.replace("_", " "), value))
        print_tables(Text(title), make_table(None, ["", "value"], rows))

    # with --format json the report (with its problems) is printed either way
    finish(
        report.to_dict,
        fmt,
        render if report.ok else lambda: None,
        kind="data validate",
        rows=Rows() if report.ok else Rows(tables=("problems",)),
    )
    if not report.ok:
        report.raise_for_problems()


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data", rich_help_panel="Data")
