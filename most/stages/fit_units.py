"""Stage `fit_units`: fit the k-means unit tokenizer on a sample of the cached training frames."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from most.io import atomic_directory, write_json
from most.rng import rng_for
from most.speech import feature_store, kmeans
from most.speech.features import normalize
from most.speech.units import UnitTokenizer
from most.stages import StageResult

log = logging.getLogger(__name__)


def sample_raw_frames(settings: dict, features: Path, seed: int) -> tuple[list[torch.Tensor], int]:
    """Cached, unnormalised frames of randomly chosen training utterances, until the budget is met."""
    cached = {}
    for split in (s for s in feature_store.splits(features) if s.startswith("train")):
        cached |= feature_store.load_split(features, split)
    order = sorted(cached)
    rng_for(seed, "fit_units-sample").shuffle(order)
    raw: list[torch.Tensor] = []
    total = 0
    for item in order:
        if total >= settings["sample_frames"]:
            break
        raw.append(cached[item])
        total += len(cached[item])
    return raw, len(raw)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    settings, seed = cfg["units"], cfg["seed"]
    torch.set_num_threads(max(1, threads))
    started = time.time()
    raw, used = sample_raw_frames(settings, Path(inputs["features"]), seed)
    if not raw:
        raise ValueError(f"fit_units: no training utterance in {inputs['features']}")
    statistics = feature_store.stats(Path(inputs["features"]))
    mean, std = statistics["mean"], statistics["std"]
    sample = torch.cat([normalize(f, settings["normalize"], mean, std) for f in raw])[: settings["sample_frames"]]
    log.info("fit_units: %d frames from %d utterances (%.1f s of features)", len(sample), used, time.time() - started)
    result = kmeans.fit(sample, settings["k"], settings["kmeans_steps"], settings["batch_frames"], seed, settings["init_frames"])
    share = result.usage.float() / result.usage.sum()
    share = share[share > 0]
    report = {
        "k": settings["k"],
        "frames": len(sample),
        "utterances": used,
        "inertia": result.inertia,
        "clusters_used": int((result.usage > 0).sum()),
        "smallest_cluster": int(result.usage.min()),
        "largest_cluster": int(result.usage.max()),
        "usage_perplexity": math.exp(float(-(share * share.log()).sum())),
        "reseeded_dead_clusters": result.reseeded,
    }
    with atomic_directory(outputs["kmeans"]) as out:
        UnitTokenizer(settings, result.centroids, mean, std).save(out)
        write_json(report, out / "fit_report.json")
    log.info(
        "fit_units: k=%d, inertia %.3f, %d clusters used, usage perplexity %.1f, %d dead clusters reseeded",
        settings["k"],
        result.inertia,
        report["clusters_used"],
        report["usage_perplexity"],
        result.reseeded,
    )
    metrics = {key: value for key, value in report.items() if isinstance(value, int | float)}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["kmeans"]) / "fit_report.json"])
