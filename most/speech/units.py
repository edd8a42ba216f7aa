"""Unit sequences: deduplication with run lengths, and the saved tokenizer (safetensors)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TOKENIZER_FILE = "kmeans.safetensors"
SETTINGS_FILE = "units.json"


def deduplicate(labels: torch.Tensor) -> tuple[list[int], list[int]]:
    """Collapse consecutive repeats: ([7, 7, 3] -> [7, 3], run lengths [2, 1])."""
    if labels.numel() == 0:
        return [], []
    units, durations = torch.unique_consecutive(labels, return_counts=True)
    return units.tolist(), durations.tolist()


def expand(units: list[int], durations: list[int]) -> list[int]:
    """The inverse of `deduplicate`."""
    return [unit for unit, count in zip(units, durations) for _ in range(count)]


def word_unit_starts(word_start_ms: list[int], durations: list[int], frame_rate_hz: float) -> list[int]:
    """Per word, the deduplicated unit where it starts: the run whose start frame is nearest the
    word's start time; -1 for a word that shares the previous word's units (no start time of its
    own, or one that falls on or before the previous word's unit). The first word starts at unit 0.
    Empty when there are no times (the source gives none)."""
    if not word_start_ms or not durations:
        return []
    run_starts = torch.cumsum(torch.tensor([0, *durations[:-1]], dtype=torch.float64), 0)
    starts: list[int] = []
    last = -1
    for index, milliseconds in enumerate(word_start_ms):
        if index == 0:
            unit = 0
        elif milliseconds < 0:
            unit = -1
        else:
            # times in whole ms and rates in Hz: ms * rate / 1000 is exact for the rates in use (25, 50 Hz)
            unit = int(torch.argmin((run_starts - milliseconds * frame_rate_hz / 1000).abs()))
            unit = unit if unit > last else -1
        starts.append(unit)
        last = max(last, unit)
    return starts


class UnitTokenizer:
    """Features -> nearest centroid. Saved as centroids + normalisation statistics (safetensors)."""

    def __init__(self, settings: dict, centroids: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> None:
        from most.speech.features import make_features

        self.settings = settings
        self.centroids, self.mean, self.std = centroids, mean, std
        self.features = make_features(settings)

    @property
    def k(self) -> int:
        return len(self.centroids)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        folder.mkdir(parents=True, exist_ok=True)
        save_file({"centroids": self.centroids.contiguous(), "mean": self.mean, "std": self.std}, str(folder / TOKENIZER_FILE))
        (folder / SETTINGS_FILE).write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, folder: Path) -> UnitTokenizer:
        from safetensors.torch import load_file

        tensors = load_file(str(Path(folder) / TOKENIZER_FILE))
        settings = json.loads((Path(folder) / SETTINGS_FILE).read_text())
        return cls(settings, tensors["centroids"], tensors["mean"], tensors["std"])

    def frame_features(self, waveforms, ids) -> list[torch.Tensor]:
        return self.features(waveforms, ids, self.mean, self.std)

    def units_of(self, raw_frames: torch.Tensor) -> tuple[list[int], list[int]]:
        """Deduplicated (units, run lengths) of one utterance's unnormalised frames (the cached features)."""
        from most.speech.features import normalize
        from most.speech.kmeans import nearest

        return deduplicate(nearest(normalize(raw_frames, self.settings["normalize"], self.mean, self.std), self.centroids)[0])

    def encode(self, waveforms, ids) -> list[tuple[list[int], list[int]]]:
        """Deduplicated (units, run lengths) per waveform."""
        return [self.units_of(frames) for frames in self.features.unnormalized(waveforms, ids)]
