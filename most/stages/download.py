"""Stage `download`: bring every configured source into the source-folder layout.

- embedded: generate the world's texts (`most.world`) and speak them (`most.data.synth`);
- hub: `datasets.load_dataset` at a pinned revision; audio bytes kept as downloaded (decoded by
  `prepare` with soundfile, never torchcodec); text sets can be spoken by the synthesis voices;
- local: an audiofolder-style folder, copied;
- pair_sets: audio-LM minimal pairs (ZeroSpeech 2021 sWUGGY/sBLIMP, spoken StoryCloze) from their
  released archives (`most.data.pair_sets`).
"""

from __future__ import annotations

from pathlib import Path

from most.data.download import download_embedded, download_hub, download_local, download_pair_set
from most.io import atomic_directory, write_json
from most.stages import StageResult


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    """Write every source to `outputs["download"]/<source>/`; summary in sources.json."""
    settings = cfg["download"]
    summaries = []
    with atomic_directory(outputs["download"]) as out:
        if settings["embedded"]["enabled"]:
            summaries.append(download_embedded(settings, cfg["seed"], out / "embedded", threads))
        for source in settings["hub"]:
            summaries.append(download_hub(source, settings["synthesis"], cfg["seed"], out / source["name"], threads))
        for source in settings["local"]:
            summaries.append(download_local(source, out / source["name"]))
        for source in settings["pair_sets"]:
            summaries.append(download_pair_set(source, out / source["name"]))
        write_json({"sources": summaries}, out / "sources.json")
    metrics = {}
    for summary in summaries:
        metrics[f"{summary['name']}.utterances"] = summary["utterances"]
        metrics[f"{summary['name']}.text_items"] = summary["text_items"]
        metrics[f"{summary['name']}.seconds"] = summary["seconds"]
    return StageResult(metrics=metrics, artifacts=[Path(outputs["download"]) / "sources.json"])
