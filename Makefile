# Two commands do all set-up on a fresh machine with Python 3.11+: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Modules whose every line and branch must be tested: order placement, cancellation and reconciliation.
CORE := workbench/model.py,workbench/filters.py,workbench/risk.py,workbench/matching.py,workbench/executors/*.py

.PHONY: run test lint clean chromium

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The main job: a testnet session against the bundled local exchange (started in the session's kernel),
# then its post-trade report (reports/<session>.html).
SESSION ?= testnet-$(shell date -u +%Y%m%d-%H%M%S)
run: $(VENV)/.installed
	$(VENV)/bin/workbench run --mode testnet --venue local --symbols BTC/USDT --bars 240 --speed 1200 \
		--strategy-params '{"fast": 5, "slow": 20, "size": 0.001}' --session-id $(SESSION) --store data/workbench.duckdb
	$(VENV)/bin/workbench report $(SESSION) --store data/workbench.duckdb

test: $(VENV)/.installed-dev chromium
	$(VENV)/bin/ruff check workbench tests benchmarks
	$(PY) -m pytest --cov --cov-report=term -p no:cacheprovider --ignore=tests/browser tests $(PYTEST_ARGS)
	# Notebooks (nbval) and the browser test run without coverage: a kernel started under pytest-cov
	# misses the startup timeout.
	$(PY) -m pytest -p no:cacheprovider --nbval-lax notebooks tests/browser
	$(PY) -m coverage report --include='$(CORE)' --fail-under=100

# The browser test drives Debian's Chromium through Playwright (Playwright's own download fails here).
chromium:
	@command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check workbench tests benchmarks

clean:
	rm -rf $(VENV) .coverage
