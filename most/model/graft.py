"""Grafting: a pretrained MoE text LM becomes a MoST model.

The base (`DeepseekV2ForCausalLM` or `Qwen2MoeForCausalLM`, a folder or a hub id, safetensors in its
own dtype) gives every weight; the routed experts are assigned to the text and audio groups by
`model.expert_assignment`:
- `index`: experts 0..E/2-1 text, the rest audio (the paper);
- `usage`: per layer, the E/2 experts text tokens of a calibration set use most stay text;
- `duplicate`: the text group is all E original experts, the audio group their copies (2E experts).
Unit tokens and markers are appended to the tokenizer (`most.model.layout`). The report checks the
graft: with `plain` routing the text logits equal the base model's (every assignment), and with the
configured routing the held-out text perplexity sits beside the base model's. One model is held at
a time: the graft is written tensor by tensor from the base's files (`write_graft`), so a 16B base
needs about its own size in memory, not four times it.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from most.model import layout
from most.model.base_lm import encode, perplexity
from most.model.checkpoint_files import CheckpointFiles, load_lean, materialize, write_checkpoint
from most.model.configuration import MoSTConfig
from most.model.modeling import MoSTForCausalLM
from most.model.moe import MoSTRouter
from most.model.sequences import collate

log = logging.getLogger(__name__)

ASSIGNMENTS = ("index", "usage", "duplicate")
MAX_SHARD_BYTES = 5 * 2**30  # safetensors shards of the written graft


def base_folder(source: str, revision: str) -> Path:
    """The base checkpoint's folder: `source` itself, or the hub snapshot of `source` at `revision`."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, revision=revision or None, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt"]))
    except Exception as error:  # the hub client raises several types for "offline and not cached"
        raise ValueError(f"model.base: cannot load {source!r} (a hub id needs the network or a filled cache): {error}") from error


def load_base(source: str, revision: str):
    """The base model in its own dtype (bf16 for DeepSeek-V2-Lite), read without a transient second
    copy (`checkpoint_files.load_lean`), and its tokenizer."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder = base_folder(source, revision)
    config = AutoConfig.from_pretrained(folder)
    if config.model_type not in ("deepseek_v2", "qwen2_moe"):
        raise ValueError(f"model.base: {source} is a {config.model_type} model; graft supports deepseek_v2 and qwen2_moe")
    model = load_lean(lambda: AutoModelForCausalLM.from_config(config), folder, base_reader(CheckpointFiles(folder)))
    return model, AutoTokenizer.from_pretrained(folder)


def most_config(base_config, settings: dict, token_layout: dict, vocab_size: int, experts: int, feature_dim: int = 0) -> MoSTConfig:
    """MoSTConfig with the base's architecture, the expert split and the token layout."""
    base = base_config.to_dict()
    common = {
        key: base[key]
        for key in (
            "hidden_size",
            "intermediate_size",
            "moe_intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "hidden_act",
            "max_position_embeddings",
            "initializer_range",
            "rms_norm_eps",
            "rope_parameters",
            "attention_dropout",
            "num_experts_per_tok",
            "norm_topk_prob",
            "bos_token_id",
            "eos_token_id",
            "pad_token_id",
            "tie_word_embeddings",
        )
        if key in base
    }
    if base_config.model_type == "deepseek_v2":
        for key in (
            "kv_lora_rank",
            "q_lora_rank",
            "qk_nope_head_dim",
            "qk_rope_head_dim",
            "v_head_dim",
            "n_shared_experts",
            "first_k_dense_replace",
            "routed_scaling_factor",
            "attention_bias",
        ):
            common[key] = base[key]
        if base["topk_method"] != "greedy":
            raise ValueError(f"model.base: topk_method {base['topk_method']!r} is not supported (greedy only)")
    else:
        if base.get("mlp_only_layers") or base.get("decoder_sparse_step", 1) != 1 or base.get("use_sliding_window"):
            raise ValueError("model.base: Qwen2-MoE bases with dense or sliding-window layers are not supported")
        common |= {
            "base_model_type": "qwen2_moe",
            "first_k_dense_replace": 0,
            "shared_expert_intermediate_size": base["shared_expert_intermediate_size"],
            "shared_expert_gate": True,
            "qkv_bias": base.get("qkv_bias", True),
        }
    # every assignment puts the text group first (a permutation or the copies come after)
    half = experts // 2
    return MoSTConfig(
        **common,
        vocab_size=vocab_size,
        n_routed_experts=experts,
        text_expert_ids=list(range(half)),
        audio_expert_ids=list(range(half, experts)),
        routing=settings["routing"],
        expert_backend=settings["expert_backend"],
        aux_loss_alpha=settings["aux_loss_alpha"],
        aux_loss_scope=settings["aux_loss_scope"],
        audio_token_start=token_layout["audio_token_start"],
        audio_token_count=token_layout["audio_token_count"],
        audio_marker_ids=token_layout["audio_marker_ids"],
        special_tokens=token_layout["special_tokens"],
        speech_input=settings["speech_input"],
        speech_frame_id=token_layout["speech_frame_id"],
        speech_feature_dim=feature_dim,
        expert_copies=experts // base_config.num_experts,
    )


