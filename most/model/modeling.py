"""`MoSTForCausalLM`: a DeepSeek-V2 (or Qwen2-MoE) decoder whose MoE layers are MAMoE blocks.

Attention, norms, rotary embeddings and the dense MLP are transformers' own modules; only the MoE
block (`most.model.moe`) and the modality plumbing are ours. Every token carries a modality id (0 text,
1 audio): passed as `modality_ids`, or derived from the token layout in the config, also for the
tokens `generate` produces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers import initialization as init
from transformers.cache_utils import Cache, DynamicCache
from transformers.masking_utils import create_causal_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import MoeCausalLMOutputWithPast, MoeModelOutputWithPast
from transformers.models.deepseek_v2.modeling_deepseek_v2 import (
    DeepseekV2Attention,
    DeepseekV2MLP,
    DeepseekV2RMSNorm,
    DeepseekV2RotaryEmbedding,
)
from transformers.models.qwen2_moe.modeling_qwen2_moe import Qwen2MoeAttention, Qwen2MoeRotaryEmbedding

from most.model.configuration import MoSTConfig
from most.model.moe import AUDIO, TEXT, MoSTExperts, MoSTRouter, MoSTSparseMoeBlock, balance_losses, expert_load, in_group_mass

ATTENTION = {"deepseek_v2": DeepseekV2Attention, "qwen2_moe": Qwen2MoeAttention}
ROTARY = {"deepseek_v2": DeepseekV2RotaryEmbedding, "qwen2_moe": Qwen2MoeRotaryEmbedding}


def modality_from_ids(input_ids: torch.Tensor, config: MoSTConfig) -> torch.Tensor:
    """0 (text) or 1 (audio) per token, from the token layout recorded in the config."""
    start, count = config.audio_token_start, config.audio_token_count
    audio = (input_ids >= start) & (input_ids < start + count)
    if config.audio_marker_ids:
        audio |= torch.isin(input_ids, torch.tensor(config.audio_marker_ids, device=input_ids.device))
    if config.speech_frame_id is not None:
        audio |= input_ids == config.speech_frame_id
    return torch.where(audio, AUDIO, TEXT)


class SpeechProjector(nn.Module):
    """MoST-C speech input: encoder frames -> the LM's hidden size. Frames are z-scored with the
    training corpus's statistics (buffers saved with the model, so a checkpoint needs nothing else to
    read raw encoder output), then a two-layer MLP."""

    def __init__(self, config: MoSTConfig) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(config.speech_feature_dim))
        self.register_buffer("feature_std", torch.ones(config.speech_feature_dim))
        self.linear_in = nn.Linear(config.speech_feature_dim, config.hidden_size)
        self.act = nn.GELU()
        self.linear_out = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = (frames.to(self.feature_mean.dtype) - self.feature_mean) / self.feature_std
        return self.linear_out(self.act(self.linear_in(frames.to(self.linear_in.weight.dtype))))


@dataclass
class MoSTModelOutput(MoeModelOutputWithPast):
    """Adds each MoE layer's routing (what the balance losses and routing statistics read)."""

    routings: list | None = None


@dataclass
class MoSTCausalLMOutput(MoeCausalLMOutputWithPast):
    """Adds the balance losses per group (`text`, `audio`, `all`; sums over MoE layers), the expert load and the router's in-group mass."""

    aux_losses: dict[str, torch.Tensor] | None = None
    expert_load: torch.Tensor | None = None  # [moe layers, 2 modalities, experts] token copies
    in_group_mass: torch.Tensor | None = None  # [moe layers, 2 modalities] router softmax share on the own group


class MoSTDecoderLayer(GradientCheckpointingLayer):
    def __init__(self, config: MoSTConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = ATTENTION[config.base_model_type](config, layer_idx)
        self.mlp = MoSTSparseMoeBlock(config) if layer_idx >= config.first_k_dense_replace else DeepseekV2MLP(config)
        self.input_layernorm = DeepseekV2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = DeepseekV2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, hidden_states, modality_ids, token_mask, attention_mask=None, position_ids=None, cache=None, **kwargs):
        residual = hidden_states
        hidden_states, _ = self.self_attn(
            hidden_states=self.input_layernorm(hidden_states),
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            **kwargs,
        )
        hidden_states = residual + hidden_states
        residual = hidden_states
        hidden_states = self.post_attention_layernorm(hidden_states)
        routing = None
        if isinstance(self.mlp, MoSTSparseMoeBlock):
            hidden_states, routing = self.mlp(hidden_states, modality_ids, token_mask)
        else:
            hidden_states = self.mlp(hidden_states)
        return residual + hidden_states, routing


