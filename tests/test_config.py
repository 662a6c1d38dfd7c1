"""The configuration file (`rtml.toml`, `--config`, `$RTML_CONFIG`), shell completion and
the help text of flags (issue #13 item 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from rtml_cli.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
SHOP = REPO / "sample_data" / "shop"
RTML = Path(sys.executable).parent / "rtml"

PLANNING = """
[evaluate]
arm = ["control=0.040", "new=0.046"]
seeds = 6
requests = 20000
policies = "ab,thompson"
"""


def _planning(stdout: str) -> dict:
    doc = json.loads(stdout)
    assert doc["kind"] == "evaluate bandits"
    return doc


def test_rtml_toml_in_the_working_directory_is_read(invoke, tmp_path, monkeypatch):
    (tmp_path / "rtml.toml").write_text(PLANNING)
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = _planning(result.stdout)
    assert doc["seeds"] == 6 and doc["horizon"] == 20000
    assert [a["arm"] for a in doc["arms"]] == ["control", "new"]
    assert {p["policy"] for p in doc["policies"]} == {"ab", "thompson"}


def test_the_command_line_wins(invoke, tmp_path):
    config = tmp_path / "cron.toml"
    config.write_text(PLANNING)
    result = invoke("--config", config, "evaluate", "--seeds", "4", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    doc = _planning(result.stdout)
    assert doc["seeds"] == 4 and doc["horizon"] == 20000


def test_rtml_config_variable_names_the_file(invoke, tmp_path, monkeypatch):
    config = tmp_path / "elsewhere.toml"
    config.write_text(PLANNING)
    monkeypatch.setenv("RTML_CONFIG", str(config))
    result = invoke("evaluate", "--format", "json")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert _planning(result.stdout)["seeds"] == 6


def test_arguments_and_subcommand_tables(invoke, tmp_path):
    """An argument (EVENTS) from the file; `[drift.popularity]` is `rtml drift popularity`."""
    config = tmp_path / "rtml.toml"
    config.write_text(
        f'[drift.popularity]\nevents = "{SHOP / "events.parquet"}"\nend = "2024-03-25"\n'
        'current = "1d"\nreference = "7d"\n'
    )
    result = invoke("--config", config, "drift", "popularity", "--format", "json")
    assert result.exit_code in (ExitCode.OK, ExitCode.DRIFT), result.stderr
    doc = json.loads(result.stdout)
    assert doc["kind"] == "drift popularity"
    assert doc["current_window"][0].startswith("2024-03-24")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[simulat]\nk = 1\n", "'simulat' in the top level is not a command"),
        ("[simulate]\nstrategy = 'x'\n", "[simulate] has no option 'strategy'"),
        ("[evaluate.opee]\nk = 1\n", "'opee' in [evaluate] is not a command (commands there: "),
        ("[simulate\n", "is not valid TOML"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_78(invoke, tmp_path, text, message):
    config = tmp_path / "rtml.toml"
    config.write_text(text)
    result = invoke("--config", config, "data", "contracts")
    assert result.exit_code == ExitCode.CONFIG == 78
    assert result.stderr.startswith("rtml: error: ") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_a_missing_file_is_exit_78(invoke, tmp_path):
    result = invoke("--config", tmp_path / "nope.toml", "data", "contracts")
    assert result.exit_code == ExitCode.CONFIG and "does not exist" in result.stderr


def test_a_bad_value_is_a_usage_error(invoke, tmp_path):
    """Values are parsed as if typed: the same checks and exit code 2."""
    config = tmp_path / "rtml.toml"
    config.write_text('[evaluate]\narm = ["control=0.04", "new=0.05"]\nseeds = "many"\n')
    result = invoke("--config", config, "evaluate")
    assert result.exit_code == ExitCode.USAGE and "--seeds" in result.stderr


def test_the_example_config_is_valid(invoke):
    """examples/rtml.toml names only commands and options that exist."""
    result = invoke("--config", REPO / "examples" / "rtml.toml", "data", "contracts", "-f", "json")
    assert result.exit_code == ExitCode.OK, result.stderr


# --- help and completion ---------------------------------------------------------------


@pytest.mark.parametrize("words", [[], ["simulate"], ["data", "import"], ["evaluate", "ope"]])
def test_flags_show_no_value_in_help(invoke, words):
    result = invoke(*words, "--help")
    assert result.exit_code == ExitCode.OK
    assert "<bool>" not in result.stdout and "--help" in result.stdout


def test_root_help_offers_completion_and_config(invoke):
    text = invoke("--help").stdout
    assert "--install-completion" in text and "--config" in text and "--version" in text


def _complete(line: str) -> list[str]:
    words = line.split(" ")
    env = {
        **os.environ,
        "COMP_WORDS": line,
        "COMP_CWORD": str(len(words) - 1),
        "_RTML_COMPLETE": "complete_bash",
    }
    done = subprocess.run([str(RTML)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_bash_completion_completes_commands_and_choices():
    assert _complete("rtml sim") == ["simulate"]
    assert _complete("rtml simulate --format ") == ["table", "json", "csv", "markdown"]


def test_evaluate_alone_runs_from_the_config(invoke, tmp_path, monkeypatch):
    """`rtml evaluate` with every option in rtml.toml runs (it would print its help)."""
    (tmp_path / "rtml.toml").write_text(PLANNING + 'format = "json"\n')
    monkeypatch.chdir(tmp_path)
    result = invoke("evaluate")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert _planning(result.stdout)["seeds"] == 6


def test_a_group_alone_prints_its_help_without_an_error_line(invoke):
    result = invoke("data")
    assert "Usage: rtml data" in result.stdout and "error" not in result.stderr
