"""Evaluation through the real workflow: the four evaluations, the report, the ablations target and
the inference commands, on the tiny run (its numbers are those of a 6-step model: the contract is
tested here; the embedded default's numbers are in the closing notes and benchmarks/README.md)."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile
from mlflow import MlflowClient

from most.evaluate.normalize import word_error_rate
from most.evaluate.spoken_qa import scored
from most.evaluate.stats import chance_pairing
from tests.conftest import TINY_RESULTS, run, snakemake_plan, tiny_config

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
HEADLINE = [("asr", "wer"), ("tts", "wer"), ("audio_lm", "accuracy"), ("spoken_qa", "s2t_accuracy"), ("spoken_qa", "s2s_accuracy")]


def results(repo) -> Path:
    return repo / TINY_RESULTS


@pytest.mark.smoke
def test_the_report_holds_every_evaluation_with_its_interval(ran_repo):
    report = json.loads((results(ran_repo) / "report.json").read_text())
    for section, name in HEADLINE:
        metric = report[section][name]
        assert set(metric) == {"value", "n", "ci_low", "ci_high"}, (section, name)
        assert 0 <= metric["ci_low"] <= metric["value"] <= metric["ci_high"] and metric["n"] >= 2, (section, name, metric)
        assert metric["value"] <= 1 or name == "wer"  # accuracies are fractions; a WER may pass 1 (insertions)
    assert report["asr"]["set"] == "test" and report["asr"]["wer"]["n"] == 4  # evaluate.asr_utterances of the tiny config
    # the tiny corpus has 2 test questions (fewer than evaluate.qa_questions): all are answered both ways
    assert report["spoken_qa"]["s2t_accuracy"]["n"] == 2 and report["spoken_qa"]["s2s_accuracy"]["n"] == 2
    assert report["spoken_qa"]["t2t_accuracy"]["n"] == 2
    assert set(report["audio_lm"]["kinds"]) == {"swuggy", "sblimp", "storycloze"}
    assert report["tts"]["ceiling"]["resynth_wer"] >= 0 and report["tts"]["judge"] == "whisper"
    # chance baselines: the judged transcripts against the next item's text / answers
    spoken = [json.loads(line) for line in (results(ran_repo) / "eval" / "tts" / "transcripts.jsonl").read_text().splitlines()]
    texts = [row["text"] for row in spoken]
    answered = [json.loads(line) for line in (results(ran_repo) / "eval" / "spoken_qa" / "answers.jsonl").read_text().splitlines()]
    for kind in ("whisper", "pocketsphinx"):  # judge.kind (the headline figures) and judge.second
        heard = [row["transcripts"][kind] for row in spoken]
        judged = report["tts"]["judges"][kind]
        assert judged["wer"]["value"] == word_error_rate(texts, heard)["wer"]
        assert judged["chance_wer"] == word_error_rate(chance_pairing(texts), heard)["wer"]
        assert judged["ceiling"]["resynth_wer_chance"] >= 0 and judged["settings"].startswith(f"{kind}: ")
        chance = scored([row["s2s"][kind] for row in answered], chance_pairing([row["answers"] for row in answered]), 0)["accuracy"]
        assert report["spoken_qa"]["s2s_judges"][kind]["chance_accuracy"] == chance
    assert (
        report["tts"]["wer"] == report["tts"]["judges"]["whisper"]["wer"]
        and report["tts"]["chance_wer"] == report["tts"]["judges"]["whisper"]["chance_wer"]
    )
    assert report["spoken_qa"]["s2s_accuracy"] == report["spoken_qa"]["s2s_judges"]["whisper"]["accuracy"]
    librivox = report["asr"]["sets"]["librivox"]
    assert ("wer" in librivox) == LIBRIVOX.exists() and ("skipped" in librivox) != LIBRIVOX.exists()
    assert re.fullmatch(r"[0-9a-f]{16}", report["config_hash"]) and re.fullmatch(r"[0-9a-f]{40}", report["git"]["git.commit"])
    assert set(report["inputs"]) == {"ceiling", "posttrain", "instruct", "eval_asr", "eval_tts", "eval_audio_lm", "eval_spoken_qa"}
    markdown = (results(ran_repo) / "report.md").read_text()
    for label in ("ASR WER (test)", "TTS WER (whisper judge)", "Audio LM accuracy", "Spoken QA S→T accuracy", "Spoken QA S→S accuracy"):
        assert label in markdown
    path = report["training"]["posttrain"]["float_path"]
    assert path == report["training"]["instruct"]["float_path"]  # one host trained both
    assert f"Trained with posttrain, instruct: torch {path['torch.version']}, {path['torch.cpu_capability']} kernels on" in markdown
    tts_row = next(line for line in markdown.splitlines() if line.startswith("| TTS WER"))
    assert f"chance {report['tts']['chance_wer']:.3f}; resynthesis ceiling" in tts_row
    judged_rows = [
        line for line in markdown.split("## Speech output by judge")[1].splitlines() if line.startswith(("| whisper", "| pocketsphinx"))
    ]
    assert [row.split(" | ")[0] for row in judged_rows] == ["| whisper", "| pocketsphinx"]
    for plot in ("loss_curves.png", "metrics.png", "expert_load.png"):
        assert (results(ran_repo) / "report_plots" / plot).stat().st_size > 1000 and f"report_plots/{plot}" in markdown


@pytest.mark.smoke
def test_the_evaluations_keep_their_items_and_samples(ran_repo):
    asr = [json.loads(line) for line in (results(ran_repo) / "eval" / "asr" / "transcripts.jsonl").read_text().splitlines()]
    assert {row["set"] for row in asr} >= {"test", "test_neural"} and all("hypothesis" in row for row in asr)
    tts = json.loads((results(ran_repo) / "eval" / "tts" / "metrics.json").read_text())
    assert tts["utterances"] == 3 and 0 <= tts["cer"] and tts["sampling"]["top_k"] == 20
    wavs = sorted((results(ran_repo) / "eval" / "tts").glob("*.wav"))
    assert len(wavs) == 1 and soundfile.info(str(wavs[0])).samplerate == 16000 and soundfile.info(str(wavs[0])).frames > 0
    pairs = json.loads((results(ran_repo) / "eval" / "audio_lm" / "pairs.json").read_text())
    assert set(pairs["sblimp"]) == {"mean", "sum"} and all(v in (0.0, 0.5, 1.0) for v in pairs["sblimp"]["mean"].values())
    answers = [json.loads(line) for line in (results(ran_repo) / "eval" / "spoken_qa" / "answers.jsonl").read_text().splitlines()]
    assert len(answers) == 2 and all(set(a["s2s"]) == {"whisper", "pocketsphinx"} and a["s2t"] is not None for a in answers)


def test_snakemake_report_renders_the_report(ran_repo, tmp_path):
    html = tmp_path / "report.html"
    run(["snakemake", "--report", str(html)], ran_repo)
    text = html.read_text()
    assert "report.md" in text and "metrics.png" in text and "loss_curves.png" in text


def test_the_ablations_target_trains_every_variant_per_seed_and_nests_their_mlflow_runs(fresh_copy, tmp_path):
    assert snakemake_plan(fresh_copy, "ablations") == {"stage_config[stage=ablations]", "ablations"}
    run(["snakemake", "--cores", "all", "ablations"], fresh_copy)
    # Snakemake's onsuccess records the target in its own DVC pipeline (pipelines/ablations/dvc.yaml)
    assert "Data and pipelines are up to date" in run(["dvc", "status"], fresh_copy).stdout
    table = json.loads((results(fresh_copy) / "ablations.json").read_text())
    names = {"mamoe", "plain_moe", "masked_softmax", "no_shared", "continuous_input"}
    assert table["baseline"] == "mamoe" and table["seeds"] == [1, 2] and set(table["variants"]) == names
    assert table["variants"]["continuous_input"]["config"] == {"routing": "official", "speech_input": "continuous"}
    for name, row in table["variants"].items():
        assert row["steps"] == 4 and row["asr_utterances"] == 3 and row["audio_lm_pair_count"] > 0
        assert len(row["asr_wer_per_seed"]) == 2 and row["asr_wer"] == pytest.approx(sum(row["asr_wer_per_seed"]) / 2)
        if name != "mamoe":
            low, high = row["asr_wer_minus_baseline_ci"]
            assert low <= row["asr_wer_minus_baseline"] <= high
    # the fair start: a base without shared experts, top-k raised to the same active width
    widths = {name: row["active_expert_width"] for name, row in table["variants"].items()}
    assert widths["no_shared"] == widths["mamoe"] and table["variants"]["no_shared"]["start_text_perplexity"] > 1
    assert len(table["findings"]) == 4 * (len(names) - 1)  # WER, ASR loss, TTS loss, audio-LM accuracy
    markdown = (results(fresh_copy) / "ablations.md").read_text()
    assert all(f"| {name} |" in markdown for name in names) and "## What the intervals support" in markdown
    assert not list((results(fresh_copy) / "checkpoints").glob("ablation-*"))
    client = MlflowClient(tracking_uri=f"sqlite:///{results(fresh_copy).parent / 'mlflow.db'}")
    stage = client.search_runs(
        client.get_experiment_by_name("most").experiment_id, "tags.`most.stage` = 'ablations' and tags.`most.kind` = 'stage'"
    )
    assert len(stage) == 1 and stage[0].info.status == "FINISHED"
    children = client.search_runs(stage[0].info.experiment_id, f"tags.`mlflow.parentRunId` = '{stage[0].info.run_id}'")
    assert sorted(child.info.run_name for child in children) == sorted(f"{name} seed {seed}" for name in names for seed in (1, 2))
    assert all(
        {"asr_wer", "asr_loss", "tts_loss", "audio_lm_accuracy", "start_text_perplexity"} <= set(child.data.metrics) for child in children
    )
    assert any(a.path == "reports/ablations.md" for a in client.list_artifacts(stage[0].info.run_id, "reports"))
    html = tmp_path / "report.html"
    run(["snakemake", "--report", str(html), "all", "ablations"], fresh_copy)
    assert "ablations.md" in html.read_text()


def test_most_asr_transcribes_wav_files(ran_repo):
    wavs = sorted((results(ran_repo) / "download").rglob("asr-test-0000*.flac"))[:2]
    assert wavs, "no test recordings in the tiny run"
    result = run(["most", "asr", *map(str, wavs)], ran_repo)
    lines = result.stdout.splitlines()
    assert len(lines) == len(wavs) and all(line.split("\t")[0] == str(wav) for line, wav in zip(lines, wavs))


def test_most_asr_on_a_test_file_sees_what_the_evaluation_saw(ran_repo):
    """One file through `most asr` gets the evaluation's transcript: its features are computed as the
    cached ones were (each utterance encoded alone), so input, model and decoding are the same."""
    evaluated = json.loads((results(ran_repo) / "eval" / "asr" / "transcripts.jsonl").read_text().splitlines()[0])
    manifest = results(ran_repo) / "prepare" / "manifests" / "test.jsonl"
    row = next(r for r in map(json.loads, manifest.read_text().splitlines()) if r["id"] == evaluated["id"])
    max_new_tokens = tiny_config()["evaluate"]["max_new_tokens"]
    result = run(["most", "asr", str(ran_repo / row["audio"]), "--max-new-tokens", str(max_new_tokens)], ran_repo)
    assert result.stdout.strip() == evaluated["hypothesis"]


@pytest.mark.skipif(
    not LIBRIVOX.exists(), reason="Debian package pocketsphinx-testdata not installed (apt-get install pocketsphinx-testdata)"
)
def test_most_asr_on_a_real_librivox_clip(ran_repo):
    clip = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0880.wav"
    result = run(["most", "asr", str(clip)], ran_repo)
    assert len(result.stdout.splitlines()) == 1  # one transcript line (its quality: see the report's librivox row)


def test_most_tts_and_most_ask(ran_repo, tmp_path):
    out = tmp_path / "spoken.wav"
    run(["most", "tts", "the cook finds a red ball", "-o", str(out)], ran_repo)
    info = soundfile.info(str(out))
    assert info.samplerate == 16000 and info.frames > 0
    # typed text is normalised as the training texts were: the same words, the same speech
    run(["most", "tts", "The cook finds a red ball!", "-o", str(tmp_path / "typed.wav")], ran_repo)
    assert np.array_equal(soundfile.read(str(out))[0], soundfile.read(str(tmp_path / "typed.wav"))[0])
    digits = run(["most", "tts", "the cook finds 2 balls", "-o", str(tmp_path / "digits.wav")], ran_repo, check=False)
    assert digits.returncode == 1 and "cannot speak 'the cook finds 2 balls': characters_outside_alphabet (2)" in digits.stderr
    question = next((results(ran_repo) / "download").rglob("spoken_qa-test-00000.flac"))
    result = run(["most", "ask", str(question)], ran_repo)
    assert len(result.stdout.splitlines()) == 1
    missing = run(["most", "asr", str(question), "--model", str(tmp_path / "nowhere")], ran_repo, check=False)
    assert missing.returncode == 1 and "no MoST model here" in missing.stderr