class MoSTPreTrainedModel(PreTrainedModel):
    config: MoSTConfig
    config_class = MoSTConfig
    base_model_prefix = "model"
    supports_gradient_checkpointing = True
    _no_split_modules = ["MoSTDecoderLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _keep_in_fp32_modules_strict = ["gate.weight"]

    def _init_weights(self, module):
        super()._init_weights(module)
        if isinstance(module, SpeechProjector):
            init.zeros_(module.feature_mean)
            init.ones_(module.feature_std)
        elif isinstance(module, MoSTRouter):
            init.normal_(module.weight, mean=0.0, std=self.config.initializer_range)
        elif isinstance(module, MoSTExperts):
            init.normal_(module.gate_up_proj, mean=0.0, std=self.config.initializer_range)
            init.normal_(module.down_proj, mean=0.0, std=self.config.initializer_range)


class MoSTModel(MoSTPreTrainedModel):
    def __init__(self, config: MoSTConfig) -> None:
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, config.pad_token_id)
        self.layers = nn.ModuleList(MoSTDecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = DeepseekV2RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.rotary_emb = ROTARY[config.base_model_type](config=config)
        # present whenever the graft knew the features (so one graft serves both input modes), used only by `continuous`
        self.speech_projector = SpeechProjector(config) if config.speech_feature_dim else None
        self.gradient_checkpointing = False
        self.post_init()

    def place_speech(self, input_ids: torch.Tensor, embeds: torch.Tensor, speech_features: torch.Tensor | None) -> torch.Tensor:
        """Projected frames at the speech-frame positions, in reading order (row by row)."""
        if self.config.speech_input != "continuous":
            if speech_features is not None:
                raise ValueError("MoSTModel: speech_features given, but this model's speech_input is units")
            return embeds
        positions = input_ids == self.config.speech_frame_id
        count = int(positions.sum())
        if speech_features is None:
            if count:
                raise ValueError(f"MoSTModel: {count} speech-frame positions but no speech_features")
            return embeds
        if count != len(speech_features):
            raise ValueError(f"MoSTModel: {count} speech-frame positions but {len(speech_features)} speech_features frames")
        projected = self.speech_projector(speech_features).to(embeds.dtype)
        return embeds.masked_scatter(positions.unsqueeze(-1), projected)

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        modality_ids=None,
        use_cache=None,
        speech_features=None,
        output_hidden_states=None,
        **kwargs,
    ) -> MoSTModelOutput:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("MoSTModel: give exactly one of input_ids or inputs_embeds")
        if modality_ids is None:
            if input_ids is None:
                raise ValueError("MoSTModel: inputs_embeds need explicit modality_ids")
            modality_ids = modality_from_ids(input_ids, self.config)
        elif bool(((modality_ids != TEXT) & (modality_ids != AUDIO)).any()):
            raise ValueError("MoSTModel: modality_ids must be 0 (text) or 1 (audio)")
        if inputs_embeds is None:
            inputs_embeds = self.place_speech(input_ids, self.embed_tokens(input_ids), speech_features)
        elif speech_features is not None:
            raise ValueError("MoSTModel: speech_features go with input_ids (their frame positions), not inputs_embeds")
        if use_cache and cache is None:
            cache = DynamicCache(config=self.config)
        # positions given by the caller may pack several sequences per row (the mask reads them); default
        # ones cannot, and passing them would make the mask check for packing on the host
        given_positions = position_ids
        if position_ids is None:
            seen = cache.get_seq_length() if cache is not None else 0
            position_ids = (torch.arange(inputs_embeds.shape[1], device=inputs_embeds.device) + seen).unsqueeze(0)
        # the attention mask may cover cached tokens too; the MoE only needs this step's tokens
        token_mask = (
            attention_mask[:, -inputs_embeds.shape[1] :].bool()
            if attention_mask is not None and attention_mask.dim() == 2
            else torch.ones(inputs_embeds.shape[:2], dtype=torch.bool, device=inputs_embeds.device)
        )
        causal_mask = create_causal_mask(
            config=self.config, inputs_embeds=inputs_embeds, attention_mask=attention_mask, cache=cache, position_ids=given_positions
        )
        hidden_states = inputs_embeds
        position_embeddings = self.rotary_emb(hidden_states, position_ids)
        routings = []
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        all_hidden_states = [] if output_hidden_states else None
        for layer in self.layers:
            if all_hidden_states is not None:  # each layer's input, as transformers' decoders count them
                all_hidden_states.append(hidden_states)
            hidden_states, routing = layer(
                hidden_states,
                modality_ids,
                token_mask,
                attention_mask=causal_mask,
                position_ids=position_ids,
                cache=cache,
                position_embeddings=position_embeddings,
                **kwargs,
            )
            if routing is not None:
                routings.append(routing)
        hidden_states = self.norm(hidden_states)
        if all_hidden_states is not None:
            all_hidden_states.append(hidden_states)
        return MoSTModelOutput(
            last_hidden_state=hidden_states,
            cache=cache,
            hidden_states=tuple(all_hidden_states) if all_hidden_states is not None else None,
            routings=routings,
        )


