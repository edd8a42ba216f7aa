"""Stage `graft`: a pretrained MoE text LM becomes a MoST model.

The base (`DeepseekV2ForCausalLM` or `Qwen2MoeForCausalLM`, loaded by transformers from a hub id or a
folder) gives every weight; the routed experts are assigned to the text and audio groups by
`model.expert_assignment`:
- `index`: experts 0..E/2-1 text, the rest audio (the paper);
- `usage`: per layer, the E/2 experts text tokens of a calibration set use most stay text;
- `duplicate`: the text group is all E original experts, the audio group their copies (2E experts).
Unit tokens and markers are appended to the tokenizer (`most.model.layout`). The report checks the
graft: with `plain` routing and `index` assignment the text logits equal the base model's, and with
the configured routing the held-out text perplexity sits beside the base model's.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from most.io import atomic_directory, write_json
from most.model import layout
from most.model.configuration import MoSTConfig
from most.model.modeling import MoSTForCausalLM
from most.model.moe import MoSTRouter
from most.model.pretrain_base import encode, held_out_texts, perplexity
from most.model.sequences import collate
from most.speech import feature_store
from most.stages import StageResult

log = logging.getLogger(__name__)

ASSIGNMENTS = ("index", "usage", "duplicate")


def load_base(source: str, revision: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {"revision": revision} if revision else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32, **options)
    except OSError as error:
        raise ValueError(f"model.base: cannot load {source!r} (a hub id needs the network or a filled cache): {error}") from error
    if model.config.model_type not in ("deepseek_v2", "qwen2_moe"):
        raise ValueError(f"model.base: {source} is a {model.config.model_type} model; graft supports deepseek_v2 and qwen2_moe")
    return model.eval(), AutoTokenizer.from_pretrained(source, **options)


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


def copy_weights(base, model: MoSTForCausalLM, sources: list[list[int]], base_vocab: int) -> None:
    """Every MoST parameter from the base (experts and router rows by `sources`); new token rows left to the caller."""
    theirs = {name.replace("mlp.shared_expert.", "mlp.shared_experts."): p for name, p in base.state_dict().items()}
    moe_layer = {}
    for index, layer in enumerate(model.model.layers):
        if hasattr(layer.mlp, "experts"):
            moe_layer[index] = len(moe_layer)
    missing = []
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("model.speech_projector."):
                continue  # new in MoST: initialised by `graft`
            if name not in theirs:
                missing.append(name)
                continue
            source = theirs[name]
            if name.endswith(("embed_tokens.weight", "lm_head.weight")):
                parameter[:base_vocab] = source[:base_vocab]
                continue
            layer = int(name.split(".")[2]) if name.startswith("model.layers.") else None
            if layer in moe_layer and (".mlp.experts." in name or name.endswith(".mlp.gate.weight")):
                source = source[sources[moe_layer[layer]]]
            if source.shape != parameter.shape:
                raise ValueError(f"graft: {name} has shape {tuple(source.shape)} in the base and {tuple(parameter.shape)} here")
            parameter.copy_(source)
    if missing:
        raise ValueError(f"graft: no base weight for {missing} (left at random init)")


def graft(base, tokenizer, settings: dict, units: int, seed: int, feature_stats: dict | None = None) -> tuple[MoSTForCausalLM, dict]:
    """`feature_stats` ({"mean", "std"} of the training frames): give the model a speech projector
    (continuous input), normalising with them; without, units are the only speech input."""
    base_vocab = len(tokenizer)
    token_layout = layout.extend_tokenizer(tokenizer, units)
    vocab_size = max(base.config.vocab_size, len(tokenizer))
    experts = base.config.num_experts * (2 if settings["expert_assignment"] == "duplicate" else 1)
    feature_dim = len(feature_stats["mean"]) if feature_stats else 0
    if settings["speech_input"] == "continuous" and not feature_dim:
        raise ValueError("model.speech_input continuous: the graft needs the cached features (encode_features) for its projector")
    config = most_config(base.config, settings, token_layout, vocab_size, experts, feature_dim)
    model = MoSTForCausalLM(config).eval()
    moe_layers = sum(1 for layer in model.model.layers if hasattr(layer.mlp, "experts"))
    usage = text_usage(base, tokenizer, settings["calibration_texts"]) if settings["expert_assignment"] == "usage" else None
    copy_weights(base, model, expert_sources(settings, base.config.num_experts, moe_layers, usage), base_vocab)
    generator = torch.Generator().manual_seed(seed)
    layout.init_new_rows(model.model.embed_tokens.weight, base_vocab, settings["new_embedding_noise"], generator)
    layout.init_new_rows(model.lm_head.weight, base_vocab, settings["new_embedding_noise"], generator)
    if feature_stats:
        init_projector(model.model.speech_projector, feature_stats, config.initializer_range, generator)
    return model, token_layout


def init_projector(projector, feature_stats: dict, std: float, generator: torch.Generator) -> None:
    """The corpus statistics into the projector's buffers; its weights drawn from the graft's seeded generator."""
    with torch.no_grad():
        projector.feature_mean.copy_(feature_stats["mean"])
        projector.feature_std.copy_(feature_stats["std"])
        for linear in (projector.linear_in, projector.linear_out):
            linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * std)
            linear.bias.zero_()


def graft_report(base, tokenizer, model: MoSTForCausalLM, settings: dict, units: int, seed: int, texts: list[str]) -> dict:
    """Parity of the plain/index graft with the base, and held-out text perplexity of base vs MoST."""
    if settings["expert_assignment"] == "index":
        plain = model  # the same weights; its routers switch to `plain` below (no second copy of a large model)
    else:
        plain, _ = graft(
            base,
            _copy_tokenizer(tokenizer),
            {**settings, "routing": "plain", "expert_assignment": "index", "speech_input": "units"},
            units,
            seed,
        )
    batch = collate([(s, s) for s in encode(tokenizer, texts[:64])], tokenizer.pad_token_id or 0)
    routers = [module for module in plain.modules() if isinstance(module, MoSTRouter)]
    configured = [router.routing for router in routers]
    with torch.no_grad():
        theirs = base(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        for router in routers:
            router.routing = "plain"
        ours = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[..., : theirs.shape[-1]]
        for router, routing in zip(routers, configured, strict=True):
            router.routing = routing
    real = batch["attention_mask"].bool()
    difference = float((ours - theirs).abs()[real].max())
    base_ppl, tokens = perplexity(base, tokenizer, texts)
    # over the base vocabulary: the cost of the expert split alone; over the full one: the model as saved
    most_ppl, _ = perplexity(model, tokenizer, texts, vocab=len(tokenizer))
    full_vocab_ppl, _ = perplexity(model, tokenizer, texts)
    return {
        "plain_index_max_logit_difference": difference,
        "plain_index_matches_base": difference <= 1e-5,
        "held_out_tokens": tokens,
        "base_perplexity": base_ppl,
        "most_perplexity": most_ppl,
        "perplexity_ratio": most_ppl / base_ppl,
        "most_perplexity_full_vocab": full_vocab_ppl,
    }


def _copy_tokenizer(tokenizer):
    import copy

    return copy.deepcopy(tokenizer)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    torch.set_num_threads(max(1, threads))
    settings, seed = dict(cfg["model"]), cfg["seed"]
    embedded = settings["base"] == "embedded"
    source = inputs["base_lm"] if embedded else settings["base"]
    units = json.loads((Path(inputs["tokens"]) / "tokenize_report.json").read_text())["k"]
    feature_stats = feature_store.stats(Path(inputs["features"]))
    base, tokenizer = load_base(str(source), "" if embedded else settings["base_revision"])
    texts = held_out_texts(inputs["prepare"], settings["eval_sentences"])
    settings["calibration_texts"] = [row["text"] for row in _training_rows(inputs["prepare"], settings["calibration_sentences"])]
    report_tokenizer = _copy_tokenizer(tokenizer)
    model, token_layout = graft(base, tokenizer, settings, units, seed, feature_stats)
    report = {
        "base": str(source),
        "base_model_type": base.config.model_type,
        "routing": settings["routing"],
        "expert_assignment": settings["expert_assignment"],
        "speech_input": settings["speech_input"],
        "speech_feature_dim": model.config.speech_feature_dim,
        "routed_experts": model.config.n_routed_experts,
        "text_expert_ids": model.config.text_expert_ids,
        "audio_expert_ids": model.config.audio_expert_ids,
        "vocab_size": model.config.vocab_size,
        **{k: v for k, v in token_layout.items() if k != "special_tokens"},
        **graft_report(base, report_tokenizer, model, settings, units, seed, texts),
    }
    log.info(
        "graft: plain/index max logit difference %.2e; held-out perplexity base %.2f, MoST (%s, %s) %.2f",
        report["plain_index_max_logit_difference"],
        report["base_perplexity"],
        settings["routing"],
        settings["expert_assignment"],
        report["most_perplexity"],
    )
    with atomic_directory(outputs["graft"]) as out:
        model.save_pretrained(out / "model")
        tokenizer.save_pretrained(out / "model")
        write_json(report, out / "report.json")
    metrics = {k: float(v) for k, v in report.items() if isinstance(v, int | float)}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["graft"]) / "report.json"])


def _training_rows(prepare, limit: int) -> list[dict]:
    from most.speech import corpus

    return corpus.rows(prepare, ["train"], tasks=["asr"])[:limit]
