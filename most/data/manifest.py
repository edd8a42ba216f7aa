"""Manifests: the contract between `prepare` and every later stage.

`results/<run>/prepare/manifests/<split>.jsonl` holds one row per utterance (audio is a path
relative to the working directory, 16-bit FLAC/WAV at prepare.sample_rate); `text/<split>.jsonl`
holds the text-only items. Both load with `datasets` (`load_manifest`).
"""

from __future__ import annotations

import os
from pathlib import Path

SPEECH_COLUMNS = ("id", "audio", "duration", "text", "speaker", "split", "task", "source", "response", "answers", "pair_id", "label")
TEXT_COLUMNS = ("id", "text", "split", "task", "source", "response", "answers")


def speech_row(**values) -> dict:
    return {column: values[column] for column in SPEECH_COLUMNS}


def text_row(**values) -> dict:
    return {column: values[column] for column in TEXT_COLUMNS}


def load_manifest(path: str | os.PathLike):
    """A manifest as a `datasets.Dataset` (audio stays a path: decode it with soundfile)."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"manifest {path} does not exist; run the prepare stage first")
    return datasets.load_dataset("json", data_files=str(path), split="train")
