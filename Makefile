# Fraud feature platform: one target per step. `make` (or `make help`) lists them.
# Every step is a `fraud` command (fraud_cli/main.py); this file only orders them.

.DEFAULT_GOAL := help
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
FRAUD := $(BIN)/fraud
# Written after a successful install; re-installs only when the dependency files change.
STAMP := $(VENV)/.install-stamp
# uv (from PyPI, into the venv) installs exactly the set pip resolves from constraints.txt,
# about three times faster on a cold machine (2 min against 6 here). INSTALLER=pip: plain pip.
INSTALLER ?= uv

.PHONY: help venv install redis redis-stop redis-cluster redis-cluster-stop data features train evaluate serve drift demo \
	repro test test-unit test-integration fuzz lint format docs docs-serve bench clean

## Show this help
help:
	@awk 'BEGIN { printf "Usage: make <target>\n\nTargets:\n" } \
		/^## / { doc = substr($$0, 4); next } \
		/^[a-zA-Z0-9_-]+:/ { if (doc != "") { split($$0, t, ":"); printf "  %-17s %s\n", t[1], doc }; doc = ""; next } \
		{ doc = "" }' $(MAKEFILE_LIST)

## Create the virtualenv in .venv with Python 3.11 (if missing)
venv: $(BIN)/python

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

## Install the project and dev tools, pinned by constraints.txt (skipped when up to date)
install: $(STAMP)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	@echo "==> installing the project and its pinned dependencies into $(VENV) ($(INSTALLER))"
ifeq ($(INSTALLER),uv)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.9,<1"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -c constraints.txt -e ".[dev]"
else
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
endif
	@touch $@

## Start a local redis-server on a free port (REDIS_URL overrides)
redis: install
	$(FRAUD) redis start

## Stop the local redis-server that `make redis` started
redis-stop: install
	$(FRAUD) redis stop

## Start a local Redis Cluster, 3 masters + 3 replicas (use it with REDIS_MODE=cluster)
redis-cluster: install
	$(FRAUD) redis start --cluster

## Stop the local Redis Cluster that `make redis-cluster` started
redis-cluster-stop: install
	$(FRAUD) redis stop --cluster

## Generate the synthetic transactions and late labels into data/raw
data: install
	$(FRAUD) data generate

## Build offline feature tables, feast apply, materialize the latest state into Redis
features: install redis
	$(FRAUD) features build
	$(FRAUD) features apply
	$(FRAUD) features materialize

## Train, cross-validate and register the model in MLflow
train: install
	$(FRAUD) train run

## Evaluate the production model on the holdout (reports/evaluation/metrics.json)
evaluate: install
	$(FRAUD) train evaluate --output reports/evaluation/metrics.json

## Run the scoring API in the foreground (PORT=8000)
serve: install redis
	$(FRAUD) serve api --host 127.0.0.1 --port $(or $(PORT),8000)

## Drift report of the logged predictions against the training reference
drift: install
	$(FRAUD) monitor drift

## The whole platform end to end: data, features, train, API, a scored request, drift
demo: install
	VENV=$(VENV) bash docker/scripts/demo.sh

## Rebuild data, features, model and evaluation through DVC (dvc.yaml)
repro: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro

## Run the whole test suite: unit, integration, e2e (tests start their own redis-server)
test: install
	@$(BIN)/python -c "from fraud_platform.redis_server import find_redis_server; \
		print('redis-server:', find_redis_server())"  # apt-get installs it when missing and root
	$(BIN)/pytest

## Run the fast tests only (tests/unit: no Redis, MLflow, Feast CLI or uvicorn; seconds)
test-unit: install
	$(BIN)/pytest tests/unit

## Run the tests against real stacks (tests/integration: redis-server, MLflow, Feast, uvicorn)
test-integration: install
	$(BIN)/pytest tests/integration

## Fuzz the live API longer than the suite does (schemathesis, 450 examples per operation)
fuzz: install
	FUZZ_MAX_EXAMPLES=450 FUZZ_MIN_CASES=1000 $(BIN)/pytest -n 0 tests/integration/serving/test_fuzz.py

## Lint: ruff check, ruff format --check, mypy
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy .

## Format the code with ruff
format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# MkDocs Material prints an end-of-life banner on every run (NO_MKDOCS_2_WARNING silences it):
# the pinned version builds this site; the banner asks for no action here.
MKDOCS := NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs

## Build the documentation site into site/ (mkdocs build --strict: a broken link fails)
docs: install
	$(MKDOCS) build --strict --site-dir site

## Serve the documentation with live reload (DOCS_PORT=8001)
docs-serve: install
	$(MKDOCS) serve --strict --dev-addr 127.0.0.1:$(or $(DOCS_PORT),8001)

## Run the benchmarks under benchmarks/
bench: install
	@shopt -s nullglob; ran=0; \
	for script in benchmarks/[!_]*.py; do \
		module=$$(basename "$$script" .py); ran=1; \
		echo "==> python -m benchmarks.$$module"; $(BIN)/python -m "benchmarks.$$module"; \
	done; \
	[ "$$ran" = 1 ] || echo "no benchmark scripts under benchmarks/ yet"

## Remove generated data, models, reports, caches and local servers' state (keeps .venv)
clean:
	-@[ -x $(FRAUD) ] && $(FRAUD) redis stop >/dev/null 2>&1 || true
	-@[ -x $(FRAUD) ] && $(FRAUD) redis stop --cluster >/dev/null 2>&1 || true
	rm -rf data/raw data/features data/registry.db data/online_store.db data/prediction_log
	rm -rf models reports mlruns mlartifacts mlflow.db .run
	rm -rf .pytest_cache .mypy_cache .ruff_cache site
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +
