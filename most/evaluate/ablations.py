"""Ablation measurements and their comparison (the `ablations` stage, `most.stages.ablations`):
starting, training and measuring one variant x seed, and the table of each variant's mean over
seeds with a 95% interval that resamples seeds and items, its difference from the baseline paired
by seed and item.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from most import tracking
from most.evaluate.stats import bootstrap_over_seeds_and_items
from most.io import write_json
from most.stages import StageResult, code_digest

log = logging.getLogger(__name__)

# which direction is better, for the words under the table
# metric -> (its name in words, whether lower is better). The test losses are per-token means over the
# same test utterances (the transcript given the speech; the units given the transcript): they separate
# variants that are still too short-trained for their WERs to differ.
METRICS = {
    "asr_wer": ("test ASR WER", True),
    "asr_loss": ("test ASR loss", True),
    "tts_loss": ("test TTS loss", True),
    "audio_lm_accuracy": ("audio-LM accuracy", False),
}
RATIOS = ("asr_wer", "asr_loss", "tts_loss")  # sum of numerators / sum of denominators over the utterances


def check_settings(settings: dict, model: dict) -> None:
    if settings["baseline"] not in settings["variants"]:
        raise ValueError(f"ablations.baseline {settings['baseline']!r} is not one of ablations.variants {sorted(settings['variants'])}")
    if len(set(settings["seeds"])) != len(settings["seeds"]):
        raise ValueError(f"ablations.seeds {settings['seeds']} repeats a seed")
    for name, variant in settings["variants"].items():
        if "base_lm" in variant and model["base"] != "embedded":
            raise ValueError(
                f"ablations.variants.{name}.base_lm: a start pretrained from scratch needs model.base: embedded "
                f"(it is {model['base']!r}); a hub base's variant can only change config fields on load"
            )


def model_overrides(variant: dict) -> dict:
    """The MoSTConfig fields a variant changes when its start is loaded."""
    return {key: value for key, value in variant.items() if key != "base_lm"}


def measured_folder(name: str, variant: dict, seed: int, cfg: dict, inputs: dict, output: Path) -> Path:
    from most.train.runner import checkpoint_folder

    # the code too: a record measured by older code is not reused
    return checkpoint_folder(
        f"ablation-{name}-seed{seed}", {**cfg, "variant": variant, "seed": seed, "code": code_digest("ablations")}, inputs, output
    )


def measure_variant(
    name: str, variant: dict, seed: int, source: Path, cfg: dict, inputs: dict, items: dict, folder: Path, data: dict
) -> dict | None:
    """Train one variant with one seed and measure it, in its own MLflow run under the stage's; a
    measurement an earlier attempt finished is read back (and logged again) instead."""
    done = folder / "measured.json"
    params = {
        "variant": name,
        "seed": seed,
        "start": str(source),
        **model_overrides(variant),
        **{f"base_lm.{k}": v for k, v in variant.get("base_lm", {}).items()},
    }
    with tracking.child_run(f"{name} seed {seed}", params) as child:
        if done.exists():
            record = json.loads(done.read_text())
            log.info("ablations %s seed %d: measured by an earlier attempt (%s)", name, seed, done)
            history = [(entry["step"], {k: v for k, v in entry.items() if k != "step"}) for entry in record["history"]]
        else:
            record = train_and_measure(name, variant, seed, source, cfg, inputs, items, folder, data)
            if record is None:
                return None
            history = []  # logged while it trained
            write_json(record, done)
        child.log_result(StageResult(metrics=run_metrics(record), history=history))
    return record


def train_and_measure(
    name: str, variant: dict, seed: int, source: Path, cfg: dict, inputs: dict, items: dict, folder: Path, data: dict
) -> dict | None:
    from transformers import AutoTokenizer

    from most.evaluate.asr import asr_wer
    from most.evaluate.audio_lm import pair_items, pair_scores
    from most.evaluate.generate import Checkpoint
    from most.model import MoSTForCausalLM
    from most.model.base_lm import perplexity
    from most.train.runner import fit, training_data
    from most.train.tasks import Formatter

    started = time.time()
    training = {**cfg["posttrain"], "steps": cfg["ablations"]["steps"]}
    tokenizer = AutoTokenizer.from_pretrained(source)
    model = MoSTForCausalLM.from_pretrained(source, dtype=torch.float32, **model_overrides(variant))
    start_perplexity, _ = perplexity(model, tokenizer, items["texts"], vocab=model.config.audio_token_start)
    formatter = Formatter.for_model(tokenizer, cfg["tasks"]["templates"], model.config)
    key = (str(source), formatter.speech_frame_id)
    if key not in data:
        data[key] = training_data("ablations", formatter, training, inputs)
    log.info(
        "ablations: %s seed %d (%s), %d steps; held-out text perplexity at the start %.2f",
        name,
        seed,
        variant,
        training["steps"],
        start_perplexity,
    )
    model, progress, history = fit(f"ablation {name} seed {seed}", model, source, tokenizer.pad_token_id, data[key], training, seed, folder)
    if model is None:
        return None
    checkpoint = Checkpoint(model.eval(), tokenizer, formatter)
    asr = asr_wer(checkpoint, items["asr"], cfg["evaluate"]["max_new_tokens"], seed)
    likelihoods = checkpoint.log_likelihoods(cfg["evaluate"]["audio_lm_task"], items["pairs"], units_only=True)
    pairs = pair_scores(pair_items(items["pairs"], likelihoods, cfg["evaluate"]["audio_lm_score"]))
    per_utterance = {
        f"{task}_loss": [[-total for total, _ in scored], [count for _, count in scored]]
        for task, scored in (
            ("asr", checkpoint.log_likelihoods("asr", items["asr"])),
            ("tts", checkpoint.log_likelihoods("tts", items["tts"], units_only=True)),
        )
    }
    losses = {metric: sum(top) / max(1, sum(bottom)) for metric, (top, bottom) in per_utterance.items()}
    config = model.config
    record = {
        "variant": variant,
        "seed": seed,
        "steps": training["steps"],
        "seconds": round(time.time() - started, 1),
        "start_text_perplexity": start_perplexity,
        # expert intermediate width each token runs through: equal compute across variants
        "active_expert_width": config.num_experts_per_tok * config.moe_intermediate_size + config.shared_expert_size,
        "asr_wer": asr["wer"],
        "asr_loss": losses["asr_loss"],
        "tts_loss": losses["tts_loss"],
        # per test utterance, for the intervals: metric -> [numerators, denominators]
        "per_utterance": {"asr_wer": [asr["errors"], asr["lengths"]], **per_utterance},
        "audio_lm_pairs": pairs,
        "audio_lm_accuracy": sum(pairs.values()) / max(1, len(pairs)),
        "dev_loss_end": progress.get("dev_loss_end", {}),
        "history": history,
    }
    log.info(
        "ablations %s seed %d: test ASR WER %.3f, ASR loss %.3f, TTS loss %.3f, audio-LM accuracy %.3f",
        *(name, seed, record["asr_wer"], record["asr_loss"], record["tts_loss"], record["audio_lm_accuracy"]),
    )
    for step_folder in folder.glob("step_*"):  # the weights are measured; the record is what a rerun needs
        shutil.rmtree(step_folder, ignore_errors=True)
    return record


def run_metrics(record: dict) -> dict:
    """One variant x seed's numbers, under the same names in every run."""
    metrics = {key: record[key] for key in (*METRICS, "start_text_perplexity", "seconds")}
    return metrics | {f"dev_loss_end.{task}": value for task, value in record["dev_loss_end"].items()}


