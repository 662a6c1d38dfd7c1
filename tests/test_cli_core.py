"""The CLI boundary: exit codes, one-line errors, --debug, --format json."""

from __future__ import annotations

import json

from rtml_cli.errors import DataError, ExitCode


def test_help_lists_commands(invoke):
    result = invoke("--help")
    assert result.exit_code == ExitCode.OK
    assert "data" in result.stdout


def test_version(invoke):
    result = invoke("--version")
    assert result.exit_code == ExitCode.OK
    assert result.stdout.startswith("rtml ")


def test_unknown_command_is_usage_error_on_one_line(invoke):
    result = invoke("no-such-command")
    assert result.exit_code == ExitCode.USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rtml: error:")


def test_bad_option_value_is_usage_error(invoke):
    result = invoke("data", "contracts", "--format", "xml")
    assert result.exit_code == ExitCode.USAGE
    assert "rtml: error:" in result.stderr


def test_contracts_json_is_parseable(invoke):
    result = invoke("data", "contracts", "--format", "json")
    assert result.exit_code == ExitCode.OK
    doc = json.loads(result.stdout)
    assert {c["name"] for c in doc["events"]["required"]} == {
        "ts",
        "user_id",
        "session_id",
        "item_id",
        "event",
    }


def test_library_error_maps_to_exit_code_and_debug_shows_traceback(invoke, monkeypatch):
    import rtml_cli.contracts as contracts_module

    class Boom:
        @property
        def name(self):
            raise DataError("bad rows", problems=["row 3: null session_id"])

    monkeypatch.setattr(contracts_module, "EVENTS", Boom())
    result = invoke("data", "contracts", "--format", "json")
    assert result.exit_code == ExitCode.DATA_ERR
    assert result.stderr.splitlines()[0] == "rtml: error: bad rows"
    assert "row 3: null session_id" in result.stderr
    assert "Traceback" not in result.stderr
    debug = invoke("--debug", "data", "contracts", "--format", "json")
    assert debug.exit_code == ExitCode.DATA_ERR
    assert "Traceback" in debug.stderr


def test_internal_error_is_exit_1_without_traceback(invoke, monkeypatch):
    import rtml_cli.contracts as contracts_module

    class Boom:
        @property
        def name(self):
            raise ZeroDivisionError("oops")

    monkeypatch.setattr(contracts_module, "EVENTS", Boom())
    result = invoke("data", "contracts", "--format", "json")
    assert result.exit_code == ExitCode.INTERNAL
    assert "internal error: ZeroDivisionError" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_paragraphs_are_reflowed_to_the_terminal_width():
    from rtml_cli.cli import reflow

    text = "First line\ncontinues.\n\nSecond paragraph\nwraps here.\n- a list item\n- another"
    assert reflow(text) == (
        "First line continues.\n\nSecond paragraph wraps here.\n- a list item\n- another"
    )


def test_help_at_80_columns_has_no_ragged_lines(invoke, monkeypatch):
    """Typer kept the docstring's line breaks after its first paragraph: at 80 columns a
    source line of 90 characters became one full line and a stub of a few words."""
    monkeypatch.setenv("COLUMNS", "80")
    result = invoke("simulate", "--help")
    assert result.exit_code == 0
    description = result.stdout.split("╭")[0]
    lines = [line.strip() for line in description.splitlines()]
    stubs = [
        (a, b)
        for a, b in zip(lines, lines[1:], strict=False)
        if a and b and len(a) < 40 and b[0].islower()
    ]
    assert not stubs, stubs
