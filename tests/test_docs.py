"""Keep the docs honest: every command and option has help text and is documented, the
generated reference is fresh, the exit codes match, and no link points nowhere.

The commands and options come from the live Typer app, so these tests follow any change to
the CLI: a new option must get help text and a mention on its command's page in ``docs/``,
and ``make docs`` must be rerun to regenerate ``docs/cli-reference.md``.
"""

from __future__ import annotations

import difflib
import importlib.util
import re
import sys
from pathlib import Path

import pytest

from rtml_cli.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent
DOCS = REPO / "docs"
REFERENCE = DOCS / "cli-reference.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", REPO / "scripts" / "gen_cli_reference.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
COMMANDS = list(gen.walk())
LEAVES = [c for c in COMMANDS if not c.is_group]
README = (REPO / "README.md").read_text()
# Hand-written pages; the generated reference does not count as documentation.
PAGES = {f"docs/{p.name}": p.read_text() for p in sorted(DOCS.glob("*.md")) if p != REFERENCE}

# The page(s) that explain each top-level command; an option must be mentioned there (or in
# the README). A command group added later and not listed here may be documented anywhere.
PAGE_OF = {
    "data": ["data.md", "contracts.md"],
    "precompute": ["precompute.md", "cron.md"],
    "neighbors": ["precompute.md"],
    "simulate": ["simulate.md", "replay-protocol.md"],
    "evaluate": ["evaluate.md"],
    "retrain": ["retrain.md"],
    "drift": ["retrain.md"],
    "report": ["report.md"],
}


def _pages_for(path: tuple[str, ...]) -> dict[str, str]:
    names = PAGE_OF.get(path[0]) if path else None
    pages = {f"docs/{n}": PAGES[f"docs/{n}"] for n in names} if names else dict(PAGES)
    return {"README.md": README, **pages}


def _mentions(text: str, word: str) -> bool:
    if word.startswith("-"):
        return re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", text) is not None
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


def _id(command) -> str:
    return command.name


def test_there_are_commands():
    assert len(LEAVES) >= 4


def test_the_reference_is_up_to_date():
    fresh = gen.render()
    current = REFERENCE.read_text() if REFERENCE.exists() else ""
    if current != fresh:
        diff = "".join(
            list(
                difflib.unified_diff(
                    current.splitlines(keepends=True),
                    fresh.splitlines(keepends=True),
                    "docs/cli-reference.md",
                    "generated from the app",
                )
            )[:40]
        )
        pytest.fail(f"docs/cli-reference.md is stale: run `make docs` and commit it.\n{diff}")


@pytest.mark.parametrize("command", LEAVES, ids=_id)
def test_command_has_help_and_is_in_the_readme(invoke, command):
    result = invoke(*command.path, "--help")
    assert result.exit_code == ExitCode.OK, result.stderr
    assert "Usage" in result.stdout
    assert gen.help_text(command.command), f"{command.name} has no help text"
    assert command.name in README, f"README does not list {command.name}"


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_every_option_has_help_and_is_documented(command):
    if command.path:
        assert gen.help_text(command.command), f"{command.name} has no help text"
    pages = _pages_for(command.path)
    if command.path:
        assert any(command.name in text for text in pages.values()), (
            f"{command.name} is not mentioned in {', '.join(pages)}"
        )
    missing_help, undocumented = [], []
    for param in gen.visible_params(command.command):
        words = gen.spellings(param)
        if not gen.help_text(param):
            missing_help.append(words[0])
        if not any(_mentions(text, w) for w in words for text in pages.values()):
            undocumented.append(" / ".join(words))
    assert not missing_help, f"{command.name}: no help text for {', '.join(missing_help)}"
    assert not undocumented, (
        f"{command.name}: {', '.join(undocumented)} not mentioned in {', '.join(pages)}; "
        "say what it does on the command's page in docs/"
    )


def test_every_exit_code_is_documented():
    table = (DOCS / "exit-codes.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\| {code.value} \| {code.name} \|", table, re.M), code


_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize(
    "page",
    ["README.md", "CONTRIBUTING.md", *(f"docs/{p.name}" for p in sorted(DOCS.glob("*.md")))],
)
def test_relative_links_point_to_files(page):
    path = REPO / page
    broken = []
    for target in _LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = target.split("#", 1)[0]
        if not (path.parent / file).exists():
            broken.append(target)
    assert not broken, f"{page}: links to missing files: {', '.join(broken)}"


@pytest.mark.parametrize("command", COMMANDS, ids=_id)
def test_help_prints_every_option_help_whole(invoke, command, monkeypatch):
    """Rich reads ``[word]`` in a help text as markup and drops it: ``--engine`` told users
    to ``pip install 'rtml'`` (the ``[ray]`` gone) and ``--dim`` printed "Embedding
    dimension ." Every option's help, as written, must appear in ``--help``."""
    monkeypatch.setenv("COLUMNS", "2000")  # one line per option: no wrapping to undo
    result = invoke(*command.path, "--help")
    assert result.exit_code == ExitCode.OK, result.stderr
    shown = " ".join(result.stdout.replace("│", " ").split())
    lost = [
        gen.spellings(param)[0]
        for param in gen.visible_params(command.command)
        if " ".join(gen.help_text(param).split()) not in shown
    ]
    # and the command's own description, paragraph by paragraph
    lost += [
        f"its description ({paragraph.split()[0]}…)"
        for paragraph in gen.help_text(command.command).split("\n\n")
        if paragraph.strip() and " ".join(paragraph.split()) not in shown
    ]
    assert not lost, f"{command.name}: --help mangles the help of {', '.join(lost)}"
