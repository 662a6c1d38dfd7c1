"""Tables at 80 and 120 columns (issue #13 item 2): no line wider than the terminal, no
number cut (``0.…``, ``51,2…``), and the JSON's key figures shown whole in the table."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.cli import app
from rtml_cli.output import fmt_cell, make_table, print_tables

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
        "--format",
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
            "--format",
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
            for key in ("requests", "hr", "mrr", "ndcg", "coverage")
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
            cache[name, None] = _run(*args, "--format", "json")
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
