# The two commands a new user needs: `make demo` and `make test`.
# Both build their own virtual environment in .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RTML := $(VENV)/bin/rtml
DEMO_OUT ?= demo_out
LINT_PATHS := src tests bench scripts

.PHONY: demo test lint typecheck docs clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	RTML=$(RTML) OUT=$(DEMO_OUT) bash examples/demo.sh

test: $(VENV)/.installed lint
	$(PY) -m pytest -n auto --dist loadfile

# ruff check includes the complexity limit (C901, max-complexity in pyproject.toml);
# mypy (configured in pyproject.toml) comes from the test extra like ruff.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	$(VENV)/bin/mypy

# mypy alone.
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

# Regenerate docs/cli-reference.md from the Typer app (tests/test_docs.py checks it is fresh).
docs: $(VENV)/.installed
	$(PY) scripts/gen_cli_reference.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .mypy_cache
