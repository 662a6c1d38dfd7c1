"""Keep the docs honest: every command has help text, is in the README, and exit codes match."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer

from rtml_cli.cli import app
from rtml_cli.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent


def _leaf_commands():
    root = typer.main.get_command(app)

    def walk(command, path):
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in sorted(subcommands.items()):
                yield from walk(sub, [*path, name])
        else:
            yield path, command

    return list(walk(root, []))


LEAVES = _leaf_commands()
README = (REPO / "README.md").read_text()


def test_there_are_commands():
    assert len(LEAVES) >= 4


@pytest.mark.parametrize("path", [p for p, _ in LEAVES], ids=" ".join)
def test_command_has_help_and_is_documented(invoke, path):
    result = invoke(*path, "--help")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "Usage" in result.stdout
    command = dict((tuple(p), c) for p, c in LEAVES)[tuple(path)]
    assert (command.help or "").strip(), f"rtml {' '.join(path)} has no help text"
    assert f"rtml {' '.join(path)}" in README, f"README does not document rtml {' '.join(path)}"


def test_every_exit_code_is_in_the_readme():
    table = README.split("## Exit codes", 1)[1]
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \| {code.name} \|", table, re.M), code
