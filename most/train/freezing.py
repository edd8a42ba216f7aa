"""Which parameters a stage trains: named parameter groups, some of them rows of a shared tensor.

Groups: `embeddings.text` / `embeddings.new` (rows of the input embedding and output head below /
from the first unit id: units and markers are new), `attention`, `norms`, `dense_mlp`, `routers`,
`experts.text` / `experts.audio` (rows of the fused expert tensors), `experts.shared`,
`speech_projector` (continuous speech input); `all` is every group. A parameter only partly trained (some rows) gets a 0/1 row mask: the loop multiplies its
gradient by the mask and applies weight decay to the trained rows only, so frozen rows never move.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

GROUPS = (
    "embeddings.text",
    "embeddings.new",
    "attention",
    "norms",
    "dense_mlp",
    "routers",
    "experts.text",
    "experts.audio",
    "experts.shared",
    "speech_projector",
)
_LAYER = re.compile(r"\.layers\.(\d+)\.")


@dataclass
class Trainable:
    """The parameters to optimise: whole ones, and (parameter, row mask) pairs trained in part."""

    whole: list[torch.nn.Parameter]
    partial: list[tuple[torch.nn.Parameter, torch.Tensor]]

    def mask_gradients(self) -> None:
        for parameter, mask in self.partial:
            if parameter.grad is not None:
                parameter.grad.mul_(mask.to(parameter.grad.device))

    def decay_partial(self, learning_rate: float, weight_decay: float) -> None:
        """AdamW's decoupled weight decay, on the trained rows only (the optimizer has decay 0 for these)."""
        with torch.no_grad():
            for parameter, mask in self.partial:
                parameter.mul_(1 - learning_rate * weight_decay * mask.to(parameter.device))


def _row_groups(name: str, parameter: torch.nn.Parameter, config) -> dict[str, list[int]] | str:
    """The group of a parameter, or for a row-split one {group: rows}."""
    if name.endswith(("embed_tokens.weight", "lm_head.weight")):
        first_new = config.audio_token_start
        return {"embeddings.text": list(range(first_new)), "embeddings.new": list(range(first_new, parameter.shape[0]))}
    if name.startswith("model.speech_projector."):
        return "speech_projector"
    if ".self_attn." in name:
        return "attention"
    if "norm" in name.rsplit(".", 2)[-2]:  # input_layernorm, post_attention_layernorm, model.norm
        return "norms"
    layer = _LAYER.search(name)
    if layer and ".mlp." in name:
        if int(layer.group(1)) < config.first_k_dense_replace:
            return "dense_mlp"
        if ".mlp.gate." in name:
            return "routers"
        if ".mlp.experts." in name:
            if config.routing == "plain":  # no modality groups: every expert serves both
                return {"experts.text": list(range(parameter.shape[0]))}
            return {"experts.text": list(config.text_expert_ids), "experts.audio": list(config.audio_expert_ids)}
        if ".mlp.shared_expert" in name:
            return "experts.shared"
    raise ValueError(f"trainable: parameter {name!r} belongs to no parameter group; add it to most/train/freezing.py")


def select_trainable(model, groups: list[str]) -> Trainable:
    """Mark the parameters outside `groups` frozen (requires_grad False) and return those to train."""
    wanted = set(GROUPS) if "all" in groups else set(groups)
    unknown = sorted(wanted - set(GROUPS))
    if unknown:
        raise ValueError(f"trainable: unknown parameter group(s) {unknown} (known: all, {', '.join(GROUPS)})")
    whole, partial = [], []
    for name, parameter in model.named_parameters():
        found = _row_groups(name, parameter, model.config)
        if found == "speech_projector" and model.config.speech_input != "continuous":
            parameter.requires_grad_(False)  # unused with unit input: frozen, or DDP would wait for its gradient
            continue
        if isinstance(found, str):
            parameter.requires_grad_(found in wanted)
            if found in wanted:
                whole.append(parameter)
            continue
        rows = sorted(row for group, group_rows in found.items() if group in wanted for row in group_rows)
        parameter.requires_grad_(bool(rows))
        if len(rows) == parameter.shape[0]:
            whole.append(parameter)
        elif rows:
            mask = torch.zeros(parameter.shape[0], *([1] * (parameter.dim() - 1)), dtype=parameter.dtype, device=parameter.device)
            mask[rows] = 1
            partial.append((parameter, mask))
    if not whole and not partial:
        raise ValueError(f"trainable: groups {sorted(wanted)} select no parameter of this model")
    return Trainable(whole, partial)
