"""Stage `train_vocoder`: the unit-to-mel vocoder trained on the output voice's training utterances
(`most.speech.vocoder_training`), or the unit HiFi-GAN weights installed where `vocoder.kind` says so.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from most.io import atomic_directory, write_json
from most.speech import vocoder
from most.speech.vocoder_training import train_unit_mel
from most.stages import StageResult


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    settings = cfg["vocoder"]
    torch.set_num_threads(max(1, threads))
    with atomic_directory(outputs["vocoder"]) as out:
        if settings["kind"] == "hifigan":
            # trained elsewhere: install the configured checkpoint and prove it loads into our architecture
            checkpoint = Path(settings["hifigan_checkpoint"])
            for name in (vocoder.WEIGHTS, vocoder.CONFIG):
                if not (checkpoint / name).is_file():
                    raise ValueError(f"vocoder.hifigan_checkpoint: {checkpoint} has no {name}")
                shutil.copyfile(checkpoint / name, out / name)
            vocoder.load(out)
            report = {"kind": "hifigan", "checkpoint": str(checkpoint)}
        else:
            report = train_unit_mel(settings, cfg["seed"], inputs, out, threads)
        history = report.pop("history", [])
        # wall time goes to MLflow only: the report is a versioned output and must be identical on a rerun
        seconds = report.pop("seconds", None)
        write_json(report, out / "train_report.json")
    metrics = {}
    if "loss_end" in report:
        metrics = {f"{name}_end": value for name, value in report["loss_end"].items()}
        metrics.update({f"{name}_start": value for name, value in report["loss_start"].items()})
        metrics["seconds"] = seconds
    return StageResult(metrics=metrics, artifacts=[Path(outputs["vocoder"]) / "train_report.json"], history=history)
