"""The MAMoE block: a modality-aware router, packed experts with two dispatch backends, shared experts.

Routed experts are split into a text group and an audio group; a token (modality 0 text, 1 audio) is
routed only inside its own group, except with `routing="plain"`. Routing variants (`config.routing`):

- `official`: softmax over all routed experts, the other group's probabilities zeroed, top-k, no
  renormalisation (the public MoST code): a token's weights sum to the share of the full softmax
  mass its k experts hold;
- `masked_softmax`: logits outside the token's group set to -inf, softmax within the group, top-k
  (renormalised when the base model renormalises, `norm_topk_prob`);
- `group_routers`: each group's router rows form a router of their own, softmax within the group,
  top-k weights renormalised to sum to 1;
- `plain`: no modality constraint (a vanilla MoE; `norm_topk_prob` as in the base model).

A `duplicate` graft holds every base expert twice (`expert_copies` 2: the text group the originals,
the audio group their copies). `official` then multiplies its masked probabilities by the number of
copies (a softmax over both copies gives each half the base's mass), and `plain` routes over the
originals only (top-k would pick an expert and its copy), so that at graft time both reproduce the
base; `masked_softmax` reproduces it as is.

All variants share one router matrix `gate.weight` [experts, hidden], so one graft serves every
variant. Weights are multiplied by `routed_scaling_factor`.

Dispatch backends (`config.expert_backend`): `reference` loops over experts; `grouped` sorts the
token copies by expert and runs one grouped GEMM per projection (`F.grouped_mm`), with no host
synchronisation and no scatter-add (copies are spread and summed back by gathers: deterministic on a
GPU). Both compute the same function (tests check forward and gradients).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.activations import ACT2FN
from transformers.models.deepseek_v2.modeling_deepseek_v2 import DeepseekV2MLP

TEXT, AUDIO = 0, 1
ROUTINGS = ("official", "masked_softmax", "group_routers", "plain")
BACKENDS = ("reference", "grouped")


@dataclass
class Routing:
    """One MoE layer's routing decision for a flat batch of tokens."""

    indices: torch.Tensor  # [tokens, k] expert ids
    weights: torch.Tensor  # [tokens, k] in the hidden dtype
    scores: torch.Tensor  # [tokens, experts] float32 probabilities the balance loss uses
    modality: torch.Tensor  # [tokens]
    token_mask: torch.Tensor  # [tokens] bool: real (non-padding) tokens
    expert_group: torch.Tensor  # [experts] the group (0 text, 1 audio) of each routed expert, on the tokens' device
    logits: torch.Tensor  # [tokens, experts] float32 router logits (statistics: `in_group_mass`)


def expert_groups(config) -> list[int]:
    """The modality group (0 text, 1 audio) of each routed expert."""
    audio = set(config.audio_expert_ids or [])
    return [AUDIO if expert in audio else TEXT for expert in range(config.n_routed_experts)]


