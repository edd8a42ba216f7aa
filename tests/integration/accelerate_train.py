"""Launched by test_accelerate.py under `accelerate launch --cpu --num_processes 2`: a short training run."""

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from most.train.loop import train
from tests.unit.test_train_loop import SETTINGS, fresh

out = Path(sys.argv[1])
model, data, batches = fresh(out)
logged = []
progress = train(
    model, data, batches, SETTINGS, out / "checkpoints", pad_id=0, on_step=lambda s, m: logged.append(m["loss"]), stop_after=10
)
# every rank must hold the same weights after DDP's averaged updates
checksum = torch.tensor([float(sum(p.double().sum() for p in model.parameters()))])
gathered = [torch.zeros(1) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, checksum)
if dist.get_rank() == 0:
    (out / "result.json").write_text(
        json.dumps({"world": dist.get_world_size(), "checksums": [float(g) for g in gathered], "steps_logged": len(logged), "loss": logged})
    )
