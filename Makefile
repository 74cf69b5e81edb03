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

.PHONY: setup repro test test-fast docs chromium bench lint clean

setup: $(STAMP) $(PLOTS_PAGE)

# Reinstall only when the pins change. uv installs the pins in ~45 s where pip takes ~135 s (2 AVX-512 cores; pip
# compiles every .pyc on one core). uv reads no pip.conf, so the machine's pip settings (find-links, index URLs,
# constraints: a local torch CPU wheel, say) are handed to it, and it resolves from every index as pip does.
UV_VERSION := 0.13.9
PIP_TO_UV := import shlex, sys; flags = {}; \
  [flags.setdefault(k.rpartition(".")[2], []).extend(x for s in shlex.split(v) for x in s.split()) for k, _, v in \
   (line.strip().partition("=") for line in sys.stdin) if v]; \
  print(" ".join(f"--{k} {shlex.quote(x)}" for k in ("index-url", "extra-index-url", "find-links", "constraint") \
                 for x in dict.fromkeys(flags.get(k, []))))

# The torch build. Empty (the default): what pip resolves on this machine: from PyPI alone, the CUDA 13 build on
# Linux x86_64 (torch and ~20 nvidia-* wheels, several GB); where the machine's pip config offers a local wheel
# (a CPU one, say), that one. TORCH=cpu: PyTorch's CPU wheels (no CUDA download); TORCH=cu128, cu126, ...: that
# CUDA build; TORCH=auto: the build for the installed NVIDIA driver. It is uv's --torch-backend (PyTorch's own
# wheel indexes, which must then be reachable); choose it on a fresh venv: `make clean setup TORCH=cpu`.
TORCH ?=

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv==$(UV_VERSION)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode --index-strategy unsafe-best-match \
		$$($(BIN)/python -m pip config list | $(BIN)/python -c '$(PIP_TO_UV)') $(if $(TORCH),--torch-backend $(TORCH)) \
		-e '.[test,docs]'
	touch $@

# The `dvc plots show` page template (.dvc/config plots.html_template) with the Vega scripts inlined, so the page
# draws with no network: generated from the pinned vl-convert-python (900 kB of JavaScript), not committed.
$(PLOTS_PAGE): $(STAMP)
	$(BIN)/medaug -q plots page --output $@

# params.yaml checked first: a bad value (a data.source that is no path, say) fails with the fix, before DVC
# fails on the dependency it names
repro: setup
	$(BIN)/medaug check-params
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

# The documentation site (mkdocs.yml) into site/, every link checked (--strict); tests/integration/test_docs.py
# builds it in CI. `.venv/bin/mkdocs serve` previews it while you write.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

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
	$(BIN)/python bench/cpu_isa.py
	$(BIN)/python bench/real_server.py
	$(BIN)/python bench/run.py

lint: setup
	$(BIN)/python -m compileall -q src stages tests

clean:
	rm -rf $(VENV) site
