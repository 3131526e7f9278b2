# The two set-up commands of the README live here: `make main` and `make test`.
# Everything a fresh machine needs is installed by `make setup` (idempotent).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export DO_NOT_TRACK := true
export MLFLOW_DISABLE_TELEMETRY := true
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export PREFECT_SERVER_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1

.PHONY: setup main test test-fast dvc-repro bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	set -o pipefail; $(BIN)/pip install -q -c constraints.txt -e ".[dev]" 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $(STAMP)

setup: $(STAMP)

## The main job on the embedded default: build the default world (cached), then one full
## right-to-be-forgotten request for a forget01 author through the Prefect flow (local MLflow +
## S3 servers started on 127.0.0.1 and left running for the UI; `lethe stack down` stops them).
ANCHOR ?= Basil Mahfouz Al-Kuwaiti
main: setup
	$(BIN)/lethe world build --size default
	$(BIN)/lethe forget "$(ANCHOR)" --requester make-main --reason "embedded default demo"

## The test suite (unit tests + the tiny-world end-to-end tests), one module per worker process:
## a request's steps leave a core idle most of the time (server round trips, one-thread generation),
## so two workers finish the suite in well under the time of one on a 2-core machine.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

## The fast tier: everything that needs no trained world and no server (under a minute).
test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

dvc-repro: setup
	PATH=$(CURDIR)/$(BIN):$$PATH dvc repro

bench: setup
	$(BIN)/python bench/world_build.py --sizes tiny,default
	$(BIN)/python bench/sampling_throughput.py
	$(BIN)/python bench/mining.py --split forget05
	$(BIN)/python bench/efficacy.py --split forget01
	$(BIN)/python bench/main_job.py

clean:
	rm -rf artifacts .pytest_cache
