# The two commands: `make run` and `make test`. Both create the virtual environment on first
# use and reinstall only when pyproject.toml changes; `make run` installs only what serving
# needs, `make test` (and `make lint`) add the dev tools.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
# LiteLLM's proxy, the relay benchmark's other gateway, in an environment of its own (it pins
# versions, rich among them, that must not change the typewriter being measured).
BENCH_VENV  := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed
# The page's Markdown and sanitizer libraries are committed under web/vendor/ (so a clone, a
# wheel and an sdist serve the full page without Node). `make vendor` refreshes them from
# package-lock.json; `make test` runs `npm ci` so a test can check they still match the lock.
NPM        ?= npm
WEB_VENDOR := src/typewriter/web/vendor
NODE_STAMP := node_modules/.installed

.PHONY: run test lint bench install vendor clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(RUN_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(DEV_STAMP)

install: $(RUN_STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v $(NPM) >/dev/null || { echo "npm is needed for the page's libraries (Debian: apt-get install npm)" >&2; exit 1; }
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

vendor: $(NODE_STAMP)
	bash scripts/vendor-web.sh $(WEB_VENDOR)

run: $(RUN_STAMP)
	$(BIN)/typewriter serve

lint: $(DEV_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The tests start their own PostgreSQL and a headless Chromium; the script installs their
# binaries when they are missing.
test: lint $(NODE_STAMP)
	bash scripts/ensure-test-services.sh
	$(BIN)/python -m pytest

$(BENCH_STAMP): pyproject.toml
	$(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check '.[bench]'
	touch $(BENCH_STAMP)

bench: $(DEV_STAMP) $(BENCH_STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(BENCH_VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis node_modules