class MoSTRouter(nn.Module):
    def __init__(self, config) -> None:
        super().__init__()
        self.routing = config.routing
        self.top_k = config.num_experts_per_tok
        self.norm_topk_prob = bool(config.norm_topk_prob)
        self.routed_scaling_factor = config.routed_scaling_factor
        self.expert_copies = config.expert_copies
        self.weight = nn.Parameter(torch.zeros(config.n_routed_experts, config.hidden_size, dtype=torch.float32))
        # a plain list, not a buffer: from_pretrained leaves non-persistent buffers uninitialised
        self.expert_group = expert_groups(config)
        self._group_on: dict[torch.device, torch.Tensor] = {}  # expert_group per device, copied there once

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor, token_mask: torch.Tensor) -> Routing:
        logits = F.linear(hidden.float(), self.weight.float())
        expert_group = self._expert_group_on(hidden.device)
        if self.routing == "plain":
            if self.expert_copies > 1:  # the originals only: top-k over copies would pick an expert and its copy
                logits = logits.masked_fill(~routable_originals(logits.shape[-1], self.expert_copies, logits.device), float("-inf"))
            scores = logits.softmax(-1)
            weights, indices = torch.topk(scores, self.top_k, dim=-1)
            if self.norm_topk_prob:
                weights = weights / weights.sum(-1, keepdim=True)
        else:
            own_group = expert_group[None, :] == modality[:, None]
            if self.routing == "official":
                scores = logits.softmax(-1) * own_group
                # with every expert present `expert_copies` times, each copy holds 1/copies of the base's mass
                scores = scores * self.expert_copies
            else:
                scores = logits.masked_fill(~own_group, float("-inf")).softmax(-1)
            weights, indices = torch.topk(scores, self.top_k, dim=-1)
            renormalise = self.routing == "group_routers" or (self.routing == "masked_softmax" and self.norm_topk_prob)
            if renormalise:
                weights = weights / weights.sum(-1, keepdim=True)
        weights = (weights * self.routed_scaling_factor).to(hidden.dtype)
        return Routing(indices, weights, scores, modality, token_mask, expert_group, logits)

    def _expert_group_on(self, device: torch.device) -> torch.Tensor:
        if device not in self._group_on:  # a host-to-device copy waits for the device: once, not every step
            self._group_on[device] = torch.tensor(self.expert_group, device=device)
        return self._group_on[device]


def routable_originals(num_experts: int, copies: int, device) -> torch.Tensor:
    """[experts] bool: the experts `plain` routing may pick, the originals (the first 1/copies of them)."""
    return torch.arange(num_experts, device=device) < num_experts // copies


