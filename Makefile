# Two commands set everything up on a fresh machine:
#   make run    create .venv, install, run the embedded pipeline (CPU, offline, minutes)
#   make test   create .venv, install, run the tests (slow ones: make test-slow)
# Both are idempotent: the venv is rebuilt only when pyproject.toml changes.

PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
# Tools of the venv first on PATH, for the rules' `most` and for dvc's `snakemake` commands.
export PATH := $(BIN):$(PATH)

.PHONY: install run test test-slow clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --editable '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/snakemake --cores all

test: $(STAMP)
	$(BIN)/python -m pytest

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

clean:
	rm -rf results .snakemake
