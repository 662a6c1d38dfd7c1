"""One output convention for every reporting command (issue #13 items 2-4).

- Tables at 80 and 120 columns: no line wider than the terminal, no number cut (``0.…``,
  ``51,2…``), and the JSON's key figures shown whole in the table.
- Every figure a table shows is in the command's JSON (timings aside: they change from run
  to run).
- ``--format json`` carries ``kind`` and ``schema``; ``--format csv`` and ``markdown`` give
  one row per strategy, segment or policy, as in the JSON; ``--quiet`` never silences a
  document asked for with ``--format``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.cli import app
from rtml_cli.output import SCHEMAS, Rows, document, fmt_cell, make_table, print_tables, records

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "sample_data" / "shop"
EVENTS = SHOP / "events.parquet"
OBD = REPO / "sample_data" / "obd"
CUT_NUMBER = re.compile(r"\d…|…\d|[.,]…")
WIDTHS = (80, 120)


def _run(*args: object, width: int = 200) -> str:
    env = {"COLUMNS": str(width), "NO_COLOR": "1", "TERM": "dumb"}
    result = CliRunner().invoke(app, [str(a) for a in args], env=env)
    assert result.exit_code in (0, 10), (args, result.exit_code, result.stderr)
    return result.stdout


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One short precompute + simulate of the sample shop and one OBD import, shared."""
    root = tmp_path_factory.mktemp("width")
    art = root / "artifacts"
    _run(
        "precompute",
        EVENTS,
        "--items",
        SHOP / "items.parquet",
        "--out",
        art,
        "--as-of",
        "2024-03-22T16:00:00Z",
        "--dim",
        "8",
        "--trees",
        "5",
        "--quiet",
    )
    results = root / "results.parquet"
    # The same run as the "simulate" case, so its JSON serves that case too.
    doc = _run(*CASES["simulate"][0]({"artifacts": art}), "--out", results, "--format", "json")
    (root / "simulate.json").write_text(doc)
    obd = root / "random.parquet"
    _run(
        "data",
        "import",
        "--from-format",
        "obd",
        OBD / "random" / "men" / "men.csv.gz",
        "--out",
        obd,
        "--quiet",
    )
    return {"root": root, "artifacts": art, "results": results, "obd": obd}


def _pcts(doc: dict, *keys: str) -> list[str]:
    return [f"{p[k]:.0%}" for p in doc["policies"] for k in keys if p.get(k) is not None]


