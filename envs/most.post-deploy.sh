#!/usr/bin/env bash
# Run by Snakemake inside the new conda environment, from the workflow's working directory
# (the repository root): install the cluster lock (every package checked against its hashes),
# then this checkout's `most` package without touching the pins.
set -euo pipefail
lock=requirements/cluster.lock
want=$(sed -n "s|^# $lock sha256: ||p" envs/most.yaml)
have=$(sha256sum "$lock" | cut -d' ' -f1)
if [ "$want" != "$have" ]; then
  echo "envs/most.yaml names $lock sha256 ${want:-(none)}, the file has $have: run make lock" >&2
  exit 1
fi
python -m pip install --require-hashes --requirement "$lock"
python -m pip install --no-deps --editable .
