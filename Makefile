# make run   - set up a virtualenv, migrate the SQLite database, run the daemon
# make test  - set up, then ruff, mypy and the whole pytest suite
# make demo  - a demo with a replayed PBX and demo logins (no Asterisk needed)

PYTHON ?= python3
VENV ?= .venv
CONFIG ?= config/crmcomms.example.toml
BIN = $(VENV)/bin

.PHONY: setup e2e-tools run demo test lint bench screenshots clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# axe-core for the accessibility check of the browser tests (npm, pinned by package-lock.json)
AXE = tests/e2e/node_modules/axe-core/axe.min.js
e2e-tools: $(AXE)

$(AXE): tests/e2e/package.json tests/e2e/package-lock.json
	cd tests/e2e && npm ci --no-audit --no-fund
	touch $@

run: setup
	$(BIN)/crmcomms db upgrade --config $(CONFIG)
	$(BIN)/crmcomms run --config $(CONFIG)

demo: setup
	$(BIN)/crmcomms demo

lint: setup
	$(BIN)/ruff check core crmcomms tests bench
	$(BIN)/ruff format --check core crmcomms tests bench
	$(BIN)/mypy core crmcomms

test: lint e2e-tools
	$(BIN)/pytest

bench: setup
	$(BIN)/python bench/lookup.py
	$(BIN)/python bench/ami.py

screenshots: setup e2e-tools
	CRMCOMMS_SCREENSHOTS=1 $(BIN)/pytest tests/e2e -q

clean:
	rm -rf $(VENV) data tests/e2e/node_modules