@torch.no_grad()
def text_usage(base, tokenizer, texts: list[str]) -> list[torch.Tensor]:
    """Per MoE layer of the base: how often text tokens pick each routed expert (padding excluded)."""
    counts: dict[int, torch.Tensor] = {}
    handles = []
    for index, layer in enumerate(base.model.layers):
        gate = getattr(layer.mlp, "gate", None)
        if gate is None:
            continue

        def count(module, args, out, index=index):
            counts[index] = counts.get(index, 0) + torch.bincount(out[2].reshape(-1)[keep[0]], minlength=module.num_experts)

        handles.append(gate.register_forward_hook(count))
    keep = [None]
    for start in range(0, len(texts), 64):
        batch = collate([(s, s) for s in encode(tokenizer, texts[start : start + 64])], tokenizer.pad_token_id or 0)
        k = base.config.num_experts_per_tok
        keep[0] = batch["attention_mask"].reshape(-1).bool().repeat_interleave(k)
        base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    for handle in handles:
        handle.remove()
    return [counts[i] for i in sorted(counts)]


def expert_sources(settings: dict, experts: int, moe_layers: int, usage: list[torch.Tensor] | None) -> list[list[int]]:
    """For each MoE layer: which base expert each MoST expert copies."""
    strategy = settings["expert_assignment"]
    if strategy == "index":
        return [list(range(experts))] * moe_layers
    if strategy == "duplicate":
        return [list(range(experts)) * 2] * moe_layers
    if strategy == "usage":
        # stable sort: ties keep index order, so equal usage reduces to the `index` split
        return [torch.argsort(-layer_usage, stable=True).tolist() for layer_usage in usage]
    raise ValueError(f"model.expert_assignment: {strategy!r} is not one of {ASSIGNMENTS}")


def _base_name(name: str, base_model_type: str) -> str:
    """The base checkpoint's name for a MoST tensor (Qwen2-MoE calls its shared expert `shared_expert`)."""
    return name.replace("mlp.shared_experts.", "mlp.shared_expert.") if base_model_type == "qwen2_moe" else name


def base_reader(files: CheckpointFiles) -> Callable[[str], torch.Tensor]:
    """`read(name)` for the base's tensors under their in-memory names: hub checkpoints store routed
    experts one by one (`experts.<e>.gate_proj.weight`, ...), which transformers packs on load into
    `experts.gate_up_proj` [experts, 2 x width, hidden] (gate rows first) and `experts.down_proj`
    [experts, hidden, width]. Packed here the same way, each expert read straight into its slice."""

    def read(name: str) -> torch.Tensor:
        if name in files.entries or not name.endswith((".experts.gate_up_proj", ".experts.down_proj")):
            return files.read(name)
        prefix, packed = name.rsplit(".", 1)
        count = sum(1 for other in files.entries if other.startswith(prefix + ".") and other.endswith(".down_proj.weight"))
        parts = ("gate_proj", "up_proj") if packed == "gate_up_proj" else ("down_proj",)
        first = [f"{prefix}.0.{part}.weight" for part in parts]
        if count == 0 or any(key not in files.entries for key in first):
            raise ValueError(f"graft: the base checkpoint has neither {name} nor per-expert weights {first}")
        rows = [files.shape(key)[0] for key in first]
        out = torch.empty(count, sum(rows), files.shape(first[0])[1], dtype=files.dtype(first[0]))
        for expert in range(count):
            start = 0
            for part, height in zip(parts, rows, strict=True):
                files.read(f"{prefix}.{expert}.{part}.weight", out[expert, start : start + height])
                start += height
        return out

    return read


