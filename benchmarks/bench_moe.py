"""MoE layer forward+backward throughput: our MAMoE backends against the public code and transformers.

    python benchmarks/bench_moe.py                      # CPU, DeepSeek-V2-Lite expert shapes scaled to hidden 512
    python benchmarks/bench_moe.py --device cuda --dtype bfloat16 --full-shapes --tokens 16384

Implementations, same weights, same tokens, timed interleaved (round-robin) after a warm-up:
  (a) ours, `grouped` backend  (token sort + F.grouped_mm, no host syncs)
  (b) ours, `reference` backend (per-expert loop)
  (c) the public MoST code's training path, re-implemented faithfully: every token copied top-k
      times, a loop over all experts with a boolean mask and an `.any()` check each
      (modeling_most.py:597-608 as read in ../shared/notes/reference-audit.md section 1.2)
  (d) transformers' own `DeepseekV2Moe`, experts `grouped_mm` and `eager` (plain routing: it has no modality)
  (e) the GEMM floor: only the layer's matrix products and its activation, eager (routed rows
      pre-sorted by expert outside the timing, shared experts), no routing, gather or sum. No eager
      implementation on these `grouped_mm` kernels can be faster; a compiled one can also fuse the
      activation.
With --compile, (a) and (d grouped_mm) are also timed under torch.compile (training's `compile_layers`
compiles the decoder layer that holds this block). --profile prints the device kernels of one step of
(a) and (d grouped_mm) by time.
Prints tokens/s and ratios and writes benchmarks/results/moe.json. Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from most.model import MoSTConfig
from most.model.configuration import deepseek_v2_lite_shapes
from most.model.moe import MoSTSparseMoeBlock, grouped_matmul, sort_by_expert

# peak dense bf16 tensor FLOP/s for MFU, by device name fragment
PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}


def configs(full: bool, backend: str, routing: str = "official"):
    shape = deepseek_v2_lite_shapes(2, scale=1 if full else 4)  # DeepSeek-V2-Lite, or every width / 4
    return MoSTConfig(**shape, routing=routing, expert_backend=backend), shape


class PublicCodeMoE(nn.Module):
    """The public MoST MoE training path: official MAMoE gate, per-expert nn.Modules, masked loop."""

    def __init__(self, block: MoSTSparseMoeBlock, config: MoSTConfig) -> None:
        super().__init__()
        self.gate_weight = nn.Parameter(block.gate.weight.detach().clone())
        self.text = torch.tensor(config.text_expert_ids)
        self.audio = torch.tensor(config.audio_expert_ids)
        self.top_k = config.num_experts_per_tok
        width = config.moe_intermediate_size
        self.experts = nn.ModuleList()
        for e in range(config.n_routed_experts):
            expert = nn.ModuleDict(
                {
                    "gate_proj": nn.Linear(config.hidden_size, width, bias=False),
                    "up_proj": nn.Linear(config.hidden_size, width, bias=False),
                    "down_proj": nn.Linear(width, config.hidden_size, bias=False),
                }
            )
            with torch.no_grad():
                expert["gate_proj"].weight.copy_(block.experts.gate_up_proj[e, :width])
                expert["up_proj"].weight.copy_(block.experts.gate_up_proj[e, width:])
                expert["down_proj"].weight.copy_(block.experts.down_proj[e])
            self.experts.append(expert)
        self.shared = block.shared_experts

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor) -> torch.Tensor:
        shape = hidden.shape
        x = hidden.reshape(-1, shape[-1])
        flat_modality = modality.reshape(-1)
        probs = torch.nn.functional.linear(x.float(), self.gate_weight.float()).softmax(-1)
        masked = torch.zeros_like(probs)
        text_rows, audio_rows = flat_modality == 0, flat_modality == 1
        masked[text_rows.nonzero(), self.text.to(x.device)] = probs[text_rows.nonzero(), self.text.to(x.device)]
        masked[audio_rows.nonzero(), self.audio.to(x.device)] = probs[audio_rows.nonzero(), self.audio.to(x.device)]
        weights, indices = torch.topk(masked, self.top_k, dim=-1, sorted=False)
        copies = x.repeat_interleave(self.top_k, dim=0)
        flat = indices.view(-1)
        y = torch.empty_like(copies)
        for e, expert in enumerate(self.experts):
            mask = flat == e
            if mask.any():  # a host sync per expert, as in the public code
                chosen = copies[mask]
                y[mask] = expert["down_proj"](nn.functional.silu(expert["gate_proj"](chosen)) * expert["up_proj"](chosen)).to(y.dtype)
        y = (y.view(-1, self.top_k, shape[-1]) * weights.unsqueeze(-1).to(y.dtype)).sum(1)
        return (y + self.shared(x)).reshape(shape)


class GemmFloor(nn.Module):
    """The block's matrix products alone: routed rows arrive sorted by expert (`sorted_rows`, gathered
    once outside the timing), shared experts see every token; the same kernels (a) runs."""

    def __init__(self, block: MoSTSparseMoeBlock, hidden: torch.Tensor, modality: torch.Tensor, mask: torch.Tensor) -> None:
        super().__init__()
        self.block = block
        with torch.no_grad():
            flat = hidden.reshape(-1, hidden.shape[-1])
            indices = block.gate(flat, modality.reshape(-1), mask.reshape(-1)).indices
            order, self.row_expert, self.offsets = sort_by_expert(indices, block.experts.num_experts)
            self.sorted_rows = flat.index_select(0, order // indices.shape[1])

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        experts = self.block.experts
        rows = self.sorted_rows.detach().requires_grad_()
        gate, up = grouped_matmul(rows, experts.gate_up_proj.transpose(1, 2), self.offsets, self.row_expert).chunk(2, dim=-1)
        routed = grouped_matmul(experts.act_fn(gate) * up, experts.down_proj.transpose(1, 2), self.offsets, self.row_expert)
        return routed, self.block.shared_experts(hidden)


def transformers_moe(block: MoSTSparseMoeBlock, shape: dict, implementation: str):
    from transformers import DeepseekV2Config
    from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2Moe

    config = DeepseekV2Config(**shape)
    config._experts_implementation = implementation
    moe = DeepseekV2Moe(config)
    with torch.no_grad():
        moe.gate.weight.copy_(block.gate.weight)
        moe.experts.gate_up_proj.copy_(block.experts.gate_up_proj)
        moe.experts.down_proj.copy_(block.experts.down_proj)
        moe.shared_experts.load_state_dict(block.shared_experts.state_dict())
    return moe


def print_kernels(step, names: list[str], device: torch.device) -> None:
    """The operators (CPU) or device kernels (GPU) of one step of each implementation, by total time."""
    from torch.profiler import ProfilerActivity, profile

    on_gpu = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_gpu else [])
    for name in names:
        with profile(activities=activities) as profiler:
            step(name)
        print(f"--- {name}")
        sort_by = "self_cuda_time_total" if on_gpu else "self_cpu_time_total"
        print(profiler.key_averages().table(sort_by=sort_by, row_limit=18, max_name_column_width=70))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--full-shapes", action="store_true", help="DeepSeek-V2-Lite expert shapes (hidden 2048, width 1408)")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time (a) and (d grouped_mm) under torch.compile")
    parser.add_argument("--profile", action="store_true", help="print the kernels of one step of (a) and (d grouped_mm)")
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "moe.json"))
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    grouped_config, shape = configs(args.full_shapes, "grouped")
    block = MoSTSparseMoeBlock(grouped_config)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_(0, 0.02)
    reference = MoSTSparseMoeBlock(configs(args.full_shapes, "reference")[0])
    reference.load_state_dict(block.state_dict())
    hidden = torch.randn(1, args.tokens, shape["hidden_size"], device=device, dtype=dtype)
    modality = torch.randint(0, 2, (1, args.tokens), device=device)
    upstream = torch.randn_like(hidden)
    mask = torch.ones_like(modality, dtype=torch.bool)
    public = PublicCodeMoE(block, grouped_config)
    theirs = transformers_moe(block, shape, "grouped_mm")
    theirs_eager = transformers_moe(block, shape, "eager")
    for module in (block, reference, public, theirs, theirs_eager):
        module.to(device=device, dtype=dtype)
    floor = GemmFloor(block, hidden, modality, mask)
    # name -> (the module whose gradients a step fills, its forward on the input); outputs are summed
    # against one fixed upstream gradient, so every step runs the full backward
    implementations = {
        "a_ours_grouped": (block, lambda x: block(x, modality, mask)[0]),
        "b_ours_reference": (reference, lambda x: reference(x, modality, mask)[0]),
        "c_public_code": (public, lambda x: public(x, modality)),
        "d_transformers_grouped_mm": (theirs, theirs),
        "d_transformers_eager": (theirs_eager, theirs_eager),
        "e_gemm_floor": (floor, floor),
    }
    if args.compile:
        implementations["a_ours_grouped_compiled"] = (block, torch.compile(implementations["a_ours_grouped"][1]))
        implementations["d_transformers_grouped_mm_compiled"] = (theirs, torch.compile(theirs))
    routed_upstream = torch.randn_like(floor.sorted_rows)

    def step(name: str) -> float:
        module, forward = implementations[name]
        x = hidden.detach().requires_grad_()
        synchronize()
        started = time.perf_counter()
        out = forward(x)
        if name == "e_gemm_floor":
            routed, shared = out
            loss = (routed * routed_upstream).sum() + (shared * upstream).sum()
        else:
            loss = (out * upstream).sum()
        loss.backward()
        synchronize()
        module.zero_grad(set_to_none=True)
        return time.perf_counter() - started

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize()

    with torch.no_grad():  # same function: (a), (b) and (c) compute the official MAMoE layer
        a = block(hidden, modality, mask)[0]
        for name in ("b_ours_reference", "c_public_code") + (("a_ours_grouped_compiled",) if args.compile else ()):
            other = implementations[name][1](hidden)
            difference = float((other.float() - a.float()).abs().max())
            tolerance = 1e-3 if dtype == torch.float32 else 5e-2
            if difference > tolerance:
                raise SystemExit(f"{name} differs from ours by {difference}")
    for name in implementations:  # warm-up (and compilation)
        step(name)
    if args.profile:
        print_kernels(step, ["a_ours_grouped", "d_transformers_grouped_mm"], device)
    times: dict[str, list[float]] = {name: [] for name in implementations}
    for _ in range(args.rounds):
        for name in implementations:
            times[name].append(step(name))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    tokens_per_second = {name: args.tokens / value for name, value in seconds.items()}
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "tokens": args.tokens,
        "rounds": args.rounds,
        "shapes": {
            k: shape[k] for k in ("hidden_size", "moe_intermediate_size", "n_routed_experts", "num_experts_per_tok", "n_shared_experts")
        },
        "tokens_per_second": {k: round(v, 1) for k, v in tokens_per_second.items()},
        "speedup_vs_reference_code": seconds["c_public_code"] / seconds["a_ours_grouped"],
        "speedup_vs_transformers_grouped_mm": seconds["d_transformers_grouped_mm"] / seconds["a_ours_grouped"],
        "speedup_vs_transformers_eager": seconds["d_transformers_eager"] / seconds["a_ours_grouped"],
        "speedup_vs_our_reference_backend": seconds["b_ours_reference"] / seconds["a_ours_grouped"],
        # the most any implementation on these kernels could gain over transformers' grouped_mm
        "floor_speedup_vs_transformers_grouped_mm": seconds["d_transformers_grouped_mm"] / seconds["e_gemm_floor"],
    }
    if args.compile:
        compiled = seconds["a_ours_grouped_compiled"]
        result["speedup_compiled_vs_transformers_grouped_mm"] = seconds["d_transformers_grouped_mm"] / compiled
        result["speedup_compiled_vs_transformers_grouped_mm_compiled"] = seconds["d_transformers_grouped_mm_compiled"] / compiled
    if device.type == "cuda":
        # forward+backward = 3x the forward FLOPs; per token: k routed + shared experts, 3 matrices each
        experts = shape["num_experts_per_tok"] + shape["n_shared_experts"]
        flops = 3 * 2 * 3 * shape["hidden_size"] * shape["moe_intermediate_size"] * experts * args.tokens
        peak = next((v for k, v in PEAK_BF16.items() if k in result["device"]), None)
        if peak:
            for name in ("a_ours_grouped", "a_ours_grouped_compiled", "d_transformers_grouped_mm", "e_gemm_floor"):
                if name in seconds:
                    result[f"mfu_{name[2:]}"] = flops / seconds[name] / peak
    for name, value in tokens_per_second.items():
        print(f"  {name:36s} {value:12.0f} tokens/s")
    for key in (k for k in result if k.startswith(("speedup", "mfu"))):
        print(f"  {key}: {result[key]:.2f}")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
