"""The training loop (accelerate): mixed-task batches, AdamW with warmup + cosine decay, gradient
accumulation and clipping, optional freezing by parameter group, per-task losses, dev losses at
intervals, checkpoints written atomically every N steps and resumed from automatically.

A checkpoint `step_<n>/` holds the model weights (safetensors), the optimizer, scheduler and torch RNG
states (`torch.save`, read back with `weights_only=True`; one optimizer file per rank when FSDP or
DeepSpeed shard it), and the sampler and progress state (JSON). It is written to a temporary folder and
renamed, so a folder named `step_<n>` is always complete.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from most.io import atomic_directory, partial_directory
from most.model.sequences import IGNORE, collate, model_inputs, row_losses
from most.train.freezing import Trainable, select_trainable
from most.train.mixing import MixedBatches

log = logging.getLogger(__name__)
CHECKPOINT = re.compile(r"^step_(\d+)$")
Examples = dict[str, list[tuple]]  # task -> (input ids, labels[, speech frames]) per example


@dataclass
class LoopSettings:
    steps: int
    tokens_per_batch: int  # per micro-batch; a step sees gradient_accumulation of them
    learning_rate: float
    warmup_steps: int
    weight_decay: float
    grad_clip: float
    checkpoint_every: int
    keep_checkpoints: int
    seed: int
    gradient_accumulation: int = 1
    trainable: tuple[str, ...] = ("all",)
    eval_every: int = 0  # dev losses every N steps (and at the start and end); 0: start and end only
    # task -> weight of that task's mean token loss (the mix ratios); None: one mean over all response tokens
    task_weights: dict[str, float] | None = None
    gradient_checkpointing: bool = False  # recompute each decoder layer's activations in the backward pass
    compile_layers: bool = False  # torch.compile each decoder layer (one graph for all MoE layers)


def token_scales(task_tokens: dict[str, int], task_weights: dict[str, float] | None) -> dict[str, float]:
    """What one response token's loss is multiplied by, per task, so that the step's loss is
    sum over its tasks of weight x (that task's mean token loss), the weights renormalised over the
    tasks present in the step; without weights, 1 / (all response tokens): one token mean. The
    counts cover the whole step (every micro-batch, every rank), so the normalisation is exact
    under gradient accumulation and DDP."""
    present = {task: count for task, count in task_tokens.items() if count}
    if task_weights is None:
        total = sum(present.values())
        return {task: 1 / total for task in present}
    missing = sorted(set(present) - set(task_weights))
    if missing:
        raise ValueError(f"loss weighting: no weight for task(s) {missing}")
    norm = sum(task_weights[task] for task in present)
    return {task: task_weights[task] / norm / count for task, count in present.items()}


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


def checkpoint_step(checkpoint: Path | None) -> int:
    """The step a checkpoint folder was written at (0: no checkpoint, a fresh start)."""
    return int(CHECKPOINT.match(checkpoint.name).group(1)) if checkpoint is not None else 0


def _sharded(accelerator) -> bool:
    return accelerator.distributed_type.name in ("FSDP", "DEEPSPEED")


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (a full disk, a quota); the complete ones before it are untouched."""


def save_checkpoint(folder: Path, step: int, accelerator, wrapped, optimizer, scheduler, batches: MixedBatches, progress: dict, keep: int):
    """Every rank calls this (gathering a sharded model and writing optimizer shards needs them all)."""
    weights = accelerator.get_state_dict(wrapped)
    main, target = accelerator.is_main_process, folder / f"step_{step}"
    try:
        _write_checkpoint(target, main, step, accelerator, weights, optimizer, scheduler, batches, progress)
    except Exception as error:  # torch.save and safetensors report a full disk as RuntimeError/SafetensorError, not OSError
        previous = latest_checkpoint(folder)
        kept = f"the newest complete checkpoint, {previous}, is intact" if previous else "there is no earlier checkpoint"
        free_mb = shutil.disk_usage(folder).free / 2**20
        raise CheckpointWriteError(
            f"could not write checkpoint {target} ({error}); {free_mb:.1f} MiB free there. Nothing partial is left and {kept}:"
            " free space and rerun, training resumes from it"
        ) from error
    if main:
        older = sorted((int(m.group(1)), p) for p in folder.glob("step_*") if (m := CHECKPOINT.match(p.name)))
        for _, path in older[:-keep]:
            shutil.rmtree(path)
    accelerator.wait_for_everyone()


def _write_checkpoint(target: Path, main: bool, step: int, accelerator, weights, optimizer, scheduler, batches, progress) -> None:
    with atomic_directory(target) if main else nullcontext(partial_directory(target)) as out:
        accelerator.wait_for_everyone()  # the temporary folder exists
        if _sharded(accelerator):
            torch.save(optimizer.state_dict(), out / f"optimizer.rank{accelerator.process_index}.pt")
        if main:
            save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(out / "model.safetensors"))
            optimizer_state = {} if _sharded(accelerator) else {"optimizer": optimizer.state_dict()}
            rng = {"torch_rng": torch.get_rng_state()} | ({"cuda_rng": torch.cuda.get_rng_state()} if torch.cuda.is_available() else {})
            torch.save({**optimizer_state, "scheduler": scheduler.state_dict(), **rng}, out / "optimizer.pt")
            (out / "state.json").write_text(json.dumps({"step": step, "sampler": batches.state_dict(), "progress": progress}))
        accelerator.wait_for_everyone()  # every shard written before the rename


