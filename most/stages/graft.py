"""Stage `graft`: the base (the embedded base LM, or `model.base` from the hub or a folder) becomes a
MoST model (`most.model.graft`: expert assignment, unit tokens, written tensor by tensor).

Output: `graft/model/` (a transformers checkpoint with its tokenizer) and `graft/report.json`: with
`plain` routing the text logits equal the base model's, and with the configured routing the held-out
text perplexity sits beside the base model's.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from most.io import atomic_directory, write_json
from most.model.base_lm import held_out_texts
from most.model.graft import graft_stage, training_rows, unit_centroids
from most.speech import feature_store
from most.stages import StageResult


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    torch.set_num_threads(max(1, threads))
    settings, seed = dict(cfg["model"]), cfg["seed"]
    embedded = settings["base"] == "embedded"
    source, revision = (str(inputs["base_lm"]), "") if embedded else (settings["base"], settings["base_revision"])
    units = json.loads((Path(inputs["tokens"]) / "tokenize_report.json").read_text())["k"]
    feature_stats = feature_store.stats(Path(inputs["features"]))
    texts = held_out_texts(inputs["prepare"], settings["eval_sentences"])
    settings["calibration_texts"] = [row["text"] for row in training_rows(inputs["prepare"], settings["calibration_sentences"])]
    if settings["unit_embedding_init"] == "centroids":
        settings["unit_centroids"] = unit_centroids(Path(inputs["kmeans"]), units)
    with atomic_directory(outputs["graft"]) as out:
        report = graft_stage(source, revision, settings, units, seed, feature_stats, texts, out)
        write_json(report, out / "report.json")
    metrics = {k: float(v) for k, v in report.items() if isinstance(v, int | float)}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["graft"]) / "report.json"])