class MoSTForCausalLM(MoSTPreTrainedModel, GenerationMixin):
    _tied_weights_keys = {"lm_head.weight": "model.embed_tokens.weight"}

    def __init__(self, config: MoSTConfig) -> None:
        super().__init__(config)
        self.model = MoSTModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def forward(
        self,
        input_ids=None,
        attention_mask=None,
        position_ids=None,
        cache: Cache | None = None,
        inputs_embeds=None,
        labels=None,
        modality_ids=None,
        use_cache=None,
        logits_to_keep: int = 0,
        output_routing_stats: bool = False,
        speech_features=None,
        output_hidden_states=None,
        **kwargs,
    ) -> MoSTCausalLMOutput:
        """`speech_features` [frames, feature dim]: the encoder frames of every speech-frame position
        of `input_ids`, in reading order (continuous speech input only)."""
        cache = cache if cache is not None else kwargs.pop("past_key_values", None)  # the pre-5.40 name
        outputs = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            inputs_embeds=inputs_embeds,
            modality_ids=modality_ids,
            use_cache=use_cache,
            speech_features=speech_features,
            output_hidden_states=output_hidden_states,
            **kwargs,
        )
        hidden, cache, routings = outputs.last_hidden_state, outputs.cache, outputs.routings
        if logits_to_keep:
            hidden = hidden[:, -logits_to_keep:]
        logits = self.lm_head(hidden)
        wants_balance = self.training and self.config.aux_loss_alpha > 0
        aux_losses = aux_loss = load = mass = None
        if (wants_balance or output_routing_stats) and routings:
            per_layer = [balance_losses(routing, self.config) for routing in routings]
            # summed over MoE layers, as the reference adds one loss per layer (a mean would divide alpha by their number)
            aux_losses = {name: torch.stack([layer[name] for layer in per_layer]).sum() for name in per_layer[0]}
            groups = [aux_losses[g] for g in ("text", "audio") if g in aux_losses]
            aux_loss = sum(groups) if self.config.aux_loss_scope == "group" and groups else aux_losses["all"]
            if output_routing_stats:
                load = torch.stack([expert_load(routing, self.config.n_routed_experts) for routing in routings])
                mass = torch.stack([in_group_mass(routing) for routing in routings])
        loss = None
        if labels is not None:
            loss = self.loss_function(logits=logits, labels=labels, vocab_size=self.config.vocab_size, **kwargs)
            if wants_balance:
                loss = loss + self.config.aux_loss_alpha * aux_loss
        return MoSTCausalLMOutput(
            loss=loss,
            logits=logits,
            cache=cache,
            hidden_states=outputs.hidden_states,
            aux_loss=aux_loss,
            aux_losses=aux_losses,
            expert_load=load,
            in_group_mass=mass,
        )

    def prepare_inputs_for_generation(self, input_ids, modality_ids=None, speech_features=None, **kwargs):
        inputs = super().prepare_inputs_for_generation(input_ids, **kwargs)
        step_ids = inputs.get("input_ids")
        # the frames go with the step that holds their positions: the prefill with a cache, every step without
        if speech_features is not None and step_ids is not None and bool((step_ids == self.config.speech_frame_id).any()):
            inputs["speech_features"] = speech_features
        if modality_ids is not None and step_ids is not None:
            if modality_ids.shape[1] == input_ids.shape[1]:
                inputs["modality_ids"] = modality_ids[:, -step_ids.shape[1] :]
            # else: generated tokens get their modality from their ids (in MoSTModel.forward)
        return inputs


__all__ = ["MoSTConfig", "MoSTForCausalLM", "MoSTModel", "MoSTModelOutput", "MoSTPreTrainedModel", "SpeechProjector", "modality_from_ids"]
