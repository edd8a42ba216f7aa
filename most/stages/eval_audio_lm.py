"""Stage `eval_audio_lm`: sWUGGY-, sBLIMP- and StoryCloze-style pairs scored by likelihood.

Each utterance of a pair (rows of the test split with task `swuggy`/`sblimp`/`storycloze`, a
`pair_id` and a `label` of `correct` or `wrong`) is scored alone: the log-likelihood of its unit
tokens (not the speech markers or EOS) as the response of `evaluate.audio_lm_task` (default
`speech_lm`: units with no text at all), summed and per token. As in ZeroSpeech 2021: a pair
scores 1 if the correct utterance is likelier, 0.5 on a tie, else 0; with several voices per pair,
the voices' scores are averaged first. Accuracy per kind with a bootstrap CI over pairs; the
headline is the mean over kinds (`evaluate.audio_lm_score` picks the per-token mean or the sum).
Chance is 0.5.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from most.evaluate.audio_lm import KINDS, accuracy, pair_items, pair_scores
from most.evaluate.stats import bootstrap_macro_mean
from most.io import atomic_directory, write_json
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets

    from most.evaluate.generate import Checkpoint

    settings, seed, started = cfg["evaluate"], cfg["seed"], time.time()
    task = settings["audio_lm_task"]
    if task not in cfg["tasks"]["templates"]:
        raise ValueError(f"evaluate.audio_lm_task: {task!r} has no template in tasks.templates")
    checkpoint = Checkpoint.load(Path(inputs["instruct"]), cfg["tasks"]["templates"], threads)
    test = datasets.load_from_disk(str(Path(inputs["tokens"]) / "test"))
    results, per_pair, skipped = {}, {}, {}
    for kind in KINDS:
        rows = [row for row in test if row["task"] == kind]
        if settings["audio_lm_pairs"]:
            keep = set(sorted({row["pair_id"] for row in rows})[: settings["audio_lm_pairs"]])
            rows = [row for row in rows if row["pair_id"] in keep]
        empty = [row["id"] for row in rows if not row["units"]]
        skipped[kind] = len(empty)
        rows = [row for row in rows if row["units"]]
        if not rows:
            log.warning("eval_audio_lm: no %s pairs in %s/test", kind, inputs["tokens"])
            continue
        likelihoods = checkpoint.log_likelihoods(task, rows, units_only=True)
        results[kind], per_pair[kind] = {}, {}
        for score_name in ("mean", "sum"):
            per_pair[kind][score_name] = pair_scores(pair_items(rows, likelihoods, score_name))
            results[kind][score_name] = accuracy(per_pair[kind][score_name], seed)
        log.info(
            "eval_audio_lm %s: accuracy %.3f (mean) / %.3f (sum) over %d pairs",
            kind,
            results[kind]["mean"]["accuracy"],
            results[kind]["sum"]["accuracy"],
            results[kind]["mean"]["pairs"],
        )
    if not results:
        raise ValueError(f"eval_audio_lm: no audio-LM pairs ({', '.join(KINDS)}) in {inputs['tokens']}/test")
    headline = settings["audio_lm_score"]
    groups = [list(per_pair[kind][headline].values()) for kind in results]
    average = {
        "accuracy": sum(results[kind][headline]["accuracy"] for kind in results) / len(results),
        "ci": bootstrap_macro_mean(groups, seed),
        "pairs": sum(len(g) for g in groups),
        "score": headline,
        "kinds": list(results),
    }
    summary = {
        "average": average,
        "kinds": results,
        "task": task,
        "chance": 0.5,
        "skipped_empty_units": skipped,
        "seconds": round(time.time() - started, 1),
    }
    with atomic_directory(outputs["eval_audio_lm"]) as out:
        write_json(summary, out / "metrics.json")
        write_json(per_pair, out / "pairs.json")
    metrics = {"accuracy": average["accuracy"]} | {
        f"{kind}.{name}": results[kind][name]["accuracy"] for kind in results for name in ("mean", "sum")
    }
    return StageResult(metrics=metrics, artifacts=[Path(outputs["eval_audio_lm"]) / "metrics.json"])
