"""Audio I/O with soundfile; resampling with torchaudio."""

from __future__ import annotations

import os
from functools import lru_cache

import numpy as np


def read(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """(samples float32 [frames, channels], sample rate). Raises on unreadable files."""
    import soundfile

    samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    return samples, rate


@lru_cache(maxsize=8)
def _resampler(orig: int, new: int):
    import torchaudio

    return torchaudio.transforms.Resample(orig, new)


def resample(mono: np.ndarray, orig: int, new: int) -> np.ndarray:
    import torch

    return _resampler(orig, new)(torch.from_numpy(np.ascontiguousarray(mono))).numpy()


def read_mono(path: str | os.PathLike, rate: int) -> np.ndarray:
    """A file's samples mixed down to mono and resampled to `rate` (inputs given by hand or by a test set)."""
    samples, original = read(path)
    mono = samples.mean(1)
    return resample(mono, original, rate) if original != rate else mono


def write_flac(path: str | os.PathLike, mono: np.ndarray, rate: int) -> None:
    import soundfile

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    soundfile.write(str(path), np.clip(mono, -1.0, 32767 / 32768), rate, subtype="PCM_16", format="FLAC")
