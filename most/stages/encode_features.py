"""Stage `encode_features`: frame features of every utterance of every split, computed once.

`units.features` picks the extractor (`most.speech.features`); the frames are cached unnormalised
(`most.speech.feature_store`) for fit_units (its k-means sample), tokenize (every utterance's
units) and the continuous speech input path (the model's projector reads them). An utterance whose
audio or features are unusable stops the stage with an error naming it (prepare has already
checked every sample).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from tqdm import tqdm

from most.data import manifest
from most.io import atomic_directory, write_json
from most.speech import feature_store
from most.speech.features import make_features
from most.stages import StageResult

log = logging.getLogger(__name__)
BATCH = 32


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    settings = cfg["units"]
    torch.set_num_threads(max(1, threads))
    features = make_features(settings, threads)
    started = time.time()
    report = {"features": settings["features"], "frame_rate_hz": settings["frame_rate_hz"], "settings": settings, "splits": {}}
    audio_seconds = 0.0
    training: list[torch.Tensor] = []
    with atomic_directory(outputs["features"]) as out:
        for split in manifest.splits(inputs["prepare"]):
            rows = manifest.rows(inputs["prepare"], [split])
            frames: list[torch.Tensor] = []
            seconds = 0.0
            for start in tqdm(range(0, len(rows), BATCH), desc=f"features of {split}", unit="batch", mininterval=5):
                batch = rows[start : start + BATCH]
                waves = [manifest.read_wave(row) for row in batch]
                seconds += sum(len(wave) for wave in waves) / 16000
                frames += features.unnormalized(waves, [row["id"] for row in batch])
            feature_store.save_split(out, split, [row["id"] for row in rows], frames)
            if split.startswith("train"):
                training += frames
            report["splits"][split] = {"utterances": len(rows), "frames": sum(len(f) for f in frames), "audio_seconds": round(seconds, 1)}
            audio_seconds += seconds
        if not training:
            raise ValueError(f"encode_features: no training utterance in {inputs['prepare']}/manifests")
        feature_store.save_stats(out, training)
        report["dim"] = features.dim
        write_json(report, out / feature_store.SETTINGS_FILE)  # no timing in it: the output is the same on every rerun
    speed = audio_seconds / max(time.time() - started, 1e-9)
    log.info(
        "encode_features: %s, %d-d at %g Hz: %.0f s of audio at %.0fx real time",
        settings["features"],
        features.dim,
        settings["frame_rate_hz"],
        audio_seconds,
        speed,
    )
    metrics = {"x_real_time": speed, "dim": features.dim} | {
        f"{split}.frames": sizes["frames"] for split, sizes in report["splits"].items()
    }
    return StageResult(metrics=metrics, artifacts=[Path(outputs["features"]) / feature_store.SETTINGS_FILE])
