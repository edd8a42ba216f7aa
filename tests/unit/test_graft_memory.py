"""The graft holds one model at a time: a DeepSeek-V2-Lite-shaped bf16 base (2 layers, full widths,
the full vocabulary) is grafted with a peak memory of at most 1.3x the model's size."""

import json
import subprocess
import sys

import pytest
import torch

LAYERS = 2

MAKE_BASE = """
import sys, torch
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM
from most.model.configuration import deepseek_v2_lite_shapes
from most.model.base_lm import train_tokenizer
from tests.unit.test_graft import TEXTS

folder, layers = sys.argv[1], int(sys.argv[2])
config = DeepseekV2Config(**deepseek_v2_lite_shapes(layers))
model = DeepseekV2ForCausalLM(config)  # transformers' initialisation, in float32, then stored in bf16 as the hub's
with torch.no_grad():  # routers start at zero in transformers; random rows make routing decisive
    for name, parameter in model.named_parameters():
        if name.endswith("gate.weight"):
            parameter.normal_(0, 1.0)
model = model.to(torch.bfloat16)
model.save_pretrained(folder)
tokenizer = train_tokenizer(TEXTS, 300)  # filled up to DeepSeek-V2-Lite's size: ~100k base rows, ~1k new ones
tokenizer.add_tokens([f"<|filler{i}|>" for i in range(101000 - len(tokenizer))])
tokenizer.save_pretrained(folder)
"""

GRAFT = """
import gc, json, sys
from pathlib import Path
import torch
from most.model.graft import graft_stage
from tests.unit.test_graft import SETTINGS, TEXTS

def kib(field):
    return int(next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field + ":")).split()[1])

folder, out = sys.argv[1], Path(sys.argv[2])
torch.set_num_threads(2)
gc.collect()
before = kib("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # the peak (VmHWM) starts from here
report = graft_stage(folder, "", {**SETTINGS, "calibration_texts": TEXTS[:4]}, 256, 0, None, TEXTS[:4], out)
print(json.dumps({"peak_bytes": (kib("VmHWM") - before) * 1024, "report": report}))
"""


@pytest.mark.slow  # ~95 s: a 2 GB base made, grafted and read back
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory read from /proc/self (Linux)")
def test_grafting_a_deepseek_v2_lite_shaped_base_needs_about_one_model_of_memory(tmp_path):
    from most.model.checkpoint_files import CheckpointFiles

    base = tmp_path / "base"
    subprocess.run([sys.executable, "-c", MAKE_BASE, str(base), str(LAYERS)], check=True, capture_output=True)
    files = CheckpointFiles(base)
    model_bytes = sum(torch.Size(files.shape(name)).numel() * files.dtype(name).itemsize for name in files.names())
    done = subprocess.run([sys.executable, "-c", GRAFT, str(base), str(tmp_path / "graft")], check=True, capture_output=True, text=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    report = measured["report"]
    # a full-size graft: every base weight, bf16 (routers float32), and the parity check passed in bf16
    assert report["vocab_size"] == 102400 and report["plain_matches_base"], {
        k: report[k] for k in ("plain_max_logit_difference", "base_max_abs_logit")
    } | {"peak": measured["peak_bytes"] / model_bytes}
    graft_files = CheckpointFiles(tmp_path / "graft" / "model")
    assert graft_files.dtype("model.embed_tokens.weight").itemsize == 2
    assert {graft_files.dtype(name).itemsize for name in graft_files.names() if name.endswith("mlp.gate.weight")} == {4}
    assert model_bytes > 2 * 10**9  # DeepSeek-V2-Lite widths: ~1.1B parameters at 2 layers
    assert measured["peak_bytes"] <= 1.3 * model_bytes, (measured["peak_bytes"] / model_bytes, model_bytes)
