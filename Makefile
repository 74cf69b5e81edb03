# Two commands on a fresh machine: `make repro` (the whole pipeline) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed

export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export HF_HUB_DISABLE_TELEMETRY := 1
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test bench lint clean

setup: $(STAMP)

# Reinstall only when the pins change.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

repro: setup
	dvc repro

test: setup
	$(BIN)/python -m pytest -q

bench: setup
	$(BIN)/python bench/teacher.py
	$(BIN)/python bench/train_step.py
	$(BIN)/python bench/scorer.py
	$(BIN)/python bench/run.py

lint: setup
	$(BIN)/python -m compileall -q src stages tests

clean:
	rm -rf $(VENV)