def _matrices(records: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray, list]:
    """seeds x items numerators and denominators of a metric (ASR: errors / words; a loss: summed
    negative log-likelihood / tokens; audio-LM: correct / 1, over the pairs every run scored)."""
    if metric in RATIOS:
        return tuple(np.array([r["per_utterance"][metric][side] for r in records], float) for side in (0, 1)) + ([],)
    shared = sorted(set.intersection(*(set(r["audio_lm_pairs"]) for r in records)))
    correct = np.array([[r["audio_lm_pairs"][p] for p in shared] for r in records], float)
    return correct, np.ones_like(correct), shared


def _per_seed(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Each seed's ratio over its items (a seeds x items pair of numerators and denominators)."""
    return top.sum(1) / np.maximum(bottom.sum(1), 1e-12)


def compare(records: dict, settings: dict) -> dict:
    """Each variant's mean over seeds with its seeds-and-items interval, and its difference from the
    baseline paired by seed and item (variant minus baseline)."""
    baseline, seeds, stat_seed = settings["baseline"], settings["seeds"], settings["seeds"][0]
    variants = {}
    for name in [baseline, *(other for other in settings["variants"] if other != baseline)]:
        variant, runs = settings["variants"][name], [records[name, seed] for seed in seeds]
        first = runs[0]
        entry = {
            "config": variant,
            "steps": first["steps"],
            "seeds": seeds,
            "seconds": sum(r["seconds"] for r in runs),
            "start_text_perplexity": first["start_text_perplexity"],
            "active_expert_width": first["active_expert_width"],
            "asr_utterances": len(first["per_utterance"]["asr_wer"][0]),
            "dev_loss_end": {task: float(np.mean([r["dev_loss_end"][task] for r in runs])) for task in first["dev_loss_end"]},
        }
        for metric in METRICS:
            pair_runs = runs + [records[baseline, seed] for seed in seeds]  # items both have
            top, bottom, shared = _matrices(pair_runs, metric)
            own, base = (top[: len(seeds)], bottom[: len(seeds)]), (top[len(seeds) :], bottom[len(seeds) :])
            per_seed = _per_seed(*own).tolist()
            entry[metric] = float(np.mean(per_seed))
            entry[f"{metric}_per_seed"] = per_seed
            entry[f"{metric}_ci"] = bootstrap_over_seeds_and_items(own, stat_seed)
            if metric == "audio_lm_accuracy":
                entry["audio_lm_pair_count"] = len(shared)
            if name != baseline:
                entry[f"{metric}_minus_baseline"] = entry[metric] - float(np.mean(_per_seed(*base)))
                entry[f"{metric}_minus_baseline_ci"] = bootstrap_over_seeds_and_items(own, stat_seed, baseline=base)
        variants[name] = entry
    return {"baseline": baseline, "seeds": seeds, "variants": variants, "findings": findings(variants, baseline)}


def findings(variants: dict, baseline: str) -> list[str]:
    """In words, each difference from the baseline and whether its interval excludes 0; nothing more
    is claimed than the interval supports."""
    lines = []
    for name, row in variants.items():
        if name == baseline:
            continue
        for metric, (words, lower_is_better) in METRICS.items():
            difference, (low, high) = row[f"{metric}_minus_baseline"], row[f"{metric}_minus_baseline_ci"]
            measured = f"`{name}` − `{baseline}` {words} {difference:+.3f} (95% CI {low:+.3f} to {high:+.3f})"
            if low > 0 or high < 0:
                better = (high < 0) == lower_is_better
                lines.append(f"{measured}: beyond its interval, so `{name}` is {'better' if better else 'worse'} than `{baseline}` here.")
            else:
                lines.append(f"{measured}: the interval includes 0, so these runs do not separate the two.")
    return lines


def markdown(table: dict) -> str:
    baseline, seeds = table["baseline"], table["seeds"]
    steps = next(iter(table["variants"].values()))["steps"]
    lines = [
        f"# Ablations: equal compute, {steps} steps, {len(seeds)} training seeds ({', '.join(map(str, seeds))})",
        "",
        f"Each number is the mean over seeds with its 95% interval, which resamples seeds and test items. Δ is variant minus "
        f"`{baseline}`, paired by seed and item: an interval that excludes 0 separates the two. Lower WER and losses (nats per "
        "token) and higher accuracy are better. Start perplexity: held-out text before training. Active width: expert "
        "intermediate units each token runs through.",
        "",
        "| Variant | Config | Start perplexity | Active width | "
        + " | ".join(f"{words[0].upper()}{words[1:]}" for words, _ in METRICS.values())
        + " |",
        "|---|---|---|---|" + "---|" * len(METRICS),
    ]
    for name, row in table["variants"].items():
        config = ", ".join(f"{k}={v}" for k, v in row["config"].items()) or "as grafted"
        cells = []
        for metric in METRICS:
            cell = f"{row[metric]:.3f} ({row[f'{metric}_ci'][0]:.3f}–{row[f'{metric}_ci'][1]:.3f})"
            if name != baseline:
                low, high = row[f"{metric}_minus_baseline_ci"]
                cell += f"; Δ {row[f'{metric}_minus_baseline']:+.3f} ({low:+.3f}, {high:+.3f})"
            cells.append(cell)
        lines.append(
            f"| {name} | {config} | {row['start_text_perplexity']:.2f} | {row['active_expert_width']} | " + " | ".join(cells) + " |"
        )
    lines += ["", "## What the intervals support", "", *(f"- {line}" for line in table["findings"])]
    return "\n".join(lines) + "\n"
