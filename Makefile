# Two commands on a fresh machine: `make repro` (the whole pipeline) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed
PLOTS_PAGE := .dvc/plots/page.html

export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_DISABLE_TELEMETRY := 1
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast chromium bench lint clean

setup: $(STAMP) $(PLOTS_PAGE)

# Reinstall only when the pins change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

# The `dvc plots show` page template (.dvc/config plots.html_template) with the Vega scripts inlined, so the page
# draws with no network: generated from the pinned vl-convert-python (900 kB of JavaScript), not committed.
$(PLOTS_PAGE): $(STAMP)
	$(BIN)/medaug -q plots page --output $@

repro: setup
	dvc repro

# pytest-xdist: one worker per core, each test module one unit of work (its module fixtures built once), the longest
# modules first (tests/conftest.py); `make test PYTEST_WORKERS=0` runs in one process.
PYTEST_WORKERS ?= auto
XDIST := -n $(PYTEST_WORKERS) --dist loadscope --no-loadscope-reorder

# Every tier (tests/unit, tests/integration, tests/dag): what CI runs; prints the 25 slowest tests.
test: setup chromium
	$(BIN)/python -m pytest -q $(XDIST) --durations=25

# The unit tier only (in process: no subprocess, server or DVC run): the day-to-day loop.
test-fast: setup
	$(BIN)/python -m pytest -q $(XDIST) tests/unit

# tests/integration/test_plots.py draws the plots page in a real headless Chromium: installed here when missing
# and we are root.
chromium:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
	@command -v chromium >/dev/null || echo "chromium missing (install it as root: apt-get install -y chromium);" \
		"tests/integration/test_plots.py will skip its browser tests"

bench: setup
	$(BIN)/python bench/teacher.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/scorer.py
	$(BIN)/python bench/local_teacher.py
	$(BIN)/python bench/lmeval_anchor.py
	$(BIN)/python bench/run.py

lint: setup
	$(BIN)/python -m compileall -q src stages tests

clean:
	rm -rf $(VENV)
