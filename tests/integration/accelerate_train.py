"""Launched by test_accelerate.py, under `accelerate launch` with 2 CPU processes or alone.

`ranks OUT`: 10 steps, then every rank's weight checksum; `one-step OUT`: a single step without the
balance loss (nonlinear in the batch), leaving the checkpoint whose Adam moments the test compares."""

import json
import sys
from pathlib import Path

import torch

from most.model import MoSTForCausalLM
from most.train.loop import LoopSettings, train
from tests.unit.test_model import tiny_config
from tests.unit.test_train_loop import SETTINGS, fresh

mode, out = sys.argv[1], Path(sys.argv[2])
model, data, batches = fresh(out)
if mode == "one-step":
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config(aux_loss_alpha=0.0))
    # task-weighted loss: the per-task token counts cover every rank's slice, so DDP stays exact
    settings = LoopSettings(**{**SETTINGS.__dict__, "steps": 1, "warmup_steps": 0, "task_weights": {"asr": 0.7, "text_lm": 0.3}})
    train(model, data, batches, settings, out / "checkpoints", pad_id=0)
    sys.exit(0)

import torch.distributed as dist  # noqa: E402  (only the `ranks` mode runs distributed)

logged = []
train(model, data, batches, SETTINGS, out / "checkpoints", pad_id=0, on_step=lambda s, m: logged.append(m["loss"]), stop_after=10)
# every rank must hold the same weights after DDP's averaged updates
checksum = torch.tensor([float(sum(p.double().sum() for p in model.parameters()))])
gathered = [torch.zeros(1) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, checksum)
if dist.get_rank() == 0:
    (out / "result.json").write_text(
        json.dumps({"world": dist.get_world_size(), "checksums": [float(g) for g in gathered], "steps_logged": len(logged), "loss": logged})
    )
