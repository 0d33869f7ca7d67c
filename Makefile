# Two commands do all set-up on a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Modules whose every line and branch must be tested (order placement).
CORE := workbench/model.py,workbench/filters.py,workbench/risk.py,workbench/matching.py,workbench/executors/paper.py

.PHONY: run test lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: a testnet session against the bundled local exchange (started in the session's kernel).
run: $(VENV)/.installed
	$(VENV)/bin/workbench run --mode testnet --venue local --symbols BTC/USDT --bars 240 --speed 1200 \
		--strategy-params '{"fast": 5, "slow": 20, "size": 0.001}' --store data/workbench.duckdb

test: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check workbench tests benchmarks
	$(PY) -m pytest --cov --cov-report=term -p no:cacheprovider tests $(PYTEST_ARGS)
	# nbval runs the notebooks without coverage: a kernel started under pytest-cov misses nbval's startup timeout.
	$(PY) -m pytest -p no:cacheprovider --nbval-lax notebooks
	$(PY) -m coverage report --include='$(CORE)' --fail-under=100

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check workbench tests benchmarks

clean:
	rm -rf $(VENV) .coverage
