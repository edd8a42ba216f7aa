"""The unit stages on a small prepared corpus: encode_features, fit_units, tokenize (with a too-short utterance), train_vocoder."""

import json

import datasets
import numpy as np
import pytest
import soundfile
import torch

from most import config
from most.data import synth
from most.speech import feature_store, vocoder
from most.speech.units import UnitTokenizer
from most.stages import encode_features, fit_units, tokenize, train_vocoder
from tests.conftest import tiny_config

SENTENCES = [
    "the farmer sells two green baskets",
    "anna gives her red ball to tom",
    "where does ben keep the blue kite",
    "my sister walks to the park today",
    "three little birds sit near the river",
    "the cook washes the old plates",
]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A prepare-stage folder: 12 training utterances by two voices, a 30 ms dev clip."""
    root = tmp_path_factory.mktemp("corpus")
    jobs = [
        synth.SpeechJob(f"u{i}", text, synth.Voice("espeak", voice, 150, 50), str(root / "audio" / f"u{i}-{voice}.flac"))
        for voice in ("en-us+m3", "en-us+f1")
        for i, text in enumerate(SENTENCES)
    ]
    spoken = synth.synthesize_shard(jobs, 16000)
    rows = [
        {
            "id": f"{job.item_id}-{job.voice.name}",
            "audio": job.path,
            "duration": 1.0,
            "text": job.text,
            "speaker": job.voice.speaker,
            "split": "train",
            "task": "asr",
            "source": "t",
            "response": "",
            "answers": [],
            "pair_id": "",
            "label": "",
            # the word times synthesis reports, for one voice only: the other's rows stand for data without them
            "word_start_ms": said.word_start_ms if job.voice.name == "en-us+m3" else [],
        }
        for job, said in zip(jobs, spoken)
    ]
    soundfile.write(root / "audio" / "blip.flac", np.zeros(480, np.float32), 16000)
    dev = [
        {**rows[0], "id": "blip", "audio": str(root / "audio" / "blip.flac"), "split": "dev"},
        {**rows[1], "id": "dev-ok", "split": "dev"},
    ]
    (root / "prepare" / "manifests").mkdir(parents=True)
    (root / "prepare" / "manifests" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "prepare" / "manifests" / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    return root


def test_fit_tokenize_and_train_on_a_small_corpus(prepared, tmp_path):
    cfg = tiny_config()
    cfg["units"].update(k=16, sample_frames=2000, init_frames=500, kmeans_steps=30, batch_frames=256, min_units=3)
    cfg["vocoder"].update(steps=6, batch_size=4, crop_units=20, max_utterances=10)  # a seeded 10 of the 12
    config.validate(cfg)
    prepare = prepared / "prepare"
    assert cfg["units"]["features"] == "whisper_encoder"  # the embedded default
    encoded = encode_features.run(config.view(cfg, "encode_features"), {"prepare": prepare}, {"features": tmp_path / "features"}, threads=2)
    assert encoded.metrics["dim"] == 384 and encoded.metrics["x_real_time"] > 1
    cached = feature_store.load_split(tmp_path / "features", "train")
    assert len(cached) == 12 and all(frames.shape[1] == 384 for frames in cached.values())
    # 25 frames per second of audio (Whisper's 50 Hz, pooled by 2)
    seconds = len(soundfile.read(prepared / "audio" / "u0-en-us+m3.flac")[0]) / 16000
    assert abs(len(cached["u0-en-us+m3"]) - 25 * seconds) <= 1
    stats = feature_store.stats(tmp_path / "features")
    stacked = torch.cat(list(cached.values())).float()
    torch.testing.assert_close(stats["mean"], stacked.mean(0), atol=1e-3, rtol=1e-3)

    fitted = fit_units.run(config.view(cfg, "fit_units"), {"features": tmp_path / "features"}, {"kmeans": tmp_path / "kmeans"}, threads=1)
    assert fitted.metrics["clusters_used"] == 16 and fitted.metrics["frames"] <= 2000
    assert UnitTokenizer.load(tmp_path / "kmeans").k == 16

    tokenized = tokenize.run(
        config.view(cfg, "tokenize"),
        {"prepare": prepare, "features": tmp_path / "features", "kmeans": tmp_path / "kmeans"},
        {"tokens": tmp_path / "tokens"},
        threads=2,
    )
    report = json.loads((tmp_path / "tokens" / "tokenize_report.json").read_text())
    assert report["too_few_units"]["count"] == 1 and report["too_few_units"]["examples"][0]["id"] == "blip"
    assert tokenized.metrics["x_real_time"] > 1
    train = datasets.load_from_disk(str(tmp_path / "tokens" / "train"))
    assert len(train) == 12 and [r["id"] for r in datasets.load_from_disk(str(tmp_path / "tokens" / "dev"))] == ["dev-ok"]
    first = train[0]
    assert len(first["units"]) == len(first["durations"]) and sum(first["durations"]) == first["frames"]
    assert all(a != b for a, b in zip(first["units"], first["units"][1:]))
    # word starts: per word of the text for the timed voice (the first word on unit 0, the rest later
    # or sharing the word before); none for the other voice, counted
    for row in train:
        starts = [unit for unit in row["word_units"] if unit >= 0]
        if row["speaker"] == "espeak:en-us+m3":
            assert len(row["word_units"]) == len(row["text"].split()) and starts[0] == 0 and len(starts) >= len(row["word_units"]) - 2
            assert starts == sorted(set(starts)) and starts[-1] < len(row["units"])
        else:
            assert row["word_units"] == []
    assert report["splits"]["train"]["without_word_times"] == 6
    # features of the audio computed now (`most asr`, LibriVox) equal the cached ones, and so do the units
    tokenizer = UnitTokenizer.load(tmp_path / "kmeans")
    row = json.loads((prepare / "manifests" / "train.jsonl").read_text().splitlines()[0])
    wave = soundfile.read(row["audio"], dtype="float32")[0]
    assert torch.equal(tokenizer.features.unnormalized([wave], [row["id"]])[0], cached[row["id"]].float())
    assert tokenizer.encode([wave], [row["id"]])[0] == (first["units"], first["durations"])

    trained = train_vocoder.run(
        config.view(cfg, "train_vocoder"), {"prepare": prepare, "tokens": tmp_path / "tokens"}, {"vocoder": tmp_path / "vocoder"}, threads=1
    )
    assert [step for step, _ in trained.history] == [6]
    assert json.loads((tmp_path / "vocoder" / "train_report.json").read_text())["utterances"] == 10
    model = vocoder.load(tmp_path / "vocoder")
    assert model.config.speakers == ["espeak:en-us+f1", "espeak:en-us+m3"] and model.config.k == 16
    mel = model.synthesize_mel(first["units"], "espeak:en-us+m3", first["durations"])
    assert mel.shape == (first["frames"] * model.config.frames_per_unit, 80)


def test_a_hifigan_checkpoint_is_installed_and_checked(tmp_path):
    import torch

    torch.manual_seed(0)
    vocoder.save(vocoder.UnitHifiGan(vocoder.HifiGanConfig(k=20, upsample_initial_channel=32)), tmp_path / "checkpoint")
    cfg = config.load("config/paper.yaml")
    cfg["vocoder"]["hifigan_checkpoint"] = str(tmp_path / "checkpoint")
    train_vocoder.run(
        config.view(cfg, "train_vocoder"), {"prepare": tmp_path, "tokens": tmp_path}, {"vocoder": tmp_path / "installed"}, threads=1
    )
    assert isinstance(vocoder.load(tmp_path / "installed"), vocoder.UnitHifiGan)
    cfg["vocoder"]["hifigan_checkpoint"] = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="vocoder.hifigan_checkpoint: .*nowhere has no vocoder.safetensors"):
        train_vocoder.run(
            config.view(cfg, "train_vocoder"), {"prepare": tmp_path, "tokens": tmp_path}, {"vocoder": tmp_path / "again"}, threads=1
        )