class MoSTExperts(nn.Module):
    """Routed experts as packed 3-D weights (the transformers 5 layout: gate_up_proj, down_proj)."""

    def __init__(self, config) -> None:
        super().__init__()
        self.num_experts = config.n_routed_experts
        self.backend = config.expert_backend
        self.gate_up_proj = nn.Parameter(torch.empty(self.num_experts, 2 * config.moe_intermediate_size, config.hidden_size))
        self.down_proj = nn.Parameter(torch.empty(self.num_experts, config.hidden_size, config.moe_intermediate_size))
        self.act_fn = ACT2FN[config.hidden_act]

    def forward(self, hidden: torch.Tensor, indices: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        if self.backend == "reference":
            return self._reference(hidden, indices, weights)
        return self._grouped(hidden, indices, weights)

    def _swiglu(self, x: torch.Tensor, gate_up: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
        gate, up = F.linear(x, gate_up).chunk(2, dim=-1)
        return F.linear(self.act_fn(gate) * up, down)

    def _reference(self, hidden, indices, weights):
        out = torch.zeros_like(hidden)
        for expert in range(self.num_experts):
            token, slot = torch.where(indices == expert)
            y = self._swiglu(hidden.index_select(0, token), self.gate_up_proj[expert], self.down_proj[expert])
            out.index_add_(0, token, y * weights[token, slot, None])
        return out

    def _grouped(self, hidden, indices, weights):
        order, row_expert, offsets = sort_by_expert(indices, self.num_experts)
        source, positions = copy_layout(order, indices.shape[1])
        x = SpreadCopies.apply(hidden, source, positions)
        gate, up = grouped_matmul(x, self.gate_up_proj.transpose(1, 2), offsets, row_expert).chunk(2, dim=-1)
        # the routing weight scales the expert's inner activation (narrower than hidden; the same by linearity)
        inner = self.act_fn(gate) * up * weights.reshape(-1).index_select(0, order)[:, None]
        y = grouped_matmul(inner, self.down_proj.transpose(1, 2), offsets, row_expert)
        return CombineCopies.apply(y, source, positions)


def sort_by_expert(indices: torch.Tensor, num_experts: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The tokens' routed copies (`indices` [T, k]) sorted by expert: `order` [T*k], the flat copy
    index of each sorted row; each sorted row's expert; and the int32 end offset of each expert's rows,
    as `F.grouped_mm` takes them."""
    flat_expert = indices.reshape(-1)
    order = torch.argsort(flat_expert, stable=True)
    offsets = torch.cumsum(token_counts(flat_expert, num_experts), 0).to(torch.int32)
    return order, flat_expert[order], offsets


def copy_layout(order: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Where the k routed copies of each token sit once the copies are sorted by expert (`order`):
    `source` [T*k], the token of each sorted row, and `positions` [k, T], the rows of each token's
    copies in ascending order."""
    rows = torch.empty_like(order).scatter_(0, order, torch.arange(order.numel(), device=order.device))
    return order // k, rows.view(-1, k).sort(dim=1).values.t().contiguous()


def sum_copies(rows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """[T, hidden]: each token's copies among `rows`, added in row order and at least in float32. That is what
    the CPU's index_add does, so on the CPU the result is the same bit for bit; on a GPU it replaces
    an atomic scatter-add (a tenth of the layer's time, in bf16, in no fixed order)."""
    out = rows.index_select(0, positions[0]).to(torch.promote_types(rows.dtype, torch.float32))
    for slot in positions[1:]:
        out.add_(rows.index_select(0, slot))
    return out.to(rows.dtype)


class SpreadCopies(torch.autograd.Function):
    """hidden [T, hidden] -> its expert-sorted copies [T*k, hidden]. The backward adds each token's
    copies by gathering them (`sum_copies`) instead of index_select's scatter-add."""

    @staticmethod
    def forward(ctx, hidden: torch.Tensor, source: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(positions)
        return hidden.index_select(0, source)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (positions,) = ctx.saved_tensors
        return sum_copies(grad, positions), None, None


class CombineCopies(torch.autograd.Function):
    """Expert outputs [T*k, hidden] in sorted order -> their sum per token [T, hidden]: the adjoint of
    `SpreadCopies`, so each one's backward is the other's forward."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, source: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(source)
        return sum_copies(rows, positions)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (source,) = ctx.saved_tensors
        return grad.index_select(0, source), None, None


def token_counts(expert_ids: torch.Tensor, num_experts: int) -> torch.Tensor:
    """How many entries of `expert_ids` name each expert: `torch.bincount` without its host sync
    (on a GPU bincount reads the largest id back to size its output)."""
    counts = torch.zeros(num_experts, dtype=torch.long, device=expert_ids.device)
    return counts.scatter_add_(0, expert_ids, torch.ones_like(expert_ids))


def routed_one_hot(indices: torch.Tensor, num_experts: int) -> torch.Tensor:
    """[tokens, experts] float: how many of a token's k slots picked each expert. Not `F.one_hot`,
    which checks its ids on the host (two syncs on the CPU)."""
    counts = torch.zeros(indices.shape[0], num_experts, device=indices.device)
    return counts.scatter_add_(1, indices, torch.ones(indices.shape, device=indices.device))


def grouped_matmul(x: torch.Tensor, weight: torch.Tensor, offsets: torch.Tensor, row_expert: torch.Tensor) -> torch.Tensor:
    """Row r of x (sorted by expert) times weight[row_expert[r]]; weight is [experts, in, out].

    `F.grouped_mm` where it applies (float32/bf16/fp16 with 16-byte aligned rows; bf16/fp16 only under
    torch.compile, whose shape function refuses float32); otherwise each row is multiplied by its
    gathered expert matrix, the same function at more memory (float64 tests, odd widths)."""
    aligned = all((size * x.element_size()) % 16 == 0 for size in (x.shape[-1], weight.shape[-1]))
    dtypes = (torch.bfloat16, torch.float16) if torch.compiler.is_compiling() else (torch.float32, torch.bfloat16, torch.float16)
    if x.dtype in dtypes and aligned:
        return F.grouped_mm(x.contiguous(), weight, offs=offsets)
    return torch.bmm(x.unsqueeze(1), weight[row_expert]).squeeze(1)


class MoSTSparseMoeBlock(nn.Module):
    """Routed experts (modality-aware) plus shared experts that see every token."""

    def __init__(self, config) -> None:
        super().__init__()
        self.gate = MoSTRouter(config)
        self.experts = MoSTExperts(config)
        shared = config.shared_expert_size
        self.shared_experts = DeepseekV2MLP(config, intermediate_size=shared) if shared else None
        # Qwen2-MoE scales its shared expert by a learned sigmoid gate
        self.shared_expert_gate = nn.Linear(config.hidden_size, 1, bias=False) if config.shared_expert_gate else None

    def forward(self, hidden: torch.Tensor, modality: torch.Tensor, token_mask: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        shape = hidden.shape
        flat = hidden.reshape(-1, shape[-1])
        routing = self.gate(flat, modality.reshape(-1), token_mask.reshape(-1))
        out = self.experts(flat, routing.indices, routing.weights)
        if self.shared_experts is not None:
            shared = self.shared_experts(flat)
            if self.shared_expert_gate is not None:
                shared = torch.sigmoid(self.shared_expert_gate(flat)) * shared
            out = out + shared
        return out.reshape(shape), routing


def balance_losses(routing: Routing, config) -> dict[str, torch.Tensor]:
    """Switch/DeepSeek load-balance loss sum_e f_e * P_e, per modality group and over all experts.

    f_e = (N / (T k)) * (token copies sent to e), P_e = mean routing score of e, over the T real tokens
    of the group (N experts in the group); `all` is the same over every token and expert (the
    official MoST form). Within a group P_e is the group's own distribution: `official` scores are the
    full softmax masked to the group, and from those the loss could fall by moving router mass out of
    the group (shrinking every routed weight), so they are renormalised over the group first; the
    other variants' scores already are. Padding never counts. Groups select experts by a 0/1 weight, not boolean
    indexing, so nothing here synchronises with the host."""
    k = routing.indices.shape[1]
    one_hot = routed_one_hot(routing.indices, config.n_routed_experts)
    mask = routing.token_mask.float()
    every = routable_originals(config.n_routed_experts, config.expert_copies if config.routing == "plain" else 1, mask.device)
    groups = {"all": (mask, every)}
    if config.routing != "plain":
        for name, group in (("text", TEXT), ("audio", AUDIO)):
            groups[name] = (mask * (routing.modality == group).float(), routing.expert_group == group)
    losses = {}
    in_group_scores = routing.scores
    if config.routing == "official":
        in_group_scores = routing.scores / routing.scores.sum(-1, keepdim=True).clamp(min=1e-9)
    for name, (token_weight, experts) in groups.items():
        tokens = token_weight.sum().clamp(min=1)
        in_group = experts.float()
        counts = (one_hot * token_weight[:, None]).sum(0)
        scores = routing.scores if name == "all" else in_group_scores
        share = (scores * token_weight[:, None]).sum(0) / tokens
        losses[name] = (in_group.sum() / (tokens * k)) * (counts * share * in_group).sum()
    return losses


def in_group_mass(routing: Routing) -> torch.Tensor:
    """[2]: for text tokens, then audio tokens, the mean share of the full router softmax that falls on
    the token's own expert group (real tokens only). Under `official` routing a token's routed
    weights sum to at most this share, so it shows whether training moves mass out of the groups."""
    full = routing.logits.softmax(-1)
    mass = (full * (routing.expert_group[None, :] == routing.modality[:, None])).sum(-1)
    shares = []
    for group in (TEXT, AUDIO):
        weight = routing.token_mask.float() * (routing.modality == group).float()
        shares.append((mass * weight).sum() / weight.sum().clamp(min=1))
    return torch.stack(shares)


def expert_load(routing: Routing, num_experts: int) -> torch.Tensor:
    """[2, experts] token copies per expert, for text tokens (row 0) and audio tokens (row 1)."""
    one_hot = routed_one_hot(routing.indices, num_experts) * routing.token_mask.float()[:, None]
    return torch.stack([(one_hot * (routing.modality == group).float()[:, None]).sum(0) for group in (TEXT, AUDIO)])
