"""Manifests: the contract between `prepare` and every later stage, written and read only here.

`results/<run>/prepare/manifests/<split>.jsonl` holds one row per utterance (audio is a path
relative to the working directory, 16-bit FLAC/WAV at prepare.sample_rate); `text/<split>.jsonl`
holds the text-only items. Both also load with `datasets` (`load_manifest`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from most.io import read_jsonl, write_jsonl

SPEECH_COLUMNS = (
    "id",
    "audio",
    "duration",
    "text",
    "speaker",
    "split",
    "task",
    "source",
    "response",
    "answers",
    "pair_id",
    "label",
    "word_start_ms",  # per word of the text, where it starts (ms; -1 none of its own); empty where the source gives no times
)
TEXT_COLUMNS = ("id", "text", "split", "task", "source", "response", "answers")
SPEECH, TEXT = "manifests", "text"  # folders of the prepare output


def speech_row(**values) -> dict:
    return {column: values[column] for column in SPEECH_COLUMNS}


def text_row(**values) -> dict:
    return {column: values[column] for column in TEXT_COLUMNS}


def write(prepare: Path, speech: dict[str, list[dict]], text: dict[str, list[dict]]) -> None:
    """Every split's speech and text rows under the prepare output `prepare` (folders made here)."""
    for folder, by_split in ((SPEECH, speech), (TEXT, text)):
        (Path(prepare) / folder).mkdir()
        for split, rows_of_split in sorted(by_split.items()):
            write_jsonl(rows_of_split, Path(prepare) / folder / f"{split}.jsonl")


def splits(prepare: Path) -> list[str]:
    """The splits that have speech rows."""
    return sorted(path.stem for path in (Path(prepare) / SPEECH).glob("*.jsonl"))


def rows(prepare: Path, splits_wanted: Iterable[str] | None = None, tasks: Iterable[str] | None = None) -> list[dict]:
    """Speech rows of the given splits (all by default) and tasks (all by default), in manifest order."""
    wanted = set(tasks) if tasks is not None else None
    out = []
    for split in splits_wanted if splits_wanted is not None else splits(prepare):
        path = Path(prepare) / SPEECH / f"{split}.jsonl"
        if path.exists():
            out += [row for row in read_jsonl(path) if wanted is None or row["task"] in wanted]
    return out


def text_rows(prepare: Path, split: str) -> list[dict]:
    """The text-only items of `split` (none where the split has no text manifest)."""
    path = Path(prepare) / TEXT / f"{split}.jsonl"
    return read_jsonl(path) if path.exists() else []


def training_texts(prepare: Path) -> list[str]:
    """Every training transcript and text item: what a judge may know of the domain."""
    texts = [row["text"] for row in rows(prepare, [s for s in splits(prepare) if s.startswith("train")])]
    for path in sorted((Path(prepare) / TEXT).glob("train*.jsonl")):
        texts += [row["text"] for row in read_jsonl(path)]
    return texts


def read_wave(row: dict) -> np.ndarray:
    """A speech row's audio (mono float32 at prepare.sample_rate, as prepare wrote or checked it)."""
    import soundfile

    wave, _ = soundfile.read(row["audio"], dtype="float32")
    return wave


def load_manifest(path: str | os.PathLike):
    """A manifest as a `datasets.Dataset` (audio stays a path: decode it with soundfile)."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist; run the prepare stage first")
    return datasets.load_dataset("json", data_files=str(path), split="train")