def grafted_tensors(
    read: Callable[[str], torch.Tensor],
    config: MoSTConfig,
    sources: list[list[int]],
    base_vocab: int,
    dtype: torch.dtype,
    noise: float,
    seed: int,
    feature_stats: dict | None = None,
    unit_centroids: torch.Tensor | None = None,
) -> tuple[list[tuple[str, torch.dtype, tuple[int, ...]]], Iterator[tuple[str, torch.Tensor]]]:
    """Every tensor of the MoST checkpoint, made one at a time from the base's (`read(base name)`):
    the plan (name, dtype, shape, in checkpoint order) and an iterator of (name, tensor).

    Experts and router rows are copied by `sources`; token rows from `base_vocab` on are new (the mean
    of the base's rows plus seeded noise; the units' input and output rows from `unit_centroids` when
    given, `layout.centroid_rows`), as are the speech projector's weights (seeded) and its normalisation
    buffers (`feature_stats`). Routers are float32 (`_keep_in_fp32_modules_strict`),
    everything else `dtype`. A tied LM head is not written (transformers ties it on load)."""
    with torch.device("meta"):
        shell = MoSTForCausalLM(config)
    shapes = {name: tuple(tensor.shape) for name, tensor in shell.state_dict().items()}
    if config.tie_word_embeddings:
        shapes.pop("lm_head.weight", None)
    moe_layer = {}
    for index, layer in enumerate(shell.model.layers):
        if hasattr(layer.mlp, "experts"):
            moe_layer[index] = len(moe_layer)

    def dtype_of(name: str) -> torch.dtype:
        return torch.float32 if name.endswith(".mlp.gate.weight") else dtype

    # the noise is drawn in a fixed order (embedding rows, LM-head rows, projector in, projector out),
    # whatever order the tensors are written in
    generator = torch.Generator().manual_seed(seed)
    new = config.vocab_size - base_vocab
    draws = {name: torch.randn(new, config.hidden_size, generator=generator) for name in ("model.embed_tokens.weight", "lm_head.weight")}
    if feature_stats:
        for part in ("linear_in", "linear_out"):
            name = f"model.speech_projector.{part}.weight"
            draws[name] = torch.randn(shapes[name], generator=generator) * config.initializer_range

    def make(name: str) -> torch.Tensor:
        if name.startswith("model.speech_projector."):
            if not feature_stats:
                raise ValueError("graft: the model has a speech projector but no feature statistics were given")
            part = name.rsplit(".", 1)[0].split(".")[-1]
            if part == "speech_projector":  # feature_mean / feature_std
                return feature_stats[name.rsplit("_", 1)[-1]].to(dtype)
            return draws[name].to(dtype) if name.endswith(".weight") else torch.zeros(shapes[name], dtype=dtype)
        source = read(_base_name(name, config.base_model_type))
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            rows = torch.empty(shapes[name], dtype=dtype)
            rows[:base_vocab] = source[:base_vocab]
            for drawn in [draws[name]] + ([draws["lm_head.weight"]] if config.tie_word_embeddings else []):
                rows[base_vocab:] = layout.new_rows(rows[:base_vocab], noise, drawn)
            if unit_centroids is not None:
                units = slice(config.audio_token_start, config.audio_token_start + config.audio_token_count)
                rows[units] = layout.centroid_rows(unit_centroids, rows[:base_vocab])
            return rows
        layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
        if layer in moe_layer and (".mlp.experts." in name or name.endswith(".mlp.gate.weight")):
            chosen = sources[moe_layer[layer]]
            if chosen != list(range(len(source))):  # `index` keeps the base's order: no copy of a large tensor
                source = source[chosen]
        if tuple(source.shape) != shapes[name]:
            raise ValueError(f"graft: {name} has shape {tuple(source.shape)} in the base and {shapes[name]} here")
        return source.to(dtype_of(name))

    plan = [(name, dtype_of(name), shape) for name, shape in shapes.items()]
    return plan, ((name, make(name)) for name, _, _ in plan)


