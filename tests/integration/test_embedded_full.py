"""The embedded default at full size through `make run`: budget, corpus size, learning (`make test-e2e`)."""

import csv
import json
import time

import pytest

from most import config as most_config
from tests.conftest import REPO, copy_repo, git_init, run, snakemake_plan

pytestmark = pytest.mark.e2e


def stage_seconds(repo) -> dict[str, float]:
    """Wall time per stage from Snakemake's benchmark files."""
    seconds = {}
    for path in (repo / "results" / "embedded" / "benchmarks").glob("*.tsv"):
        with open(path) as handle:
            seconds[path.stem] = float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    return seconds


def test_make_run_finishes_the_full_embedded_pipeline_within_budget_and_training_learns(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    git_init(repo)
    # `make run` as a user types it, the install excluded: this checkout's venv, never reinstalled (-o)
    (repo / ".venv").symlink_to(REPO / ".venv")
    started = time.monotonic()
    run(["make", "-o", ".venv/.installed", "run"], repo, timeout=1800)
    total = time.monotonic() - started
    seconds = stage_seconds(repo)
    print(f"make run: {total:.0f} s; stages: {seconds}")  # shown with -s, for benchmarks/README.md
    assert total <= 15 * 60, (total, seconds)
    assert (repo / "results" / "embedded" / "report.md").is_file()
    assert seconds["download"] + seconds["prepare"] <= 180, seconds
    report = json.loads((repo / "results" / "embedded" / "prepare" / "quality_report.json").read_text())
    # every configured training sentence spoken and kept, plus the spoken instructions and questions
    sentences = most_config.load(repo / "config" / "config.yaml")["download"]["embedded"]["sizes"]["train_sentences"]
    assert sentences < report["splits"]["train"]["utterances"] <= 10000
    assert report["skipped_total"] == 0 and report["held_out_in_training"]["found"] == 0
    # training: posttrain + instruct within 6 minutes on 2 cores, and the model learns ASR
    assert seconds["posttrain"] + seconds["instruct"] <= 360, seconds
    posttrain = json.loads((repo / "results" / "embedded" / "posttrain" / "summary.json").read_text())
    assert posttrain["dev_loss_end"]["asr"] < posttrain["dev_loss_start"]["asr"] / 2
    for stage in ("posttrain", "instruct"):
        summary = json.loads((repo / "results" / "embedded" / stage / "summary.json").read_text())
        assert summary["dev_asr_chance_minus_wer_ci"][0] > 0, summary  # better than chance, beyond the 95% interval
    # the report holds all four evaluations with their intervals; ASR on the test voices uses the speech
    headline = json.loads((repo / "results" / "embedded" / "report.json").read_text())
    for section, name in (
        ("asr", "wer"),
        ("tts", "wer"),
        ("audio_lm", "accuracy"),
        ("spoken_qa", "s2t_accuracy"),
        ("spoken_qa", "s2s_accuracy"),
    ):
        metric = headline[section][name]
        assert metric["ci_low"] <= metric["value"] <= metric["ci_high"] and metric["n"] >= 60, (section, name, metric)
    asr = json.loads((repo / "results" / "embedded" / "eval" / "asr" / "metrics.json").read_text())
    assert asr["sets"]["test"]["chance_minus_wer_ci"][0] > 0, asr["sets"]["test"]
    # the model speaks the test texts (one output voice) better than chance, as both judges hear it
    tts = json.loads((repo / "results" / "embedded" / "eval" / "tts" / "metrics.json").read_text())
    for kind, figures in tts["judges"].items():
        assert figures["chance_minus_wer_ci"][0] > 0, (kind, figures["wer"], figures["wer_chance"], figures["chance_minus_wer_ci"])
    assert (repo / "results" / "embedded" / "report.md").read_text().count("95% CI") >= 2
    started = time.monotonic()
    assert snakemake_plan(repo) == set()
    assert time.monotonic() - started <= 5
