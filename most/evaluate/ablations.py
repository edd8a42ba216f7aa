"""Stage `ablations`: what MAMoE's modality split and the shared experts are worth, at equal steps.

Every variant in `ablations.variants` starts from the same graft, loaded with its config fields
changed (`routing: plain` lets every token use every expert; `shared_expert_intermediate_size: 0`
drops the shared experts), and trains exactly like `posttrain` (same data, mix, seed and settings)
for `ablations.steps` steps. Each is then measured on the same test items: ASR WER on the test
split, and audio-LM pair accuracy (`evaluate.audio_lm_task`, all kinds pooled), and the final dev
loss per task. Each variant is compared with `ablations.baseline` by a paired bootstrap over the
same items: an interval that excludes 0 separates the two. Checkpoints resume per variant.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import torch

from most.evaluate.stats import bootstrap_ratio, paired_bootstrap_difference
from most.io import write_json
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets
    from transformers import AutoTokenizer

    from most.evaluate.asr import asr_wer
    from most.evaluate.audio_lm import KINDS, pair_items, pair_scores
    from most.evaluate.generate import Checkpoint
    from most.model import MoSTForCausalLM
    from most.speech.feature_store import with_frames
    from most.train.stage import checkpoint_folder, fit, training_data
    from most.train.tasks import Formatter

    torch.set_num_threads(max(1, threads))
    settings, seed = cfg["ablations"], cfg["seed"]
    if settings["baseline"] not in settings["variants"]:
        raise ValueError(f"ablations.baseline {settings['baseline']!r} is not one of ablations.variants {sorted(settings['variants'])}")
    training = {**cfg["posttrain"], "steps": settings["steps"]}
    source = Path(inputs["graft"]) / "model"
    tokenizer = AutoTokenizer.from_pretrained(source)
    test = datasets.load_from_disk(str(Path(inputs["tokens"]) / "test"))
    asr_rows = with_frames([row for row in test if row["task"] == "asr"][: settings["asr_utterances"]], Path(inputs["features"]), "test")
    pair_rows = [row for row in test if row["task"] in KINDS and row["units"]]
    if len(asr_rows) < 2:
        raise ValueError(f"ablations: {inputs['tokens']}/test has {len(asr_rows)} asr utterances; at least 2 are needed")
    results, data = {}, {}  # training data per speech input (units or frames)
    for name, overrides in settings["variants"].items():
        started = time.time()
        model = MoSTForCausalLM.from_pretrained(source, dtype=torch.float32, **overrides)
        formatter = Formatter.for_model(tokenizer, cfg["tasks"]["templates"], model.config)
        if formatter.speech_frame_id not in data:
            data[formatter.speech_frame_id] = training_data("ablations", formatter, training, inputs)
        checkpoints = checkpoint_folder(f"ablation-{name}", {**cfg, "variant": overrides}, inputs, Path(outputs["ablations"]))
        log.info("ablations: variant %s (%s), %d steps", name, overrides, training["steps"])
        model, progress, _ = fit(
            f"ablation {name}",
            model,
            source,
            tokenizer.pad_token_id,
            data[formatter.speech_frame_id],
            training,
            seed,
            checkpoints,
            metric_prefix=f"{name}.",
        )
        if model is None:  # only the main process evaluates
            continue
        checkpoint = Checkpoint(model.eval(), tokenizer, formatter)
        asr = asr_wer(checkpoint, asr_rows, cfg["evaluate"]["max_new_tokens"], seed)
        likelihoods = checkpoint.log_likelihoods(cfg["evaluate"]["audio_lm_task"], pair_rows, units_only=True)
        pairs = pair_scores(pair_items(pair_rows, likelihoods, cfg["evaluate"]["audio_lm_score"]))
        results[name] = {
            "config": overrides,
            "steps": training["steps"],
            "seconds": round(time.time() - started, 1),
            "asr_wer": asr["wer"],
            "asr_wer_ci": asr["wer_ci"],
            "asr_errors": asr["errors"],
            "asr_words": asr["lengths"],
            "audio_lm_accuracy": sum(pairs.values()) / max(1, len(pairs)),
            "audio_lm_ci": bootstrap_ratio(list(pairs.values()), [1] * len(pairs), seed) if pairs else (float("nan"),) * 2,
            "audio_lm_pairs": pairs,
            "dev_loss_end": progress.get("dev_loss_end", {}),
        }
        log.info("ablations %s: test ASR WER %.3f, audio-LM accuracy %.3f", name, asr["wer"], results[name]["audio_lm_accuracy"])
        shutil.rmtree(checkpoints, ignore_errors=True)
    if not results:
        return StageResult()
    table = compare(results, settings["baseline"], seed)
    write_json(table, Path(outputs["ablations"]))
    Path(outputs["ablations_md"]).write_text(markdown(table))
    metrics = {f"{name}.{key}": row[key] for name, row in table["variants"].items() for key in ("asr_wer", "audio_lm_accuracy")}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["ablations"]), Path(outputs["ablations_md"])])


def compare(results: dict, baseline: str, seed: int) -> dict:
    """Each variant's numbers and its paired difference from the baseline (variant minus baseline)."""
    base = results[baseline]
    variants = {}
    for name, row in results.items():
        shared = sorted(set(row["audio_lm_pairs"]) & set(base["audio_lm_pairs"]))
        entry = {
            key: row[key]
            for key in ("config", "steps", "seconds", "asr_wer", "asr_wer_ci", "audio_lm_accuracy", "audio_lm_ci", "dev_loss_end")
        }
        entry |= {"asr_utterances": len(row["asr_errors"]), "audio_lm_pair_count": len(row["audio_lm_pairs"])}
        if name != baseline:
            entry["asr_wer_minus_baseline"] = row["asr_wer"] - base["asr_wer"]
            entry["asr_wer_minus_baseline_ci"] = paired_bootstrap_difference(
                (row["asr_errors"], row["asr_words"]), (base["asr_errors"], base["asr_words"]), seed
            )
            ones = [1] * len(shared)
            entry["audio_lm_minus_baseline"] = row["audio_lm_accuracy"] - base["audio_lm_accuracy"]
            entry["audio_lm_minus_baseline_ci"] = paired_bootstrap_difference(
                ([row["audio_lm_pairs"][p] for p in shared], ones), ([base["audio_lm_pairs"][p] for p in shared], ones), seed
            )
        variants[name] = entry
    return {"baseline": baseline, "variants": variants}