def _prepare(base_config, tokenizer, settings: dict, units: int, feature_stats: dict | None, usage) -> tuple[MoSTConfig, dict, list]:
    """The MoST config, the token layout (the tokenizer is extended in place) and the expert sources."""
    token_layout = layout.extend_tokenizer(tokenizer, units)
    vocab_size = max(base_config.vocab_size, len(tokenizer))
    experts = base_config.num_experts * (2 if settings["expert_assignment"] == "duplicate" else 1)
    feature_dim = len(feature_stats["mean"]) if feature_stats else 0
    if settings["speech_input"] == "continuous" and not feature_dim:
        raise ValueError("model.speech_input continuous: the graft needs the cached features (encode_features) for its projector")
    config = most_config(base_config, settings, token_layout, vocab_size, experts, feature_dim)
    config.architectures = [MoSTForCausalLM.__name__]
    moe_layers = sum(1 for index in range(config.num_hidden_layers) if index >= config.first_k_dense_replace)
    sources = expert_sources(settings, base_config.num_experts, moe_layers, usage)
    return config, token_layout, sources


def graft(base, tokenizer, settings: dict, units: int, seed: int, feature_stats: dict | None = None) -> tuple[MoSTForCausalLM, dict]:
    """A MoST model from a base loaded in memory (small models: the stage streams from files, `write_graft`).
    `feature_stats` ({"mean", "std"} of the training frames): give the model a speech projector
    (continuous input), normalising with them; without, units are the only speech input."""
    usage = text_usage(base, tokenizer, settings["calibration_texts"]) if settings["expert_assignment"] == "usage" else None
    config, token_layout, sources = _prepare(base.config, tokenizer, settings, units, feature_stats, usage)
    base_state = base.state_dict()
    dtype = base.model.embed_tokens.weight.dtype
    config.dtype = dtype
    _, tensors = grafted_tensors(
        lambda name: base_state[name].detach().clone(),  # the graft's own storage, not the base's
        config,
        sources,
        token_layout["base_vocab_size"],
        dtype,
        settings["new_embedding_noise"],
        seed,
        feature_stats,
        settings.get("unit_centroids"),
    )
    made = dict(tensors)
    return materialize(lambda: MoSTForCausalLM(config), made.__getitem__, "graft"), token_layout


def write_graft(
    source: Path, out: Path, base_config, tokenizer, settings: dict, units: int, seed: int, feature_stats, usage, max_shard_bytes: int
) -> dict:
    """Write the MoST graft of the base checkpoint in `source` to `out` (config, generation config,
    safetensors shards), reading and writing one tensor at a time: memory holds the largest tensor,
    never a model. Returns the token layout (the tokenizer is extended in place)."""
    from transformers import GenerationConfig

    config, token_layout, sources = _prepare(base_config, tokenizer, settings, units, feature_stats, usage)
    files = CheckpointFiles(source)
    dtype = files.dtype("model.embed_tokens.weight")
    config.dtype = dtype
    plan, tensors = grafted_tensors(
        base_reader(files),
        config,
        sources,
        token_layout["base_vocab_size"],
        dtype,
        settings["new_embedding_noise"],
        seed,
        feature_stats,
        settings.get("unit_centroids"),
    )
    out.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(out)
    GenerationConfig.from_model_config(config).save_pretrained(out)
    write_checkpoint(out, plan, tensors, max_shard_bytes)
    return token_layout


@torch.no_grad()
def base_measurements(base, tokenizer, texts: list[str]) -> dict:
    """What the report compares the graft with: the base's logits on the real tokens of up to 64
    held-out texts, over the tokenizer's ids (a checkpoint's padding rows beyond them become new
    token rows in the graft), and its held-out perplexity (measured before the base leaves memory)."""
    batch = collate([(s, s) for s in encode(tokenizer, texts[:64])], tokenizer.pad_token_id or 0)
    logits = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., : len(tokenizer)]
    base_ppl, tokens = perplexity(base, tokenizer, texts)
    return {"batch": batch, "logits": logits[batch["attention_mask"].bool()], "perplexity": base_ppl, "tokens": tokens}


@torch.no_grad()
def plain_logit_difference(model: MoSTForCausalLM, measured: dict) -> float:
    """Largest difference between the base's logits and `model`'s with its routers set to `plain`
    (over the base vocabulary): 0 up to rounding for every assignment (`usage` permutes experts and
    router rows alike; `duplicate` routes `plain` over the originals)."""
    batch, theirs = measured["batch"], measured["logits"]
    routers = [module for module in model.modules() if isinstance(module, MoSTRouter)]
    configured = [router.routing for router in routers]
    for router in routers:
        router.routing = "plain"
    try:
        ours = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    finally:
        for router, routing in zip(routers, configured, strict=True):
            router.routing = routing
    ours = ours[batch["attention_mask"].bool()][:, : theirs.shape[-1]]
    return float((ours.float() - theirs.float()).abs().max())


