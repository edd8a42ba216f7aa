"""Whole-model forward+backward: MoST against transformers' own DeepseekV2ForCausalLM at the same shapes.

    python benchmarks/bench_model.py                               # CPU, DeepSeek-V2-Lite scaled by 1/4, 2 layers
    python benchmarks/bench_model.py --device cuda --dtype bfloat16 --full-shapes --layers 6 --batch 8 --seq 2048

Both models hold the same weights (MoST's are transformers' state dict: the `index` graft) and see the
same tokens: each row is half text, half speech units, so MoST routes half the tokens in each expert
group. MoST runs as the training stages run it: official routing, `grouped` experts, balance loss and
routing statistics on. transformers' model runs its `grouped_mm` experts (plain routing: it has no
modality). Timed interleaved (round-robin) after a warm-up, median of the rounds. Reported per
implementation: tokens/s, the memory one step needs beyond the weights (GPU: peak allocated; CPU:
peak resident set), host syncs per step (torch.profiler: `aten::nonzero`, `aten::_local_scalar_dense`,
and on a GPU `cudaStreamSynchronize`) and, on a GPU, MFU against the card's dense bf16 peak.
Writes benchmarks/results/model.json (or --output). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import torch
from bench_moe import PEAK_BF16
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM

from most.model import MoSTForCausalLM
from most.model.configuration import deepseek_v2_lite_shapes
from most.model.graft import most_config

UNITS = 1024  # speech-unit ids at the top of the vocabulary
SYNC_OPS = ("aten::nonzero", "aten::_local_scalar_dense", "cudaStreamSynchronize")


def build(full: bool, layers: int) -> tuple[DeepseekV2ForCausalLM, MoSTForCausalLM]:
    base_config = DeepseekV2Config(**deepseek_v2_lite_shapes(layers, scale=1 if full else 4))
    base_config._experts_implementation = "grouped_mm"
    base = DeepseekV2ForCausalLM(base_config)
    vocab = base_config.vocab_size
    token_layout = {
        "audio_token_start": vocab - UNITS,
        "audio_token_count": UNITS,
        "audio_marker_ids": [],
        "special_tokens": {},
        "speech_frame_id": None,
    }
    settings = {
        "routing": "official",
        "expert_backend": "grouped",
        "aux_loss_alpha": 0.001,
        "aux_loss_scope": "group",
        "speech_input": "units",
    }
    config = most_config(base_config, settings, token_layout, vocab, base_config.n_routed_experts)
    most = MoSTForCausalLM(config)
    most.load_state_dict(base.state_dict())  # same names, same shapes: the `index` graft without new rows
    return base, most


def flops_per_token(config, seq: int) -> float:
    """Forward+backward FLOPs per token: 6 x the matrix parameters a token uses (attention projections,
    dense or shared+k routed experts, the LM head; embeddings are lookups), plus causal attention's
    score and value products, 3 x seq x (qk head dim + v head dim) per head and layer."""
    hidden, heads = config.hidden_size, config.num_attention_heads
    qk = config.qk_nope_head_dim + config.qk_rope_head_dim
    attention = (
        hidden * heads * qk  # q_proj (no q LoRA at Lite shapes)
        + hidden * (config.kv_lora_rank + config.qk_rope_head_dim)
        + config.kv_lora_rank * heads * (config.qk_nope_head_dim + config.v_head_dim)
        + heads * config.v_head_dim * hidden
    )
    dense = 3 * hidden * config.intermediate_size
    moe = 3 * hidden * config.moe_intermediate_size * (config.num_experts_per_tok + config.n_shared_experts)
    layers, dense_layers = config.num_hidden_layers, config.first_k_dense_replace
    matrices = layers * attention + dense_layers * dense + (layers - dense_layers) * moe + hidden * config.vocab_size
    scores = 3 * seq * (qk + config.v_head_dim) * heads * layers
    return 6 * matrices + scores


def batch_of(vocab: int, batch: int, seq: int, device) -> dict:
    """Rows of text ids then unit ids, half each."""
    generator = torch.Generator().manual_seed(0)
    text = torch.randint(3, vocab - UNITS, (batch, seq // 2), generator=generator)
    units = torch.randint(vocab - UNITS, vocab, (batch, seq - seq // 2), generator=generator)
    ids = torch.cat([text, units], dim=1).to(device)
    return {"input_ids": ids, "labels": ids}


def resident_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


class Step:
    """One fwd+bwd of one model, with its memory measured."""

    def __init__(self, model, batch: dict, device: torch.device, routing_stats: bool) -> None:
        self.model, self.batch, self.device = model, batch, device
        self.extra = {"output_routing_stats": True} if routing_stats else {}

    def __call__(self) -> tuple[float, float]:
        """Seconds, and the memory the step needed beyond what was allocated before it (GiB)."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            before = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            before = resident_kib("VmRSS") * 1024
            Path("/proc/self/clear_refs").write_text("5")  # resets the peak resident set (VmHWM) to now
        started = time.perf_counter()
        self.model(**self.batch, **self.extra).loss.backward()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        peak = torch.cuda.max_memory_allocated() if self.device.type == "cuda" else resident_kib("VmHWM") * 1024
        self.model.zero_grad(set_to_none=True)
        return seconds, (peak - before) / 2**30


