"""The training loop (accelerate): mixed-task batches, AdamW with warmup + cosine decay, clipping,
per-task losses, checkpoints written atomically every N steps and resumed from automatically.

A checkpoint `step_<n>/` holds the model weights (safetensors), the optimizer and scheduler states
(`torch.save`, read back with `weights_only=True`), and the sampler and progress state (JSON). It is
written to a temporary folder and renamed, so a folder named `step_<n>` is always complete.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from most.io import atomic_directory
from most.model.sequences import collate, row_losses
from most.train.mixing import MixedBatches

log = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"^step_(\d+)$")


@dataclass
class LoopSettings:
    steps: int
    tokens_per_batch: int
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    checkpoint_every: int
    keep_checkpoints: int
    seed: int


def schedule(settings: LoopSettings) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < settings.warmup_steps:
            return (step + 1) / settings.warmup_steps
        progress = (step - settings.warmup_steps) / max(1, settings.steps - settings.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))  # decays to 10% of the peak

    return factor


def latest_checkpoint(folder: Path) -> Path | None:
    found = (
        [(int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT.match(p.name)) and p.is_dir()] if folder.exists() else []
    )
    return max(found)[1] if found else None


def save_checkpoint(folder: Path, step: int, model, optimizer, scheduler, batches: MixedBatches, progress: dict, keep: int) -> Path:
    target = folder / f"step_{step}"
    with atomic_directory(target) as out:
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, out / "optimizer.pt")
        (out / "state.json").write_text(json.dumps({"step": step, "sampler": batches.state_dict(), "progress": progress}))
    older = sorted((int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT.match(p.name)))
    for _, path in older[:-keep]:
        shutil.rmtree(path)
    return target


def load_checkpoint(path: Path, model, optimizer, scheduler, batches: MixedBatches) -> tuple[int, dict]:
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    states = torch.load(path / "optimizer.pt", weights_only=True)
    optimizer.load_state_dict(states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    state = json.loads((path / "state.json").read_text())
    batches.load_state_dict(state["sampler"])
    return state["step"], state["progress"]


def train(
    model,
    examples: dict[str, list[tuple[list[int], list[int]]]],
    batches: MixedBatches,
    settings: LoopSettings,
    checkpoints: Path,
    pad_id: int,
    on_step: Callable[[int, dict], None] = lambda step, metrics: None,
    stop_after: int | None = None,
) -> dict:
    """Train until `settings.steps` (resuming from the newest checkpoint in `checkpoints`); `stop_after`
    ends early (tests of resume). Returns the progress: per-task loss at start and end, tokens, seconds.

    Under `accelerate launch` with N processes every process draws the same batch (same sampler
    state) and trains on its 1/N slice; DDP averages the gradients. bf16 autocast on a GPU."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="bf16" if torch.cuda.is_available() else "no")
    torch.manual_seed(settings.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay, betas=(0.9, 0.95))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(settings))
    step, progress = 0, {"loss_start": {}, "loss_end": {}, "tokens": 0, "seconds": 0.0}
    resume = latest_checkpoint(checkpoints)
    if resume is not None:
        step, progress = load_checkpoint(resume, model, optimizer, scheduler, batches)
        log.info("resuming from %s (step %d of %d)", resume, step, settings.steps)
    wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    rank, world = accelerator.process_index, accelerator.num_processes
    wrapped.train()
    while step < settings.steps and (stop_after is None or step < stop_after):
        started = time.time()
        chosen = batches.next_batch()
        mine = chosen[rank::world] or chosen[:1]  # a batch smaller than the world: ranks share its first example
        batch = {k: v.to(accelerator.device) for k, v in collate([examples[task][index] for task, index in mine], pad_id).items()}
        out = wrapped(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_routing_stats=True)
        sums, counts = row_losses(out.logits, batch["labels"])
        reported = sums.detach()
        loss = sums.sum() / counts.sum().clamp(min=1)
        if out.aux_loss is not None and model.config.aux_loss_alpha > 0:
            loss = loss + model.config.aux_loss_alpha * out.aux_loss
        optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        grad_norm = accelerator.clip_grad_norm_(wrapped.parameters(), settings.grad_clip)
        optimizer.step()
        scheduler.step()
        step += 1
        seconds = time.time() - started
        tokens = int(batch["attention_mask"].sum()) * world
        progress["tokens"] += tokens
        progress["seconds"] += seconds
        metrics = {
            "loss": float(reported.sum() / counts.sum().clamp(min=1)),
            "lr": scheduler.get_last_lr()[0],
            "grad_norm": float(grad_norm),
        }
        metrics["tokens_per_second"] = tokens / max(seconds, 1e-9)
        for task in {task for task, _ in mine}:
            rows = torch.tensor([t == task for t, _ in mine], device=reported.device)
            value = float(reported[rows].sum() / counts[rows].sum().clamp(min=1))
            metrics[f"loss.{task}"] = value
            progress["loss_start"].setdefault(task, value)
            progress["loss_end"][task] = value
        if out.aux_losses:
            metrics.update({f"aux_loss.{name}": value.item() for name, value in out.aux_losses.items()})
        if out.expert_load is not None:
            metrics.update(load_metrics(out.expert_load, model.config))
            total = torch.tensor(progress["expert_load"]) if "expert_load" in progress else 0
            progress["expert_load"] = (total + out.expert_load.cpu()).tolist()  # [moe layer][text, audio][expert] token copies
        if accelerator.is_main_process:
            on_step(step, metrics)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            accelerator.wait_for_everyone()
            if accelerator.is_main_process:
                save_checkpoint(
                    checkpoints, step, accelerator.unwrap_model(wrapped), optimizer, scheduler, batches, progress, settings.keep_checkpoints
                )
            accelerator.wait_for_everyone()
    return progress


def load_metrics(load: torch.Tensor, config) -> dict[str, float]:
    """Per MoE layer and modality: the normalised entropy of the expert load over the experts the
    modality may use (1 = perfectly even)."""
    groups = {"text": config.text_expert_ids, "audio": config.audio_expert_ids}
    metrics = {}
    for layer, per_modality in enumerate(load):
        for modality, name in ((0, "text"), (1, "audio")):
            counts = per_modality[modality] if config.routing == "plain" else per_modality[modality][groups[name]]
            if float(counts.sum()) == 0:
                continue
            share = counts[counts > 0] / counts.sum()
            metrics[f"expert_entropy.{name}.layer{layer}"] = float(-(share * share.log()).sum() / math.log(max(2, counts.numel())))
    return metrics
