"""Stages `posttrain` (stage 1: ASR/TTS/text LM from the graft) and `instruct` (stage 2: instructions).

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

from most.io import atomic_directory, write_json
from most.stages import StageResult
from most.train.data import task_rows
from most.train.loop import LoopSettings, train
from most.train.mixing import MixedBatches
from most.train.tasks import Formatter

log = logging.getLogger(__name__)
SOURCE = {"posttrain": "graft", "instruct": "posttrain"}


def checkpoint_folder(stage: str, cfg: dict, output: Path) -> Path:
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:10]
    return Path(output).parent / "checkpoints" / f"{stage}-{digest}"


@torch.no_grad()
def asr_wer(model, tokenizer, formatter: Formatter, rows: list[dict], max_new_tokens: int) -> tuple[float, list[str]]:
    """Greedy ASR on `rows`: WER (fraction) against their text, and the hypotheses."""
    from most.evaluate.normalize import word_error_rate

    model.eval()
    hypotheses = []
    for row in rows:
        prompt = torch.tensor([formatter.prompt("asr", row)])
        out = model.generate(prompt, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=tokenizer.eos_token_id)
        hypotheses.append(tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True).strip())
    return word_error_rate([row["text"] for row in rows], hypotheses)["wer"], hypotheses


def run_stage(stage: str, cfg: dict, inputs: dict, outputs: dict, threads: int) -> StageResult:
    from transformers import AutoTokenizer

    from most.model import MoSTForCausalLM

    torch.set_num_threads(max(1, threads))
    settings, seed = cfg[stage], cfg["seed"]
    source = Path(inputs[SOURCE[stage]]) / "model"
    model = MoSTForCausalLM.from_pretrained(source, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(source)
    formatter = Formatter(tokenizer, cfg["tasks"]["templates"], model.config.audio_token_start)
    mix = {task: ratio for task, ratio in settings["mix"].items() if ratio > 0}
    rows = task_rows(list(mix), "train", inputs["tokens"], inputs["prepare"])
    examples = {task: [formatter.example(task, row) for row in task_rows_of] for task, task_rows_of in rows.items()}
    longest = settings["max_length"]
    for task in examples:
        kept = [e for e in examples[task] if len(e[0]) <= longest]
        if len(kept) < len(examples[task]):
            log.info("%s: %d %s examples longer than %d tokens left out", stage, len(examples[task]) - len(kept), task, longest)
        examples[task] = kept
    lengths = {task: [len(ids) for ids, _ in rows_of] for task, rows_of in examples.items()}
    log.info("%s: examples per task %s", stage, {task: len(v) for task, v in examples.items()})
    batches = MixedBatches(lengths, mix, settings["tokens_per_batch"], seed)
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
    )
    history: list[tuple[int, dict]] = []
    started = time.time()

    def on_step(step: int, metrics: dict) -> None:
        history.append((step, metrics))
        if step % 25 == 0 or step == loop.steps:
            tasks = " ".join(f"{k[5:]}={v:.3f}" for k, v in metrics.items() if k.startswith("loss."))
            log.info(
                "%s: step %d/%d loss %.3f (%s) %.0f tokens/s", stage, step, loop.steps, metrics["loss"], tasks, metrics["tokens_per_second"]
            )

    checkpoints = checkpoint_folder(stage, cfg, Path(outputs[stage]))
    progress = train(model, examples, batches, loop, checkpoints, tokenizer.pad_token_id, on_step)
    dev = task_rows(["asr"], "dev", inputs["tokens"], inputs["prepare"])["asr"][: settings["dev_asr_utterances"]]
    wer, hypotheses = asr_wer(model, tokenizer, formatter, dev, settings["max_new_tokens"]) if dev else (float("nan"), [])
    summary = {
        "steps": loop.steps,
        "seconds": round(time.time() - started, 1),
        "tokens_per_second": progress["tokens"] / max(progress["seconds"], 1e-9),
        "loss_start": progress["loss_start"],
        "loss_end": progress["loss_end"],
        "dev_asr_wer": wer,
        "dev_asr_utterances": len(dev),
        "dev_asr_examples": [{"reference": r["text"], "hypothesis": h} for r, h in list(zip(dev, hypotheses))[:5]],
    }
    log.info("%s: dev ASR WER %.3f over %d utterances", stage, wer, len(dev))
    with atomic_directory(outputs[stage]) as out:
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        write_json(summary, out / "summary.json")
        write_json({"expert_load": progress.get("expert_load", []), "rows": ["text", "audio"]}, out / "expert_load.json")
    shutil.rmtree(checkpoints, ignore_errors=True)
    metrics = {"dev_asr_wer": wer, "tokens_per_second": summary["tokens_per_second"], "seconds": summary["seconds"]}
    metrics |= {f"loss_end.{task}": value for task, value in progress["loss_end"].items()}
    artifacts = [Path(outputs[stage]) / name for name in ("summary.json", "expert_load.json")]
    return StageResult(metrics=metrics, artifacts=artifacts, history=history)