def sync_counts(step: Step) -> dict[str, int]:
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if step.device.type == "cuda" else [])
    with profile(activities=activities) as profiler:
        step()
    counted = Counter(event.name for event in profiler.events())
    return {name: counted[name] for name in SYNC_OPS if step.device.type == "cuda" or name.startswith("aten")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--full-shapes", action="store_true", help="DeepSeek-V2-Lite widths (else every width / 4)")
    parser.add_argument("--layers", type=int, default=2, help="decoder layers (the first is dense, as in DeepSeek-V2-Lite)")
    parser.add_argument("--batch", type=int, default=4, help="rows per step")
    parser.add_argument("--seq", type=int, default=512, help="tokens per row")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time MoST with each decoder layer under torch.compile")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "model.json"))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    base, most = build(args.full_shapes, args.layers)
    base.to(device=device, dtype=dtype).train()
    most.to(device=device, dtype=dtype).train()
    batch = batch_of(base.config.vocab_size, args.batch, args.seq, device)
    steps = {"most": Step(most, batch, device, True), "transformers_grouped_mm": Step(base, batch, device, False)}
    if args.compile:
        import copy

        compiled = copy.deepcopy(most)
        for layer in compiled.model.layers:
            layer.compile()
        steps["most_compiled"] = Step(compiled, batch, device, True)
    with torch.no_grad():  # the same function: the graft's parity, here at the benchmark's shapes and dtype
        theirs, ours = base(**batch).loss, most(**batch).loss  # most: official routing, half the tokens audio
        print(f"  loss: transformers {float(theirs):.4f}, MoST {float(ours):.4f}")
    for step in steps.values():  # warm-up (and compilation)
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    memory: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, step in steps.items():
            seconds, needed = step()
            times[name].append(seconds)
            memory[name] = max(memory.get(name, 0.0), needed)
    tokens = args.batch * args.seq
    seconds = {name: statistics.median(values) for name, values in times.items()}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    flops = flops_per_token(most.config, args.seq)
    peak = next((value for key, value in PEAK_BF16.items() if key in device_name), None) if device.type == "cuda" else None
    result = {
        "device": device_name,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "layers": args.layers,
        "full_shapes": args.full_shapes,
        "batch": args.batch,
        "seq": args.seq,
        "rounds": args.rounds,
        "flops_per_token": flops,
        "tokens_per_second": {name: round(tokens / value, 1) for name, value in seconds.items()},
        "step_memory_gib": {name: round(value, 3) for name, value in memory.items()},
        "host_syncs_per_step": {name: sync_counts(step) for name, step in steps.items()},
        "speedup_vs_transformers": {
            name: round(seconds["transformers_grouped_mm"] / value, 3) for name, value in seconds.items() if name.startswith("most")
        },
    }
    if peak:
        result["mfu"] = {name: round(flops * tokens / value / peak, 4) for name, value in seconds.items()}
        result["peak_flops"] = peak
    print(json.dumps(result, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
