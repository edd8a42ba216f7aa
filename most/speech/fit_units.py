"""Stage `fit_units`: fit the k-means unit tokenizer on a sample of training frames."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from most.io import atomic_directory, write_json
from most.rng import rng_for
from most.speech import corpus, kmeans
from most.speech.features import make_features, normalize
from most.speech.units import UnitTokenizer
from most.stages import StageResult

log = logging.getLogger(__name__)


def sample_raw_frames(settings: dict, rows: list[dict], seed: int) -> tuple[list[torch.Tensor], int]:
    """Unnormalized feature frames of randomly chosen training utterances, until the budget is met."""
    features = make_features({**settings, "normalize": "none"})
    order = list(range(len(rows)))
    rng_for(seed, "fit_units-sample").shuffle(order)
    raw: list[torch.Tensor] = []
    used = 0
    for start in range(0, len(order), 16):
        batch = [rows[i] for i in order[start : start + 16]]
        raw += features([corpus.read_wave(r) for r in batch], [r["id"] for r in batch])
        used += len(batch)
        if sum(len(f) for f in raw) >= settings["sample_frames"]:
            break
    return raw, used


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    settings, seed = cfg["units"], cfg["seed"]
    torch.set_num_threads(max(1, threads))
    started = time.time()
    training = corpus.rows(inputs["prepare"], [s for s in corpus.manifest_splits(inputs["prepare"]) if s.startswith("train")])
    raw, used = sample_raw_frames(settings, training, seed)
    if not raw:
        raise ValueError(f"fit_units: no training utterance in {inputs['prepare']}/manifests")
    stacked = torch.cat(raw)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
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
