# Two entry points for a new user: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install -c constraints.txt

$(BIN)/scales: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) -e '.[test]'
	touch $@

.PHONY: demo test
demo: $(BIN)/scales
	$(BIN)/scales demo --out out/demo --force

test: $(BIN)/scales
	$(BIN)/python -m pytest -n 2 -q
