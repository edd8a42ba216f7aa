"""`MoSTConfig`: a DeepSeek-V2 config plus the MAMoE expert split, routing, backend and token layout.

The base architecture is DeepSeek-V2 (MLA attention) by default; `base_model_type="qwen2_moe"` hosts a
Qwen2-MoE-style base instead (grouped-query attention with q/k/v bias, a sigmoid-gated shared expert).
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers.models.deepseek_v2.configuration_deepseek_v2 import DeepseekV2Config

from most.model.moe import BACKENDS, ROUTINGS

BASE_MODEL_TYPES = ("deepseek_v2", "qwen2_moe")
SPEECH_INPUTS = ("units", "continuous")
AUX_LOSS_SCOPES = ("group", "all")


@strict
class MoSTConfig(DeepseekV2Config):
    model_type = "most"

    base_model_type: str = "deepseek_v2"
    text_expert_ids: list[int] | None = None
    audio_expert_ids: list[int] | None = None
    routing: str = "official"
    expert_backend: str = "grouped"
    aux_loss_alpha: float = 0.0
    aux_loss_scope: str = "group"  # per modality group (summed) or one loss over all experts
    # how many copies of each base expert the graft made (`duplicate` assignment: 2); see most.model.moe
    expert_copies: int = 1
    # token layout: ids [audio_token_start, audio_token_start + audio_token_count) are speech units;
    # `audio_marker_ids` are markers whose hidden state predicts speech (begin of speech): modality audio.
    # Every other id is text (end-of-speech markers predict text).
    audio_token_start: int = 0
    audio_token_count: int = 0
    audio_marker_ids: list[int] | None = None
    special_tokens: dict[str, int] | None = None
    # speech input: `units` (unit tokens) or `continuous` (MoST-C: encoder frames through a trained
    # projector, placed at `speech_frame_id` positions, which have audio modality)
    speech_input: str = "units"
    speech_frame_id: int | None = None
    speech_feature_dim: int = 0
    # Qwen2-MoE host
    shared_expert_intermediate_size: int | None = None
    shared_expert_gate: bool = False
    qkv_bias: bool = False
    layer_types: list[str] | None = None
    sliding_window: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if self.base_model_type == "qwen2_moe":
            self.head_dim = self.hidden_size // self.num_attention_heads
        if self.layer_types is None:
            self.layer_types = ["full_attention"] * self.num_hidden_layers
        if self.audio_marker_ids is None:
            self.audio_marker_ids = []
        if self.text_expert_ids is None and self.audio_expert_ids is None:
            half = self.n_routed_experts // 2
            self.text_expert_ids, self.audio_expert_ids = list(range(half)), list(range(half, self.n_routed_experts))
        self.check_most()

    @property
    def shared_expert_size(self) -> int:
        if self.shared_expert_intermediate_size is not None:
            return self.shared_expert_intermediate_size
        return self.moe_intermediate_size * self.n_shared_experts

    def check_most(self) -> None:
        def fail(message):
            raise ValueError(f"MoSTConfig: {message}")

        if self.base_model_type not in BASE_MODEL_TYPES:
            fail(f"base_model_type {self.base_model_type!r} is not one of {BASE_MODEL_TYPES}")
        if self.routing not in ROUTINGS:
            fail(f"routing {self.routing!r} is not one of {ROUTINGS}")
        if self.expert_backend not in BACKENDS:
            fail(f"expert_backend {self.expert_backend!r} is not one of {BACKENDS}")
        if self.aux_loss_scope not in AUX_LOSS_SCOPES:
            fail(f"aux_loss_scope {self.aux_loss_scope!r} is not one of {AUX_LOSS_SCOPES}")
        if self.speech_input not in SPEECH_INPUTS:
            fail(f"speech_input {self.speech_input!r} is not one of {SPEECH_INPUTS}")
        if self.speech_input == "continuous" and (self.speech_frame_id is None or self.speech_feature_dim < 1):
            fail("speech_input continuous needs speech_frame_id and speech_feature_dim (set by the graft from the cached features)")
        if self.expert_copies < 1 or self.n_routed_experts % self.expert_copies:
            fail(f"expert_copies {self.expert_copies} must be at least 1 and divide n_routed_experts {self.n_routed_experts}")
        text, audio = set(self.text_expert_ids or []), set(self.audio_expert_ids or [])
        if text & audio:
            fail(f"text_expert_ids and audio_expert_ids share experts {sorted(text & audio)}")
        if text | audio != set(range(self.n_routed_experts)):
            fail(f"text_expert_ids and audio_expert_ids must cover experts 0..{self.n_routed_experts - 1} exactly")
        if self.routing != "plain" and self.num_experts_per_tok > min(len(text), len(audio)):
            fail(f"num_experts_per_tok {self.num_experts_per_tok} exceeds a group's size ({len(text)} text, {len(audio)} audio)")


def deepseek_v2_lite_shapes(layers: int, scale: int = 1) -> dict:
    """`DeepseekV2Config` fields of the paper's base, DeepSeek-V2-Lite, at `layers` decoder layers
    (it has 27), every width divided by `scale`: its architecture without its weights, for the
    benchmarks and the tests that need its sizes."""
    return dict(
        vocab_size=102400 // scale,
        hidden_size=2048 // scale,
        intermediate_size=10944 // scale,
        moe_intermediate_size=1408 // scale,
        num_hidden_layers=layers,
        num_attention_heads=16,
        num_key_value_heads=16,
        kv_lora_rank=512 // scale,
        q_lora_rank=None,
        qk_nope_head_dim=128 // scale,
        qk_rope_head_dim=64 // scale,
        v_head_dim=128 // scale,
        n_routed_experts=64,
        num_experts_per_tok=6,
        n_shared_experts=2,
        first_k_dense_replace=1,
        routed_scaling_factor=1.0,
        norm_topk_prob=False,
        topk_method="greedy",
        max_position_embeddings=4096,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


__all__ = ["MoSTConfig", "deepseek_v2_lite_shapes"]
