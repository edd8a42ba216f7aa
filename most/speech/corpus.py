"""Reading the prepared corpus: manifest rows and their audio."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from most.io import read_jsonl


def manifest_splits(prepare: Path) -> list[str]:
    return sorted(path.stem for path in (Path(prepare) / "manifests").glob("*.jsonl"))


def rows(prepare: Path, splits: Iterable[str] | None = None, tasks: Iterable[str] | None = None) -> list[dict]:
    """Manifest rows of the given splits (all by default), in manifest order."""
    wanted = set(tasks) if tasks is not None else None
    out = []
    for split in splits if splits is not None else manifest_splits(prepare):
        path = Path(prepare) / "manifests" / f"{split}.jsonl"
        if path.exists():
            out += [row for row in read_jsonl(path) if wanted is None or row["task"] in wanted]
    return out


def training_texts(prepare: Path) -> list[str]:
    """Every training transcript and text item: what a judge may know of the domain."""
    texts = [row["text"] for row in rows(prepare, [s for s in manifest_splits(prepare) if s.startswith("train")])]
    for path in sorted((Path(prepare) / "text").glob("train*.jsonl")):
        texts += [row["text"] for row in read_jsonl(path)]
    return texts


def read_wave(row: dict) -> np.ndarray:
    import soundfile

    wave, _ = soundfile.read(row["audio"], dtype="float32")
    return wave