# name -> (arguments, key figures: JSON document -> strings the table must show)
Figures = Callable[[dict], list[str]]
CASES: dict[str, tuple[Callable[[dict[str, Path]], list[object]], Figures | None]] = {
    "data contracts": (lambda w: ["data", "contracts"], None),
    "data sample": (
        lambda w: ["data", "sample", "--out", w["root"] / "world", "--size", "tiny", "--seed", "7"],
        None,
    ),
    "data validate": (lambda w: ["data", "validate", EVENTS], None),
    "data validate bandit": (lambda w: ["data", "validate", w["obd"]], None),
    "data import": (
        lambda w: [
            "data",
            "import",
            "--from-format",
            "obd",
            OBD / "bts" / "men" / "men.csv.gz",
            "--out",
            w["root"] / "bts.parquet",
        ],
        None,
    ),
    "precompute": (
        lambda w: [
            "precompute",
            EVENTS,
            "--out",
            w["root"] / "art2",
            "--as-of",
            "2024-03-22T16:00:00Z",
            "--dim",
            "8",
            "--trees",
            "5",
        ],
        None,
    ),
    "neighbors": (
        lambda w: ["neighbors", "100000", "--artifacts", w["artifacts"], "-k", "8"],
        None,
    ),
    "simulate": (
        lambda w: [
            "simulate",
            EVENTS,
            "--artifacts",
            w["artifacts"],
            "--end",
            "2024-03-23T00:00:00Z",
        ],
        lambda doc: [
            fmt_cell(r[key], 3)
            for r in doc["summary"]
            for key in (
                "requests" if r["segment"] == "all" else "requests_with_truth",
                "hr",
                "mrr",
                "ndcg",
                "coverage",
            )
        ],
    ),
    "evaluate": (
        lambda w: [
            "evaluate",
            w["results"],
            "--seeds",
            "20",
            "--arms",
            "batch,session-embedding,online-ranker",
            "--reward",
            "hit",
        ],
        lambda doc: (
            [fmt_cell(a["mean_reward"], 5) for a in doc["arms"]]
            + _pcts(doc, "decided_share", "picked_best_share", "best_arm_traffic_share")
        ),
    ),
    "evaluate planning": (
        lambda w: ["evaluate", "--arm", "control=0.040", "--arm", "new=0.045", "--seeds", "20"],
        lambda doc: _pcts(doc, "decided_share", "picked_best_share"),
    ),
    "evaluate ope": (
        lambda w: [
            "evaluate",
            "ope",
            SHOP / "bandit.parquet",
            "--policy",
            "linear:0.1",
            "--bootstrap",
            "50",
        ],
        None,
    ),
    "evaluate contextual": (lambda w: ["evaluate", "contextual", SHOP, "--requests", "2000"], None),
    "evaluate contextual log": (
        lambda w: ["evaluate", "contextual", "--log", w["obd"], "--bootstrap", "50"],
        lambda doc: [str(p["matched_events"]) for p in doc["policies"]],
    ),
    "drift compare": (lambda w: ["drift", EVENTS, EVENTS], None),
    "drift popularity": (
        lambda w: ["drift", "popularity", EVENTS, "--end", "2024-03-25"],
        None,
    ),
    "retrain": (
        lambda w: [
            "retrain",
            EVENTS,
            "--start",
            "2024-03-22",
            "--end",
            "2024-03-24",
            "--schedules",
            "stateless:1d,stateful:1d,triggered,never",
            "--sample",
            "2",
        ],
        lambda doc: [fmt_cell(r["hr"], 3) for r in doc["schedules"]],
    ),
    "migrate": (
        lambda w: [
            "migrate",
            EVENTS,
            "--out",
            w["root"] / "migrate",
            "--holdout",
            "12h",
            "--strategies",
            "popular,batch,session-embedding",
            "--seeds",
            "5",
            "--bootstrap",
            "0",
            "--skip",
            "report",
        ],
        lambda doc: [s["step"] for s in doc["steps"]],
    ),
}


@pytest.fixture(scope="module")
def outputs(work: dict[str, Path]) -> dict[tuple[str, int | None], str]:
    """Each command once as JSON and once per width as tables."""
    cache: dict[tuple[str, int | None], str] = {}
    cache["simulate", None] = (work["root"] / "simulate.json").read_text()
    return cache


def _output(cache: dict, work: dict[str, Path], name: str, width: int | None) -> str:
    if (name, width) not in cache:
        own = work["root"] / f"{name.replace(' ', '-')}-{width or 'json'}"
        args = CASES[name][0]({**work, "root": own})
        if width is None:
            cache[name, None] = _run(*args, "--format", "json", *_quiet(name))
        else:
            cache[name, width] = _run(*args, width=width)
    return cache[name, width]


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("name", list(CASES))
def test_tables_fit_and_keep_numbers_whole(work, outputs, name: str, width: int) -> None:
    text = _output(outputs, work, name, width)
    assert text.strip(), name
    too_wide = [line for line in text.splitlines() if len(line) > width]
    assert not too_wide, f"{name} at {width} columns:\n" + "\n".join(too_wide)
    cut = [line for line in text.splitlines() if CUT_NUMBER.search(line)]
    assert not cut, f"{name} at {width} columns cuts numbers:\n" + "\n".join(cut)
    figures = CASES[name][1]
    if figures is not None:
        doc = json.loads(_output(outputs, work, name, None))
        cells = set(re.findall(r"[^\s│┃|]+", text))
        missing = [f for f in figures(doc) if f not in cells]
        assert not missing, f"{name} at {width} columns lacks {missing}:\n{text}"


