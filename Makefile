# The two commands a new user needs: `make demo` and `make test`.
# Both build their own virtual environment in .venv from pyproject.toml.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RTML := $(VENV)/bin/rtml
DEMO_OUT ?= demo_out

.PHONY: demo test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

demo: $(VENV)/.installed
	RTML=$(RTML) OUT=$(DEMO_OUT) bash examples/demo.sh

test: $(VENV)/.installed lint
	$(PY) -m pytest -n auto --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
