# Two commands set everything up on a fresh machine:
#   make run    create .venv, install, run the embedded pipeline (CPU, offline, minutes)
#   make test   create .venv, install, run the unit tests and the integration smoke tests (minutes;
#               the other integration tests: make test-integration; the end-to-end ones: make test-e2e)
# Both are idempotent: the venv is reinstalled only when pyproject.toml or the lock changes.
# The venv installs requirements/embedded.lock (hashed: core + embedded + dev); `make lock` regenerates
# it, with requirements/cluster.lock (core only, for envs/most.yaml), after a change to pyproject.toml.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/embedded.lock
CLUSTER_LOCK := requirements/cluster.lock
UV ?= uv
# Tools of the venv first on PATH, for the rules' `most` and for dvc's `snakemake` commands.
export PATH := $(BIN):$(PATH)

.PHONY: install lock run pull lint test test-integration test-e2e clean

install: $(STAMP)

# Every package from the lock, each checked against its hashes, then this checkout without deps;
# last, uv (from the lock) checks, offline, that uv.lock still matches pyproject.toml's dependencies.
$(STAMP): pyproject.toml uv.lock $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes --requirement $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --editable .
	$(BIN)/uv lock --check --offline --quiet || { echo "uv.lock is out of date with pyproject.toml: run make lock" >&2; exit 1; }
	touch $(STAMP)

# uv.lock resolves every profile at once, keeping the versions it already holds (`uv lock --upgrade`
# moves them); each profile's hashed requirements are exported from it, and the cluster lock's digest
# goes into envs/most.yaml so that Snakemake rebuilds its conda environment. uv: the dev extra's
# (.venv/bin is first on PATH) or uv==0.13.9 on PATH; it reads PyPI.
lock:
	$(UV) lock
	$(UV) export --quiet --frozen --no-emit-project --extra embedded --extra dev --output-file $(LOCK)
	$(UV) export --quiet --frozen --no-emit-project --output-file $(CLUSTER_LOCK)
	sed -i "s|^# $(CLUSTER_LOCK) sha256: .*|# $(CLUSTER_LOCK) sha256: $$(sha256sum $(CLUSTER_LOCK) | cut -d' ' -f1)|" envs/most.yaml

run: $(STAMP)
	$(BIN)/snakemake --cores all

# A clone's outputs from the DVC remote, made current for Snakemake: DVC restores files with new
# modification times and does not track the config views, so check that the outputs match
# dvc.lock, write the views, then mark the outputs up to date in pipeline order. The pipelines of
# targets (pipelines/*/dvc.yaml: the ablations) come along where the run recorded them (a dvc.lock).
PULLED = dvc.yaml $(patsubst %/dvc.lock,%/dvc.yaml,$(wildcard pipelines/*/dvc.lock))
pull: $(STAMP)
	$(BIN)/dvc pull $(PULLED)
	$(BIN)/dvc status --quiet $(PULLED) || { $(BIN)/dvc status $(PULLED); echo "outputs differ from dvc.lock: not marking them up to date" >&2; exit 1; }
	$(BIN)/snakemake --cores all config_views
	$(BIN)/snakemake --cores all --touch

# The workflow (Snakemake's linter, snakefmt) and the Python (ruff), checked, never rewritten:
# `snakefmt workflow` and `ruff format .` apply the formatting.
lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check workflow
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Two workers: most tests wait on one-core stage processes (interpreter and library start-up), so a
# second worker doubles the throughput on 2 cores. Tests that need one port share a group (one worker).
test: $(STAMP)
	$(BIN)/python -m pytest --numprocesses 2 --dist loadgroup --durations=20

test-integration: $(STAMP)
	$(BIN)/python -m pytest --numprocesses 2 --dist loadgroup --durations=20 -m 'integration and not e2e and not slow'

test-e2e: $(STAMP)
	$(BIN)/python -m pytest -m 'e2e or slow' --durations=10

clean:
	rm -rf results .snakemake
