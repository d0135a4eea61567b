# Two commands for a fresh clone: `make demo` and `make test`. Each creates .venv when needed.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test test-slow bench lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/genlab demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not slow" -q

test-slow: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m slow -q

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/bench_vae.py

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
