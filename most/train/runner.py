"""The runner of the two training stages, `posttrain` (stage 1: ASR/TTS/text LM from the graft)
and `instruct` (stage 2: instructions).

Checkpoints live in `results/<run>/checkpoints/<stage>-<config digest>/`, outside the stage's output
(Snakemake deletes a failed job's outputs; the checkpoints must survive a kill), keyed by the stage's
config so an edited config never resumes a stale run. They are removed once the final model is saved.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from most.io import atomic_directory, write_json
from most.plots import expert_load_heatmap
from most.speech.feature_store import with_frames
from most.stages import StageResult, process_rank
from most.train.data import task_rows
from most.train.history import LOSS_CURVE, StepHistory, loss_curve
from most.train.loop import LoopSettings, checkpoint_step, latest_checkpoint, train
from most.train.mixing import MixedBatches
from most.train.tasks import Formatter
from most.tracking import float_path

log = logging.getLogger(__name__)
SOURCE = {"posttrain": "graft", "instruct": "posttrain"}


def checkpoint_folder(stage: str, cfg: dict, inputs: dict, output: Path) -> Path:
    """`results/<run>/checkpoints/<stage>-<digest>`: the digest covers the stage's config and its
    inputs' files (name, size, modification time), so neither an edited config nor a rebuilt input
    model ever resumes a stale run."""
    files = sorted(
        (str(path), path.stat().st_size, path.stat().st_mtime_ns)
        for folder in sorted(map(Path, inputs.values()))
        for path in ([folder] if folder.is_file() else sorted(folder.rglob("*")))
        if path.is_file()
    )
    digest = hashlib.sha256(json.dumps([cfg, files], sort_keys=True).encode()).hexdigest()[:10]
    return Path(output).parent / "checkpoints" / f"{stage}-{digest}"


def formatted(formatter: Formatter, rows: dict[str, list[dict]], longest: int, limit: int | None = None) -> tuple[dict, dict]:
    """Training examples per task, those over `longest` tokens left out (and counted)."""
    examples, too_long = {}, {}
    for task, task_rows_of in rows.items():
        made = [formatter.example(task, row) for row in task_rows_of[:limit]]
        examples[task] = [e for e in made if len(e.ids) <= longest]
        too_long[task] = len(made) - len(examples[task])
    return examples, too_long


def training_data(stage: str, formatter: Formatter, settings: dict, inputs: dict) -> dict:
    """Training and dev examples of the stage's mix, and the dev ASR rows its WER is measured on."""
    mix = {task: ratio for task, ratio in settings["mix"].items() if ratio > 0}

    def rows_of(tasks: list[str], split: str) -> dict[str, list[dict]]:
        found = task_rows(tasks, split, inputs["tokens"], inputs["prepare"])
        if formatter.speech_frame_id is None:
            return found
        spoken_prompts = {task for task in found if "{speech}" in formatter.templates[task]["prompt"]}
        return {task: with_frames(rows, inputs["features"], split) if task in spoken_prompts else rows for task, rows in found.items()}

    examples, too_long = formatted(formatter, rows_of(list(mix), "train"), settings["max_length"])
    dev_rows = {task: rows for task, rows in rows_of(list(mix), "dev").items() if rows}
    dev, _ = formatted(formatter, dev_rows, settings["max_length"], limit=settings["dev_examples"])
    asr_dev = (dev_rows.get("asr") or rows_of(["asr"], "dev")["asr"])[: settings["dev_asr_utterances"]]
    if len(asr_dev) < 2:  # checked before training: the WER comes after it
        raise ValueError(f"{stage}: dev ASR needs at least 2 dev utterances in {inputs['tokens']}/dev, found {len(asr_dev)}")
    for task, count in too_long.items():
        if count:
            log.warning("%s: %d %s examples longer than max_length %d left out", stage, count, task, settings["max_length"])
    return {"mix": mix, "examples": examples, "too_long": too_long, "dev": {t: r for t, r in dev.items() if r}, "asr_dev": asr_dev}


def fit(
    stage: str, model, source: Path, pad_id: int, data: dict, settings: dict, seed: int, checkpoints: Path
) -> tuple[object, dict, list]:
    """Train `model` (loaded from `source`) on `data` for `settings["steps"]`, resuming from
    `checkpoints`. Returns the trained model re-read from the last checkpoint on the main process
    (the full weights whatever the strategy: FSDP/ZeRO-3 shard the live model), the progress and
    the per-step history (every step, the ones before a resume included; logged to MLflow already)."""
    from most.model import MoSTForCausalLM

    examples, dev = data["examples"], data["dev"]
    log.info(
        "%s: training examples per task %s; dev loss on %s",
        stage,
        {t: len(v) for t, v in examples.items()},
        {t: len(v) for t, v in dev.items()},
    )
    lengths = {task: [len(example.ids) for example in rows_of] for task, rows_of in examples.items()}
    batches = MixedBatches(lengths, data["mix"], settings["tokens_per_batch"], seed)
    loop = LoopSettings(
        steps=settings["steps"],
        tokens_per_batch=settings["tokens_per_batch"],
        learning_rate=settings["learning_rate"],
        warmup_steps=settings["warmup_steps"],
        weight_decay=settings["weight_decay"],
        grad_clip=settings["grad_clip"],
        checkpoint_every=settings["checkpoint_every"],
        keep_checkpoints=2,
        seed=seed,
        gradient_accumulation=settings["gradient_accumulation"],
        trainable=tuple(settings["trainable"]),
        eval_every=settings["eval_every"],
        task_weights=data["mix"] if settings["loss_weighting"] == "task" else None,
        gradient_checkpointing=settings["gradient_checkpointing"],
        compile_layers=settings["compile_layers"],
    )
    main = process_rank() == 0
    resumed = checkpoint_step(latest_checkpoint(checkpoints))
    history = StepHistory(checkpoints, resumed, settings["log_every"]) if main else None

    def on_step(step: int, metrics: dict) -> None:  # on the main process only
        history.append(step, metrics, last=step == loop.steps)
        if step % settings["log_every"] == 0 or step == loop.steps:
            tasks = " ".join(f"{k[5:]}={v:.3f}" for k, v in metrics.items() if k.startswith("loss."))
            log.info(
                "%s: step %d/%d loss %.3f (%s) %.0f tokens/s", stage, step, loop.steps, metrics["loss"], tasks, metrics["tokens_per_second"]
            )

    progress = train(model, examples, batches, loop, checkpoints, pad_id, on_step, dev=dev)
    if not main:
        return None, progress, []
    trained = MoSTForCausalLM.from_pretrained(source, dtype=torch.float32, **model_overrides(model))
    trained.load_state_dict(load_file(str(latest_checkpoint(checkpoints) / "model.safetensors")))
    return trained.to("cuda" if torch.cuda.is_available() else "cpu"), progress, history.steps()