def load_checkpoint(path: Path, accelerator, optimizer, scheduler, batches: MixedBatches) -> tuple[int, dict]:
    """The optimizer, scheduler and sampler state of `path` (the weights are loaded before `prepare`)."""
    states = torch.load(path / "optimizer.pt", weights_only=True, map_location="cpu")
    shard = path / f"optimizer.rank{accelerator.process_index}.pt"
    optimizer.load_state_dict(torch.load(shard, weights_only=True, map_location="cpu") if _sharded(accelerator) else states["optimizer"])
    scheduler.load_state_dict(states["scheduler"])
    torch.set_rng_state(states["torch_rng"])
    if "cuda_rng" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda_rng"])
    state = json.loads((path / "state.json").read_text())
    batches.load_state_dict(state["sampler"])
    return state["step"], state["progress"]


def make_optimizer(trainable: Trainable, settings: LoopSettings) -> torch.optim.Optimizer:
    groups = [{"params": trainable.whole, "weight_decay": settings.weight_decay}]
    if trainable.partial:  # decayed by the loop, on their trained rows only
        groups.append({"params": [p for p, _ in trainable.partial], "weight_decay": 0.0})
    return torch.optim.AdamW(groups, lr=settings.learning_rate, betas=(0.9, 0.95))


@torch.no_grad()
def dev_losses(wrapped, dev: Examples, pad_id: int, device, tokens_per_batch: int) -> dict[str, float]:
    """Mean next-token loss per task on fixed dev examples (every rank computes the same numbers)."""
    wrapped.eval()
    losses = {}
    for task, rows in dev.items():
        total, count = 0.0, 0
        size = max(1, tokens_per_batch // max(len(example[0]) for example in rows))
        for start in range(0, len(rows), size):
            batch = {k: v.to(device) for k, v in collate(rows[start : start + size], pad_id).items()}
            logits = wrapped(**model_inputs(batch)).logits
            sums, counts = row_losses(logits, batch["labels"])
            total, count = total + float(sums.sum()), count + int(counts.sum())
        losses[task] = total / max(count, 1)
    wrapped.train()
    return losses


def train(
    model,
    examples: Examples,
    batches: MixedBatches,
    settings: LoopSettings,
    checkpoints: Path,
    pad_id: int,
    on_step: Callable[[int, dict], None] = lambda step, metrics: None,
    stop_after: int | None = None,
    dev: Examples | None = None,
) -> dict:
    """Train until `settings.steps` (resuming from the newest checkpoint in `checkpoints`); `stop_after`
    ends early (tests of resume). Returns the progress: per-task train loss at start and end, dev
    loss at start and end, tokens, seconds, accumulated expert load.

    Under `accelerate launch` with N processes every process draws the same batches (same sampler
    state) and trains on its 1/N slice of each; DDP averages the gradients. Mixed precision is the
    accelerate config's `mixed_precision` (config/accelerate/: bf16 on GPUs, none on the CPU)."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    torch.manual_seed(settings.seed)
    if settings.gradient_checkpointing:
        model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    if settings.compile_layers:
        for layer in model.model.layers:  # per layer, before FSDP wraps them (the torchtitan order)
            layer.compile()
    trainable = select_trainable(model, list(settings.trainable))
    if trainable.partial and _sharded(accelerator):
        raise ValueError("trainable: row groups (embeddings.*, experts.text/audio) need DDP or one process, not FSDP/DeepSpeed")
    if accelerator.distributed_type.name == "DEEPSPEED" and accelerator.state.deepspeed_plugin.zero_stage == 3:
        from deepspeed.utils import set_z3_leaf_modules  # experts are reached data-dependently: gather the whole block

        from most.model.moe import MoSTSparseMoeBlock

        set_z3_leaf_modules(model, [MoSTSparseMoeBlock])
    optimizer = make_optimizer(trainable, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(settings))
    step, progress = 0, {"loss_start": {}, "loss_end": {}, "tokens": 0, "seconds": 0.0}
    resume = latest_checkpoint(checkpoints)
    if resume is not None:
        model.load_state_dict(load_file(str(resume / "model.safetensors")))
    wrapped, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if resume is not None:
        step, progress = load_checkpoint(resume, accelerator, optimizer, scheduler, batches)
        log.info("resumed from step %d of %d (%s)", step, settings.steps, resume)
    rank, world = accelerator.process_index, accelerator.num_processes
    tasks = sorted(examples)
    evaluate = (lambda: dev_losses(wrapped, dev, pad_id, accelerator.device, settings.tokens_per_batch)) if dev else dict
    if step == 0:
        progress["dev_loss_start"] = evaluate()
    wrapped.train()
    while step < settings.steps and (stop_after is None or step < stop_after):
        started = time.time()
        chosen = [batches.next_batch() for _ in range(settings.gradient_accumulation)]
        # a batch smaller than the world: a rank without an example of its own runs the first one at
        # weight 0 (DDP needs every rank's backward), so no example counts twice
        mine = [batch[rank::world] or batch[:1] for batch in chosen]
        weight = [1.0 if batch[rank::world] else 0.0 for batch in chosen]
        micro = [{k: v.to(accelerator.device) for k, v in collate([examples[t][i] for t, i in part], pad_id).items()} for part in mine]
        # response tokens per task of the whole step (every rank sees the same batches)
        task_tokens = {task: 0 for task in tasks}
        for batch in chosen:
            for t, i in batch:
                task_tokens[t] += sum(label != IGNORE for label in examples[t][i][1][1:])
        scales = token_scales(task_tokens, settings.task_weights)
        per_task = torch.zeros(len(tasks), 2, device=accelerator.device)  # summed loss, response tokens
        aux, load, mass = None, None, None
        optimizer.zero_grad(set_to_none=True)
        for index, (batch, part) in enumerate(zip(micro, mine, strict=True)):
            last = index == len(micro) - 1
            with nullcontext() if last else accelerator.no_sync(wrapped):  # DDP all-reduces once per step
                out = wrapped(**model_inputs(batch), output_routing_stats=True)
                sums, counts = row_losses(out.logits, batch["labels"])
                row_scales = torch.tensor([scales.get(task, 0.0) * weight[index] for task, _ in part], device=sums.device)
                loss = (sums * row_scales).sum() * world  # DDP averages the ranks' gradients
                if out.aux_loss is not None and model.config.aux_loss_alpha > 0:
                    loss = loss + model.config.aux_loss_alpha * out.aux_loss / len(micro)
                accelerator.backward(loss)
            rows = torch.tensor([tasks.index(task) for task, _ in part], device=accelerator.device)
            per_task.index_add_(0, rows, torch.stack([sums.detach(), counts.to(sums.dtype)], dim=1) * weight[index])
            aux = out.aux_losses if aux is None else {k: aux[k] + v for k, v in out.aux_losses.items()}
            load = out.expert_load if load is None else load + out.expert_load
            mass = out.in_group_mass if mass is None else mass + out.in_group_mass
        trainable.mask_gradients()
        grad_norm = accelerator.clip_grad_norm_(wrapped.parameters(), settings.grad_clip)
        trainable.decay_partial(scheduler.get_last_lr()[0], settings.weight_decay)
        optimizer.step()
        scheduler.step()
        step += 1
        if world > 1:  # logged numbers cover every rank's slice
            per_task = accelerator.reduce(per_task, "sum")
            load = accelerator.reduce(load, "sum") if load is not None else None
            aux = {name: accelerator.reduce(value.detach(), "mean") for name, value in aux.items()} if aux else aux
            mass = accelerator.reduce(mass, "mean") if mass is not None else None
        seconds = time.time() - started
        tokens = int(sum(m["attention_mask"].sum() for m in micro)) * world
        progress["tokens"] += tokens
        progress["seconds"] += seconds
        metrics = step_metrics(dict(zip(tasks, per_task.tolist(), strict=True)), progress, model.config, aux, load, mass, len(micro))
        metrics |= {"lr": scheduler.get_last_lr()[0], "tokens_per_second": tokens / max(seconds, 1e-9)}
        if grad_norm is not None:  # DeepSpeed clips inside its engine and reports nothing here
            metrics["grad_norm"] = float(grad_norm)
        if dev and (step == settings.steps or (settings.eval_every and step % settings.eval_every == 0)):
            progress["dev_loss_end"] = evaluate()
            metrics |= {f"dev_loss.{task}": value for task, value in progress["dev_loss_end"].items()}
        if accelerator.is_main_process:
            on_step(step, metrics)
        if step % settings.checkpoint_every == 0 or step == settings.steps:
            save_checkpoint(checkpoints, step, accelerator, wrapped, optimizer, scheduler, batches, progress, settings.keep_checkpoints)
    return progress


def step_metrics(per_task: dict[str, list[float]], progress: dict, config, aux, load, mass, micro_batches: int) -> dict[str, float]:
    """Loss overall and per task (from summed losses and response tokens), auxiliary losses per group,
    expert-load entropy, the router's in-group mass per modality (mean over MoE layers); updates `progress`."""
    total, count = (sum(values) for values in zip(*per_task.values(), strict=True))
    metrics = {"loss": total / max(count, 1)}
    for task, (summed, tokens) in per_task.items():
        if tokens:  # tasks absent from this step log nothing
            metrics[f"loss.{task}"] = summed / tokens
            progress["loss_start"].setdefault(task, summed / tokens)
            progress["loss_end"][task] = summed / tokens
    if aux:
        metrics |= {f"aux_loss.{name}": value.item() / micro_batches for name, value in aux.items()}
    if mass is not None:
        shares = (mass.detach().float() / micro_batches).mean(0).tolist()
        metrics |= {"router_in_group_mass.text": shares[0], "router_in_group_mass.audio": shares[1]}
    if load is not None:
        metrics |= load_metrics(load, config)
        total_load = torch.tensor(progress["expert_load"]) if "expert_load" in progress else 0
        progress["expert_load"] = (total_load + load.cpu()).tolist()  # [moe layer][text, audio][expert] token copies
    return metrics


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
