#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment, from the workflow's working directory
# (the repository root): install this checkout's `most` package without touching the pins.
set -euo pipefail
python -m pip install --no-deps --editable .