def _render(table, width: int, capsys: pytest.CaptureFixture[str], monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", str(width))
    print_tables(table)
    return capsys.readouterr().out


def test_wide_table_splits_repeating_the_key(capsys, monkeypatch) -> None:
    columns = ["strategy", *(f"metric number {i}" for i in range(10))]
    rows = [["session-itemknn", *(123456.789 + i for i in range(10))], ["popular", *range(10)]]
    text = _render(make_table("wide", columns, rows), 80, capsys, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "wide (1/" in text and text.count("session-itemknn") >= 2
    assert "123,456.789" in text and "123,465.789" in text and not CUT_NUMBER.search(text)


def test_too_narrow_for_two_columns_goes_vertical(capsys, monkeypatch) -> None:
    rows = [["a-very-long-strategy-name", 123456789012.5, 0.12345]]
    table = make_table("narrow", ["strategy", "requests in the window", "hit rate"], rows)
    text = _render(table, 26, capsys, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= 26
    assert "1.235e+11" in text and "0.1235" in text and not CUT_NUMBER.search(text)


def test_wide_terminal_renders_as_before(capsys, monkeypatch) -> None:
    table = make_table("t", ["name", "value"], [["x", 1.5]])
    text = _render(table, 200, capsys, monkeypatch)
    assert "│ x    │   1.5 │" in text


EXACT_80 = """\
simulate: all visitors (1/2)
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┓
┃ strategy        ┃ requests ┃ HR@20 ┃ MRR@20 ┃ NDCG@20 ┃ HR later ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━┩
│ session-itemknn │   51,234 │ 0.625 │   0.24 │   0.325 │    0.755 │
│ online-ranker   │  532,612 │ 0.624 │  0.246 │   0.331 │    0.765 │
└─────────────────┴──────────┴───────┴────────┴─────────┴──────────┘

simulate: all visitors (2/2)
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┓
┃ strategy        ┃ HR buy ┃ cover ┃ p50 ms ┃ p95 ms ┃   p99 ms ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━┩
│ session-itemknn │  0.544 │ 0.882 │  0.134 │  0.196 │    0.225 │
│ online-ranker   │  0.588 │ 0.779 │  0.829 │  1.012 │ 2.35e-05 │
└─────────────────┴────────┴───────┴────────┴────────┴──────────┘
cover: share of the catalogue ever served
"""

EXACT_120 = """\
simulate: all visitors
┏━━━━━━━━━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━━┳━━━━━━━━━━┳━━━━━━━━┳━━━━━━━┳━━━━━━━━┳━━━━━━━━┳━━━━━━━━━━┓
┃ strategy        ┃ requests ┃ HR@20 ┃ MRR@20 ┃ NDCG@20 ┃ HR later ┃ HR buy ┃ cover ┃ p50 ms ┃ p95 ms ┃   p99 ms ┃
┡━━━━━━━━━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━━╇━━━━━━━━━━╇━━━━━━━━╇━━━━━━━╇━━━━━━━━╇━━━━━━━━╇━━━━━━━━━━┩
│ session-itemknn │   51,234 │ 0.625 │   0.24 │   0.325 │    0.755 │  0.544 │ 0.882 │  0.134 │  0.196 │    0.225 │
│ online-ranker   │  532,612 │ 0.624 │  0.246 │   0.331 │    0.765 │  0.588 │ 0.779 │  0.829 │  1.012 │ 2.35e-05 │
└─────────────────┴──────────┴───────┴────────┴─────────┴──────────┴────────┴───────┴────────┴────────┴──────────┘
cover: share of the catalogue ever served
"""


@pytest.mark.parametrize(("width", "expected"), [(80, EXACT_80), (120, EXACT_120)])
def test_exact_rendering(width: int, expected: str, capsys, monkeypatch) -> None:
    """simulate's main table: split in two at 80 columns (the key repeated), whole at 120."""
    columns = ["strategy", "requests", "HR@20", "MRR@20", "NDCG@20", "HR later", "HR buy"]
    columns += ["cover", "p50 ms", "p95 ms", "p99 ms"]
    rows = [
        ["session-itemknn", 51234, 0.625, 0.24, 0.325, 0.755, 0.544, 0.882, 0.134, 0.196, 0.225],
        ["online-ranker", 532612, 0.624, 0.246, 0.331, 0.765, 0.588, 0.779, 0.829, 1.012, 2.35e-5],
    ]
    caption = "cover: share of the catalogue ever served"
    table = make_table("simulate: all visitors", columns, rows, caption=caption, digits=3)
    text = _render(table, width, capsys, monkeypatch)
    assert "\n".join(line.rstrip() for line in text.splitlines()) + "\n" == expected


# --- every table figure is in the JSON ---------------------------------------------------

# Figures that change from run to run (timings, memory): the table and the JSON come from
# two runs, so these cells are not compared. Matched against "column header + row name".
RUN_TO_RUN = re.compile(
    r"\bms\b|second|wall|\btrain s\b|s/HR|time/base|RSS|requests/s|\bbytes\b|recall@10"
)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")
NUMBER = re.compile(r"(?<![\w.@/])[-+]?\d[\d,]*(\.\d+)?(e[-+]?\d+)?(%|x)?(?![\w/])")
PATH_LIKE = re.compile(r"[\w.-]/[\w.-]")
MORE = re.compile(r"\(\+\d+( more\))?")  # a shortened list: the whole list is in the JSON


def _json_numbers(doc: object, out: list[float]) -> list[float]:
    """Every number in a JSON document, including those written inside strings."""
    if isinstance(doc, dict):
        for value in doc.values():
            _json_numbers(value, out)
    elif isinstance(doc, list):
        for value in doc:
            _json_numbers(value, out)
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        out.append(float(doc))
    elif isinstance(doc, str):
        for m in NUMBER.finditer(DATE.sub(" ", doc)):
            out.append(float(m.group(0).replace(",", "").rstrip("%x")))
    return out


def _shown(token: str, numbers: list[float]) -> bool:
    """Whether a number as a table prints it is one of ``numbers`` rounded for display."""
    text = token.replace(",", "").rstrip("%x")
    value = float(text)
    mantissa = text.split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    tol = 0.5 * 10**-decimals * (abs(value) if "e" in text else 1) * 1.0001
    if token.endswith("%"):
        value, tol = value / 100, tol / 100
    return any(abs(abs(n) - abs(value)) <= tol for n in numbers)


def _table_cells(text: str) -> list[tuple[str, str]]:
    """(label, cell) for every body cell of the Rich tables in ``text``; the label is the
    table's title, the column header and the row's first cell."""
    headers: list[str] = []
    out: list[tuple[str, str]] = []
    name = title = ""
    for line in text.splitlines():
        if line.strip() and not re.search(r"[┃│┏┡└━─]", line):
            title = line.strip()  # a table's title (in a vertical layout: the row's name)
        elif "┃" in line:
            headers = [h.strip() for h in line.split("┃")[1:-1]]
        elif "│" in line:
            cells = [c.strip() for c in line.split("│")[1:-1]]
            name = cells[0] or name  # a wrapped row's later lines belong to its name
            for index, cell in enumerate(cells[1:], start=1):
                header = headers[index] if index < len(headers) else ""
                out.append((f"{title} {header} {name}", cell))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_every_table_figure_is_in_the_json(work, outputs, name: str) -> None:
    text = _output(outputs, work, name, 120)
    numbers = _json_numbers(json.loads(_output(outputs, work, name, None)), [])
    missing = [
        (label, cell)
        for label, cell in _table_cells(text)
        if not RUN_TO_RUN.search(label) and not PATH_LIKE.search(cell)
        for token in (m.group(0) for m in NUMBER.finditer(MORE.sub(" ", DATE.sub(" ", cell))))
        if not _shown(token, numbers)
    ]
    assert not missing, f"{name}: table figures not in the JSON: {missing}"


def test_figure_check_catches_a_missing_figure() -> None:
    """The check above fails on a figure the JSON lacks (and passes on rounding)."""
    assert _shown("0.123", [0.12304]) and _shown("12.3%", [0.1234]) and _shown("51,234", [51234])
    assert not _shown("0.124", [0.12304]) and not _shown("7", [0.5, 8.0])
    text = "┃ strategy ┃ HR ┃\n│ batch    │ 0.4 │"
    assert _table_cells(text) == [(" HR batch", "0.4")]


# --- documents: kind, schema, csv, markdown, --quiet ------------------------------------

# The commands without --quiet print nothing but their answer.
NO_QUIET = {"data contracts", "data validate", "data validate bandit", "neighbors"}
# name -> (document kind, the JSON lists that become csv rows; () = the document is one row)
DOCUMENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "data contracts": ("data contracts", ("events", "items", "bandit", "results")),
    "data sample": ("data sample", ()),
    "data validate": ("data validate", ()),
    "data validate bandit": ("data validate", ()),
    "data import": ("data import", ()),
    "precompute": ("precompute", ()),
    "neighbors": ("neighbors", ("neighbors",)),
    "simulate": ("simulate", ("summary", "slices")),
    "evaluate": ("evaluate bandits", ("arms", "policies")),
    "evaluate planning": ("evaluate bandits", ("arms", "policies")),
    "evaluate ope": ("evaluate ope", ("estimates",)),
    "evaluate contextual": ("evaluate contextual", ("online", "offline")),
    "evaluate contextual log": ("evaluate contextual log", ("policies",)),
    "drift compare": ("drift compare", ("features", "skipped")),
    "drift popularity": ("drift popularity", ()),
    "retrain": ("retrain", ("schedules", "steps", "updates", "checks")),
    "migrate": ("migrate", ("steps", "verdict")),
}


def _quiet(name: str) -> list[str]:
    return [] if name in NO_QUIET else ["--quiet"]


def test_every_case_names_its_document() -> None:
    assert set(DOCUMENTS) == set(CASES)
    assert {kind for kind, _ in DOCUMENTS.values()} == set(SCHEMAS)


@pytest.mark.parametrize("name", list(CASES))
def test_json_says_what_it_is(work, outputs, name: str) -> None:
    """Run with --quiet (where the command has it): the document is printed all the same."""
    doc = json.loads(_output(outputs, work, name, None))
    kind, _ = DOCUMENTS[name]
    assert (doc["kind"], doc["schema"]) == (kind, SCHEMAS[kind])


@pytest.mark.parametrize("name", list(CASES))
def test_csv_has_one_row_per_json_row(work, outputs, name: str) -> None:
    doc = json.loads(_output(outputs, work, name, None))
    own = work["root"] / f"{name.replace(' ', '-')}-csv"
    text = _run(*CASES[name][0]({**work, "root": own}), "--format", "csv", *_quiet(name))
    rows = list(csv.DictReader(io.StringIO(text)))
    _, tables = DOCUMENTS[name]
    if name == "data contracts":  # one row per column of each contract
        assert len(rows) == sum(len(doc[t]["required"]) + len(doc[t]["optional"]) for t in tables)
        assert {r["contract"] for r in rows} == set(tables)
        return
    expected = records(doc, Rows(tables=tables))
    assert len(rows) == len(expected) == (sum(len(doc[t]) for t in tables) if tables else 1)
    assert list(rows[0]) == list(dict.fromkeys(k for r in expected for k in r))
    # names (strategy, policy, segment…) are the JSON's; numbers are compared above
    for got, want in zip(rows, expected, strict=True):
        for key, value in want.items():
            if isinstance(value, str) and not DATE.search(value) and "/" not in value:
                assert got[key] == value, (name, key)


MARKDOWN_CASES = ["data contracts", "evaluate planning", "drift popularity", "neighbors"]


@pytest.mark.parametrize("name", MARKDOWN_CASES)
def test_markdown_tables(work, name: str) -> None:
    own = work["root"] / f"{name.replace(' ', '-')}-md"
    text = _run(*CASES[name][0]({**work, "root": own}), "--format", "markdown", *_quiet(name))
    kind, tables = DOCUMENTS[name]
    headings = [line for line in text.splitlines() if line.startswith("### ")]
    one_table = len(tables) < 2 or name == "data contracts"
    expected = [f"### {kind}"] if one_table else [f"### {kind}: {t}" for t in tables]
    assert headings == expected
    for block in text.split("### ")[1:]:
        lines = [line for line in block.splitlines() if line.startswith("|")]
        assert len(lines) >= 3 and re.fullmatch(r"\|(-{3}:?\|)+", lines[1])
        widths = {line.count(" | ") for line in lines[2:]} | {lines[0].count(" | ")}
        assert len(widths) == 1, block


def test_markdown_escapes_pipes_and_marks_numbers(capsys) -> None:
    from rtml_cli.output import emit_markdown

    emit_markdown([{"name": "a|b", "hr": 0.5}, {"name": "c", "hr": None}], title="t")
    assert capsys.readouterr().out.splitlines() == [
        "### t",
        "",
        "| name | hr |",
        "|---|---:|",
        "| a\\|b | 0.5 |",
        "| c | – |",
    ]


def test_documents_reserve_kind_and_schema() -> None:
    assert document("simulate", {"a": 1}) == {"kind": "simulate", "schema": 1, "a": 1}
    with pytest.raises(ValueError, match="reserved"):
        document("simulate", {"kind": "numeric"})


def test_rows_flatten_nested_objects_and_skip_curves() -> None:
    doc = {
        "policies": [
            {"policy": "ts", "ab": {"n": 3, "split": [0.5, 0.5]}, "curve": list(range(50))}
        ],
        "arms": [{"arm": "a"}],
    }
    assert records(doc, Rows(tables=("policies", "arms"))) == [
        {"table": "policies", "policy": "ts", "ab.n": 3, "ab.split": "0.5;0.5"},
        {"table": "arms", "arm": "a"},
    ]
