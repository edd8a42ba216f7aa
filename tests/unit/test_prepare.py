"""Stage `prepare` on a local source full of bad input: every problem counted, the run goes on."""

import json

import numpy as np
import pytest
import soundfile

from most import config
from most.data import synth
from most.data.download import download_local
from most.data.manifest import SPEECH_COLUMNS, load_manifest
from most.stages import download, prepare
from tests.conftest import REPO


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A real spoken sentence (16 kHz float) to build the bad variants from."""
    path = tmp_path_factory.mktemp("speech") / "s.flac"
    job = synth.SpeechJob("s", "the farmer sells two green baskets at the market", synth.Voice("espeak", "en-us+m3", 150, 50), str(path))
    synth.synthesize_shard([job], 16000)
    samples, _ = soundfile.read(path, dtype="float32")
    return samples


@pytest.fixture(scope="module")
def prepared(speech, tmp_path_factory):
    root = tmp_path_factory.mktemp("local")
    folder = root / "mydata"
    folder.mkdir()
    import torch
    import torchaudio

    at_48k = torchaudio.functional.resample(torch.from_numpy(speech), 16000, 48000).numpy()
    files = {
        "good.wav": (speech, 16000),
        "rate48k.wav": (at_48k, 48000),
        "stereo.wav": (np.stack([speech, speech], axis=1), 16000),
        "silent.wav": (np.zeros(16000, np.float32), 16000),
        "clipped.wav": (np.clip(speech * 50, -1, 1), 16000),
        "short.wav": (speech[:1600], 16000),
        "long.wav": (np.tile(speech, 20), 16000),
        "empty.wav": (np.zeros(0, np.float32), 16000),
    }
    for name, (samples, rate) in files.items():
        soundfile.write(folder / name, samples, rate, subtype="PCM_16")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt this is not audio")
    rows = [
        {"file_name": "good.wav", "text": "The farmer sells two green baskets, at the market!", "speaker": "s1"},
        {"file_name": "good.wav", "id": "copy", "text": "the farmer sells two green baskets at the market", "speaker": "s1"},
        {"file_name": "good.wav", "id": "copy", "text": "duplicate id", "speaker": "s1"},
        {"file_name": "rate48k.wav", "text": "the farmer sells two green baskets at the market"},
        {"file_name": "stereo.wav", "text": "the farmer sells two green baskets at the market"},
        {"file_name": "silent.wav", "text": "nothing to hear"},
        {"file_name": "clipped.wav", "text": "far too loud"},
        {"file_name": "short.wav", "text": "the"},
        {"file_name": "long.wav", "text": "the farmer sells two green baskets at the market again and again"},
        {"file_name": "empty.wav", "text": "no samples"},
        {"file_name": "corrupt.wav", "text": "a broken file"},
        {"file_name": "missing.wav", "text": "a file that is not there"},
        {"file_name": "good.wav", "id": "blank", "text": "   "},
        {"file_name": "good.wav", "id": "digits", "text": "the farmer sells 2 baskets"},
        {"file_name": "good.wav", "id": "dev-item", "split": "dev", "text": "the farmer sells two green baskets"},
        # word times name the words of the text: kept when normalising keeps the words, else dropped and counted
        {"file_name": "good.wav", "id": "timed", "text": "The farmer sells two.", "word_start_ms": [0, 150, 480, 700]},
        {"file_name": "good.wav", "id": "retimed", "text": "the farmer-sells two", "word_start_ms": [0, 150, 700]},
    ]
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    whole = config.load(REPO / "config" / "config.yaml")
    whole["download"]["embedded"]["enabled"] = False
    whole["download"]["local"] = [{"name": "mydata", "path": str(folder), "split": "train", "task": "asr"}]
    config.validate(whole)
    outputs = root / "results"
    download.run(config.view(whole, "download"), {}, {"download": outputs / "download"}, threads=1)
    result = prepare.run(config.view(whole, "prepare"), {"download": outputs / "download"}, {"prepare": outputs / "prepare"}, threads=2)
    return outputs / "prepare", result


def test_every_problem_is_counted_by_reason(prepared):
    out, result = prepared
    report = json.loads((out / "quality_report.json").read_text())
    assert report["skipped"] == {
        "unreadable": 2,  # corrupt.wav, missing.wav
        "empty_audio": 1,
        "silence": 1,
        "clipped": 1,
        "too_short": 1,
        "too_long": 1,
        "empty_transcript": 1,
        "characters_outside_alphabet": 1,
        "duplicate_id": 1,
    }
    assert report["repaired"] == {"resampled": 1, "downmixed": 1, "punctuation_removed": 3, "word_times_dropped": 1}
    assert (report["rows"], report["kept"], report["skipped_total"]) == (17, 7, 10)
    assert result.metrics["skipped.unreadable"] == 2 and result.metrics["kept"] == 7
    examples = report["examples"]
    assert "corrupt.wav" in examples["unreadable"][0]["detail"] or "corrupt.wav" in examples["unreadable"][1]["detail"]
    assert examples["characters_outside_alphabet"][0] == {"source": "mydata", "id": "digits", "detail": "2"}
    markdown = (out / "quality_report.md").read_text()
    assert "| silence | 1 |" in markdown and "| resampled | 1 |" in markdown


def test_kept_rows_are_normalised_and_repaired(prepared):
    out, _ = prepared
    rows = {r["id"]: r for r in map(json.loads, (out / "manifests" / "train.jsonl").read_text().splitlines())}
    assert set(rows) == {"mydata-good", "mydata-copy", "mydata-rate48k", "mydata-stereo", "mydata-timed", "mydata-retimed"}
    assert rows["mydata-good"]["text"] == "the farmer sells two green baskets at the market"
    assert rows["mydata-timed"]["word_start_ms"] == [0, 150, 480, 700] and rows["mydata-good"]["word_start_ms"] == []
    assert rows["mydata-retimed"]["text"] == "the farmer sells two" and rows["mydata-retimed"]["word_start_ms"] == []
    assert all(list(r) == list(SPEECH_COLUMNS) for r in rows.values())
    resampled, rate = soundfile.read(rows["mydata-rate48k"]["audio"])
    assert rate == 16000 and resampled.ndim == 1
    assert rows["mydata-rate48k"]["audio"].startswith(str(out / "audio"))
    assert abs(rows["mydata-rate48k"]["duration"] - rows["mydata-good"]["duration"]) < 0.01
    mono, rate = soundfile.read(rows["mydata-stereo"]["audio"])
    assert rate == 16000 and mono.ndim == 1


def test_manifests_load_with_datasets_and_leakage_is_counted(prepared):
    out, _ = prepared
    dataset = load_manifest(out / "manifests" / "train.jsonl")
    assert len(dataset) == 6 and set(dataset.column_names) == set(SPEECH_COLUMNS)
    report = json.loads((out / "quality_report.json").read_text())
    # the dev sentence is a run of words inside the training transcripts: counted, not hidden
    assert report["held_out_in_training"]["found"] == 1
    assert report["splits"]["dev"]["utterances"] == 1


def test_a_local_folder_without_metadata_fails_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="has no metadata.jsonl or metadata.csv"):
        download_local({"name": "x", "path": str(tmp_path / "empty")}, tmp_path / "out")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "metadata.jsonl").write_text('{"file_name": "a.wav", "text": "ok"}\n{not json}\n')
    with pytest.raises(ValueError, match=r"metadata\.jsonl:2: not a JSON object"):
        download_local({"name": "x", "path": str(tmp_path / "bad")}, tmp_path / "out")


def test_word_times_come_from_local_metadata_as_lists_or_their_json_text(tmp_path):
    from most.data.sources import read_local_metadata

    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "metadata.csv").write_text('file_name,text,word_start_ms\na.wav,red kite,"[0, 210]"\nb.wav,blue kite,\n')
    assert [row["word_start_ms"] for row in read_local_metadata(tmp_path / "csv", "train", "asr")] == [[0, 210], []]
    (tmp_path / "csv" / "metadata.csv").write_text('file_name,text,word_start_ms\na.wav,red kite,"[0, soon]"\n')
    with pytest.raises(ValueError, match=r"metadata\.csv: row 1: word_start_ms must be a list of whole milliseconds"):
        read_local_metadata(tmp_path / "csv", "train", "asr")