def model_overrides(model) -> dict:
    """Config fields a variant changed on load (routing, shared experts, speech input), to load it the same way again."""
    return {key: getattr(model.config, key) for key in ("routing", "shared_expert_intermediate_size", "speech_input")}


def run_stage(stage: str, cfg: dict, inputs: dict, outputs: dict, threads: int) -> StageResult:
    from transformers import AutoTokenizer

    from most.evaluate.asr import asr_wer
    from most.evaluate.generate import Checkpoint
    from most.model import MoSTForCausalLM

    torch.set_num_threads(max(1, threads))
    settings, seed = cfg[stage], cfg["seed"]
    source = Path(inputs[SOURCE[stage]]) / "model"
    model = MoSTForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    formatter = Formatter.for_model(tokenizer, cfg["tasks"]["templates"], model.config)
    data = training_data(stage, formatter, settings, inputs)
    started = time.time()
    checkpoints = checkpoint_folder(stage, cfg, inputs, Path(outputs[stage]))
    model, progress, history = fit(stage, model, source, tokenizer.pad_token_id, data, settings, seed, checkpoints)
    if model is None:  # the main process evaluates and writes the outputs
        return StageResult()
    asr_dev = data["asr_dev"]
    asr = asr_wer(Checkpoint(model, tokenizer, formatter), asr_dev, settings["max_new_tokens"], seed)
    summary = {
        "steps": settings["steps"],
        "seconds": round(time.time() - started, 1),
        "tokens_per_second": progress["tokens"] / max(progress["seconds"], 1e-9),
        "loss_start": progress["loss_start"],
        "loss_end": progress["loss_end"],
        "dev_loss_start": progress.get("dev_loss_start", {}),
        "dev_loss_end": progress.get("dev_loss_end", {}),
        "dev_asr_wer": asr["wer"],
        "dev_asr_wer_ci": asr["wer_ci"],
        "dev_asr_wer_chance": asr["wer_chance"],
        "dev_asr_chance_minus_wer_ci": asr["chance_minus_wer_ci"],
        "dev_asr_utterances": len(asr_dev),
        "dev_asr_examples": [{"reference": r["text"], "hypothesis": h} for r, h in list(zip(asr_dev, asr["hypotheses"]))[:5]],
        "examples": {task: len(rows) for task, rows in data["examples"].items()},
        "too_long": data["too_long"],
        "float_path": float_path(next(model.parameters()).device),
    }
    log.info(
        "%s: dev ASR WER %.3f (95%% CI %.3f-%.3f; chance %.3f, chance - WER %.3f-%.3f) over %d utterances",
        stage,
        asr["wer"],
        *asr["wer_ci"],
        asr["wer_chance"],
        *asr["chance_minus_wer_ci"],
        len(asr_dev),
    )
    with atomic_directory(outputs[stage]) as out:
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        write_json(summary, out / "summary.json")
        write_json({"expert_load": progress.get("expert_load", []), "rows": ["text", "audio"]}, out / "expert_load.json")
        write_json(history, out / "history.json")
        write_json(loss_curve(history), out / LOSS_CURVE)
        if progress.get("expert_load"):
            expert_load_heatmap(progress["expert_load"], out / "expert_load.png", f"{stage}: expert load per modality")
    shutil.rmtree(checkpoints, ignore_errors=True)
    metrics = {"dev_asr_wer": asr["wer"], "dev_asr_wer_chance": asr["wer_chance"], "tokens_per_second": summary["tokens_per_second"]}
    metrics |= {"seconds": summary["seconds"]} | {f"loss_end.{task}": value for task, value in progress["loss_end"].items()}
    metrics |= {f"dev_loss_end.{task}": value for task, value in summary["dev_loss_end"].items()}
    artifacts = [Path(outputs[stage]) / name for name in ("summary.json", "expert_load.json", "expert_load.png")]
    artifacts = [path for path in artifacts if path.exists()]
    return StageResult(metrics=metrics, artifacts=artifacts)  # the history went to MLflow while training ran
