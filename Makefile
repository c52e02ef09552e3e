# civicard — `make run` serves the demo town; `make test` runs the whole suite. Both set up .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: run test install install-dev lint typecheck unit bench bench-quick messages screenshots clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

# OpenFisca-core, the programs benchmark's reference
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev,bench]'
	touch $@ $(VENV)/.installed-dev $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: install, migrate the embedded SQLite database in var/, load the demo town and serve it
run: $(VENV)/.installed
	$(BIN)/civicard demo

## test: install dev extras, then lint, type-check and run every test (SQLite, PostgreSQL, browser)
test: $(VENV)/.installed-dev
	@bash scripts/system-deps.sh || echo "WARNING: could not install system packages; browser tests will skip"
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 --dist loadfile -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

unit: $(VENV)/.installed-dev
	$(BIN)/python -m pytest tests/unit -q

## bench: every benchmark at full size, 3 runs each (hours; on a quiet machine), figures beside their references into bench/RESULTS.md
bench: $(VENV)/.installed-bench
	$(BIN)/python bench/run_all.py
	$(BIN)/python bench/soak.py  # 10 min of mixed load on one server; appends its section to bench/RESULTS.md

## bench-quick: every benchmark at CI size, one run each (minutes), into bench/RESULTS.quick.md (git-ignored)
bench-quick: $(VENV)/.installed-dev
	$(BIN)/python bench/run_all.py --quick

## screenshots: walk every role's main path on a fresh demo town in headless Chromium; copy the shots README.md shows to docs/screenshots/
# CI=true: without Chromium the journey fails instead of skipping, so no stale screenshot is copied.
SHOTS := tests/e2e/screenshots
screenshots: $(VENV)/.installed-dev
	rm -f $(SHOTS)/journey-*.png
	CI=true $(BIN)/python -m pytest -q tests/e2e/test_journey.py
	mkdir -p docs/screenshots
	rm -f docs/screenshots/journey-*.png
	cp $(SHOTS)/journey-*.png docs/screenshots/

## messages: extract the pages' texts (babel.cfg) into messages.pot and merge them into the es and en catalogs
LOCALE := src/civicard/adapters/web/locale
messages: $(VENV)/.installed
	$(BIN)/pybabel extract -F babel.cfg --no-wrap --project civicard -o $(LOCALE)/messages.pot .
	$(BIN)/pybabel update -i $(LOCALE)/messages.pot -d $(LOCALE) -D messages --no-wrap --ignore-obsolete

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
