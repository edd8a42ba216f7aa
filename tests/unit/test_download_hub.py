"""Hub sources through `datasets`, tested on local parquet folders (tests run offline)."""

import io
import json

import datasets
import numpy as np
import pytest
import soundfile

from most import config
from most.stages import download, prepare
from tests.conftest import REPO


def flac_bytes(seconds: float, rate: int, frequency: float) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    buffer = io.BytesIO()
    soundfile.write(buffer, (0.3 * np.sin(2 * np.pi * frequency * t)).astype(np.float32), rate, format="FLAC")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hub_like(tmp_path_factory):
    """Two parquet 'hub datasets': speech with audio bytes, and chat-style text."""
    root = tmp_path_factory.mktemp("hub")
    speech = datasets.Dataset.from_dict(
        {
            "id": ["a-1", "a-2", "a-3"],
            "audio": [
                {"bytes": flac_bytes(1.5, 16000, 220), "path": "a-1.flac"},
                {"bytes": flac_bytes(1.2, 48000, 330), "path": "a-2.flac"},
                {"bytes": b"not audio at all", "path": "a-3.flac"},
            ],
            "text": ["HELLO THERE", "Good morning, Anna.", "broken"],
            "speaker_id": [1, 2, 3],
        }
    ).cast_column("audio", datasets.Audio(decode=False))
    (root / "speech" / "data").mkdir(parents=True)
    speech.to_parquet(str(root / "speech" / "data" / "train-00000-of-00001.parquet"))
    chat = datasets.Dataset.from_dict(
        {
            "messages": [
                [{"role": "user", "content": "say hello"}, {"role": "assistant", "content": "hello"}],
                [{"role": "user", "content": "count to three"}, {"role": "assistant", "content": "one two three"}],
            ],
        }
    )
    (root / "chat" / "data").mkdir(parents=True)
    chat.to_parquet(str(root / "chat" / "data" / "train-00000-of-00001.parquet"))
    return root


def run_hub(sources, tmp_path):
    whole = config.load(REPO / "config" / "config.yaml")
    whole["download"]["embedded"]["enabled"] = False
    whole["download"]["hub"] = sources
    config.validate(whole)
    result = download.run(config.view(whole, "download"), {}, {"download": tmp_path / "download"}, threads=1)
    prepare.run(config.view(whole, "prepare"), {"download": tmp_path / "download"}, {"prepare": tmp_path / "prepare"}, threads=1)
    return result


def test_speech_rows_keep_their_bytes_and_prepare_decodes_them(hub_like, tmp_path):
    source = {
        "name": "speechset",
        "path": str(hub_like / "speech"),
        "config_name": "",
        "revision": "0" * 40,
        "splits": {"train": "train"},
        "task": "asr",
        "columns": {"id": "id", "text": "text", "speaker": "speaker_id"},
        "speak": False,
        "max_samples": 0,
        "streaming": False,
    }
    result = run_hub([source], tmp_path)
    assert result.metrics["speechset.utterances"] == 3
    metadata = [json.loads(line) for line in (tmp_path / "download" / "speechset" / "metadata.jsonl").read_text().splitlines()]
    assert [m["id"] for m in metadata] == ["a-1", "a-2", "a-3"] and metadata[1]["speaker"] == "2"
    assert (tmp_path / "download" / "speechset" / metadata[0]["file_name"]).read_bytes() == flac_bytes(1.5, 16000, 220)
    report = json.loads((tmp_path / "prepare" / "quality_report.json").read_text())
    assert report["skipped"]["unreadable"] == 1 and report["repaired"]["resampled"] == 1
    manifest = [json.loads(line) for line in (tmp_path / "prepare" / "manifests" / "train.jsonl").read_text().splitlines()]
    assert [(m["id"], m["text"]) for m in manifest] == [("speechset-a-1", "hello there"), ("speechset-a-2", "good morning anna")]


def test_text_rows_take_nested_columns_and_can_be_spoken(hub_like, tmp_path):
    common = {
        "path": str(hub_like / "chat"),
        "config_name": "",
        "revision": "main",
        "splits": {"train": "train"},
        "columns": {"text": "messages.0.content", "response": "messages.1.content"},
        "max_samples": 0,
        "streaming": False,
    }
    run_hub(
        [
            {"name": "written", "task": "text_instruction", "speak": False, **common},
            {"name": "spoken", "task": "spoken_instruction", "speak": True, **common},
        ],
        tmp_path,
    )
    text = [json.loads(line) for line in (tmp_path / "prepare" / "text" / "train.jsonl").read_text().splitlines()]
    assert [(t["text"], t["response"], t["task"]) for t in text] == [
        ("say hello", "hello", "text_instruction"),
        ("count to three", "one two three", "text_instruction"),
    ]
    spoken = [json.loads(line) for line in (tmp_path / "prepare" / "manifests" / "train.jsonl").read_text().splitlines()]
    assert [(s["text"], s["response"]) for s in spoken] == [("say hello", "hello"), ("count to three", "one two three")]
    assert all(s["speaker"].startswith("espeak:") and s["duration"] > 0.3 for s in spoken)
