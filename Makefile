# The two commands: `make run` and `make test`. Both create the virtual
# environment on first use and reinstall only when pyproject.toml changes.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The page's Markdown and sanitizer libraries: npm installs them from package-lock.json and
# `vendor` copies their browser modules into the package (git-ignored). Both steps are stamped.
NPM          ?= npm
WEB_VENDOR   := src/typewriter/web/vendor
NODE_STAMP   := node_modules/.installed
VENDOR_STAMP := $(WEB_VENDOR)/.copied

.PHONY: run test lint bench install vendor clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(NODE_STAMP): package.json package-lock.json
	@command -v $(NPM) >/dev/null || { echo "npm is needed for the page's libraries (Debian: apt-get install npm)" >&2; exit 1; }
	$(NPM) ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The ES module builds, without their source-map comments (the maps are not shipped).
$(VENDOR_STAMP): $(NODE_STAMP)
	rm -rf $(WEB_VENDOR)
	mkdir -p $(WEB_VENDOR)
	sed '/^\/\/# sourceMappingURL=/d' node_modules/marked/lib/marked.esm.js > $(WEB_VENDOR)/marked.js
	sed '/^\/\/# sourceMappingURL=/d' node_modules/dompurify/dist/purify.es.mjs > $(WEB_VENDOR)/dompurify.js
	cp node_modules/marked/LICENSE $(WEB_VENDOR)/marked-LICENSE.txt
	cp node_modules/dompurify/LICENSE $(WEB_VENDOR)/dompurify-LICENSE.txt
	touch $(VENDOR_STAMP)

vendor: $(VENDOR_STAMP)

run: $(STAMP) $(VENDOR_STAMP)
	$(BIN)/typewriter serve

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

# The tests start their own PostgreSQL and a headless Chromium; the script installs their
# binaries when they are missing.
test: lint $(VENDOR_STAMP)
	bash scripts/ensure-test-services.sh
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis node_modules $(WEB_VENDOR)
