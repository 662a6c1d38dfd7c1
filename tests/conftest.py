"""Shared fixtures: a CliRunner with a fixed terminal and no colour."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rtml_cli.cli import app

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "sample_data"

# No test writes the replay's cache into the user's home: set for the whole process, so
# that what the tests start (Ray workers of a module's cluster, `rtml` subprocesses)
# inherits it too; a test that wants the cache sets its own directory.
os.environ["RTML_CACHE_DIR"] = "off"


@pytest.fixture(autouse=True)
def _plain_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("TERM", "dumb")
    monkeypatch.delenv("RTML_DEBUG", raising=False)
    monkeypatch.delenv("RTML_CONFIG", raising=False)
    monkeypatch.setenv("RTML_CACHE_DIR", "off")  # a test that wants the cache sets its own


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def invoke(runner: CliRunner):
    """Run ``rtml ARGS…`` in-process; returns the Result (stdout and stderr separate)."""

    def _invoke(*args: str, input: str | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return _invoke