def graft_report(measured: dict, model: MoSTForCausalLM, difference: float, tokenizer, texts: list[str]) -> dict:
    """Parity of the plain/index graft with the base (`difference`, from `plain_logit_difference`),
    and held-out text perplexity of base vs MoST."""
    # over the base vocabulary: the cost of the expert split alone; over the full one: the model as saved
    most_ppl, _ = perplexity(model, tokenizer, texts, vocab=len(tokenizer))
    full_vocab_ppl, _ = perplexity(model, tokenizer, texts)
    scale = float(measured["logits"].float().abs().max())
    tolerance = 1e-5 if measured["logits"].dtype == torch.float32 else 0.02 * scale
    return {
        "plain_max_logit_difference": difference,
        "base_max_abs_logit": scale,
        "plain_matches_base": difference <= tolerance,
        "held_out_tokens": measured["tokens"],
        "base_perplexity": measured["perplexity"],
        "most_perplexity": most_ppl,
        "perplexity_ratio": most_ppl / measured["perplexity"],
        "most_perplexity_full_vocab": full_vocab_ppl,
    }


def _load_graft(folder: Path) -> MoSTForCausalLM:
    return load_lean(lambda: MoSTForCausalLM(MoSTConfig.from_pretrained(folder)), folder)


def graft_stage(source: str, revision: str, settings: dict, units: int, seed: int, feature_stats, texts: list[str], out: Path) -> dict:
    """Base (in its own dtype) -> what the report needs from it -> the base leaves memory -> the graft
    is written to `out/model` tensor by tensor -> the graft is read back for its side of the report.
    One model is in memory at a time. Returns the report."""
    base, tokenizer = load_base(source, revision)
    usage = text_usage(base, tokenizer, settings["calibration_texts"]) if settings["expert_assignment"] == "usage" else None
    measured = base_measurements(base, tokenizer, texts)
    base_config = base.config
    del base
    gc.collect()
    report_tokenizer = _copy_tokenizer(tokenizer)
    folder = base_folder(source, revision)
    token_layout = write_graft(folder, out / "model", base_config, tokenizer, settings, units, seed, feature_stats, usage, MAX_SHARD_BYTES)
    tokenizer.save_pretrained(out / "model")
    model = _load_graft(out / "model")
    difference = plain_logit_difference(model, measured)
    report = {
        "base": str(source),
        "base_model_type": base_config.model_type,
        "routing": settings["routing"],
        "expert_assignment": settings["expert_assignment"],
        "speech_input": settings["speech_input"],
        "speech_feature_dim": model.config.speech_feature_dim,
        "routed_experts": model.config.n_routed_experts,
        "text_expert_ids": model.config.text_expert_ids,
        "audio_expert_ids": model.config.audio_expert_ids,
        "vocab_size": model.config.vocab_size,
        **{k: v for k, v in token_layout.items() if k != "special_tokens"},
        **graft_report(measured, model, difference, report_tokenizer, texts),
    }
    log.info(
        "graft: plain-routing max logit difference from the base %.2e; held-out perplexity base %.2f, MoST (%s, %s) %.2f",
        report["plain_max_logit_difference"],
        report["base_perplexity"],
        settings["routing"],
        settings["expert_assignment"],
        report["most_perplexity"],
    )
    return report


def unit_centroids(kmeans: Path, units: int) -> torch.Tensor:
    """The k-means centroids the unit tokens stand for (`model.unit_embedding_init: centroids`)."""
    from most.speech.units import UnitTokenizer

    centroids = UnitTokenizer.load(kmeans).centroids
    if len(centroids) != units:
        raise ValueError(f"graft: {kmeans} holds {len(centroids)} centroids, but the tokens were made with k = {units}")
    return centroids


def _copy_tokenizer(tokenizer):
    import copy

    return copy.deepcopy(tokenizer)


def training_rows(prepare, limit: int) -> list[dict]:
    from most.data import manifest

    return manifest.rows(prepare, ["train"], tasks=["asr"])[:limit]
