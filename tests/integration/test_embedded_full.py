"""The embedded default at full size: budget and corpus size (slow: `make test-slow`)."""

import csv
import json
import time

import pytest

from tests.conftest import copy_repo, git_init, run, snakemake_plan

pytestmark = pytest.mark.slow


def test_full_embedded_data_stages_within_budget(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    git_init(repo)
    run(["snakemake", "--cores", "all"], repo, timeout=1800)
    seconds = {}
    for stage in ("download", "prepare"):
        with open(repo / "results" / "embedded" / "benchmarks" / f"{stage}.tsv") as handle:
            seconds[stage] = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    assert sum(seconds.values()) <= 180, seconds
    report = json.loads((repo / "results" / "embedded" / "prepare" / "quality_report.json").read_text())
    assert 5000 <= report["splits"]["train"]["utterances"] <= 10000
    assert report["skipped_total"] == 0 and report["held_out_in_training"]["found"] == 0
    started = time.monotonic()
    assert snakemake_plan(repo) == set()
    assert time.monotonic() - started <= 5