def markdown(table: dict) -> str:
    baseline = table["baseline"]
    lines = [
        "# Ablations: equal steps from the same graft",
        "",
        f"Differences are variant minus `{baseline}`, with 95% paired bootstrap CIs over the same test items "
        "(an interval that excludes 0 separates the two). Lower WER and higher accuracy are better.",
        "",
        "| Variant | Config | Steps | Test ASR WER (95% CI) | Δ WER (95% CI) | Audio-LM accuracy (95% CI) | Δ accuracy (95% CI) | Dev loss per task |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in table["variants"].items():
        config = ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "as grafted"
        delta_wer = delta_lm = "baseline"
        if name != baseline:
            delta_wer = f"{row['asr_wer_minus_baseline']:+.3f} ({row['asr_wer_minus_baseline_ci'][0]:+.3f}, {row['asr_wer_minus_baseline_ci'][1]:+.3f})"
            delta_lm = f"{row['audio_lm_minus_baseline']:+.3f} ({row['audio_lm_minus_baseline_ci'][0]:+.3f}, {row['audio_lm_minus_baseline_ci'][1]:+.3f})"
        losses = ", ".join(f"{task} {value:.3f}" for task, value in sorted(row["dev_loss_end"].items()))
        lines.append(
            f"| {name} | {config} | {row['steps']} | {row['asr_wer']:.3f} ({row['asr_wer_ci'][0]:.3f}–{row['asr_wer_ci'][1]:.3f}) | {delta_wer} "
            f"| {row['audio_lm_accuracy']:.3f} ({row['audio_lm_ci'][0]:.3f}–{row['audio_lm_ci'][1]:.3f}) | {delta_lm} | {losses} |"
        )
    return "\n".join(lines) + "\n"
