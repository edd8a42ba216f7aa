"""The MAMoE model: routing variants, dispatch backends (forward and gradient parity), invariants, generate."""

import dataclasses

import pytest
import torch
from transformers import AutoModelForCausalLM, LogitsProcessor, LogitsProcessorList
from transformers.utils import ModelOutput

from most.model import MoSTConfig, MoSTForCausalLM
from most.model.modeling import modality_from_ids
from most.model.moe import CombineCopies, MoSTSparseMoeBlock, SpreadCopies, balance_losses, copy_layout, in_group_mass

ROUTINGS = ("official", "masked_softmax", "group_routers", "plain")
UNIT_START, UNIT_COUNT, BEGIN_SPEECH = 200, 90, 290


def tiny_config(**overrides) -> MoSTConfig:
    settings = dict(
        vocab_size=300,
        hidden_size=64,
        intermediate_size=128,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        kv_lora_rank=16,
        q_lora_rank=None,
        qk_nope_head_dim=16,
        qk_rope_head_dim=8,
        v_head_dim=16,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        text_expert_ids=[0, 2, 4, 6, 7],  # an uneven, interleaved split
        audio_expert_ids=[1, 3, 5],
        audio_token_start=UNIT_START,
        audio_token_count=UNIT_COUNT,
        audio_marker_ids=[BEGIN_SPEECH],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        max_position_embeddings=256,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    settings.update(overrides)
    return MoSTConfig(**settings)


def block_and_inputs(routing: str, backend: str, dtype=torch.float64, seed=0):
    config = tiny_config(routing=routing, expert_backend=backend)
    torch.manual_seed(seed)
    block = MoSTSparseMoeBlock(config).to(dtype)
    with torch.no_grad():
        for parameter in block.parameters():
            parameter.normal_(0, 0.3)
    hidden = torch.randn(3, 10, config.hidden_size, dtype=dtype, requires_grad=True)
    modality = torch.randint(0, 2, (3, 10))
    return config, block, hidden, modality


def forward_and_grads(block, hidden, modality):
    out, routing = block(hidden, modality, torch.ones_like(modality, dtype=torch.bool))
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)).sum().backward()
    grads = {name: p.grad.clone() for name, p in block.named_parameters()}
    return out.detach(), hidden.grad.clone(), grads, routing


@pytest.mark.parametrize("routing", ROUTINGS)
def test_backends_agree_in_forward_and_gradients_in_float64(routing):
    results = {}
    for backend in ("reference", "grouped"):
        _, block, hidden, modality = block_and_inputs(routing, backend)
        results[backend] = forward_and_grads(block, hidden, modality)
    (out_r, dh_r, grads_r, _), (out_g, dh_g, grads_g, _) = results["reference"], results["grouped"]
    torch.testing.assert_close(out_g, out_r, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dh_g, dh_r, rtol=1e-12, atol=1e-12)
    assert grads_g.keys() == grads_r.keys()
    for name in grads_r:
        torch.testing.assert_close(grads_g[name], grads_r[name], rtol=1e-12, atol=1e-12, msg=name)


@pytest.mark.parametrize("routing", ROUTINGS)
def test_grouped_gemm_in_float32_matches_the_float64_reference(routing):
    _, reference, hidden64, modality = block_and_inputs(routing, "reference", torch.float64)
    _, grouped, hidden32, _ = block_and_inputs(routing, "grouped", torch.float32)
    with torch.no_grad():
        hidden32.copy_(hidden64)
        for p32, p64 in zip(grouped.parameters(), reference.parameters(), strict=True):
            p32.copy_(p64)
    out64, dh64, grads64, _ = forward_and_grads(reference, hidden64, modality)
    out32, dh32, grads32, _ = forward_and_grads(grouped, hidden32, modality)
    torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dh32.double(), dh64, rtol=1e-4, atol=1e-5)
    for name in grads64:
        torch.testing.assert_close(grads32[name].double(), grads64[name], rtol=1e-4, atol=1e-4, msg=name)


def planted_copies(tokens: int = 7, k: int = 3, experts: int = 5):
    """A routing of `tokens` tokens to k distinct experts each, its sort by expert and copy layout."""
    generator = torch.Generator().manual_seed(3)
    indices = torch.stack([torch.randperm(experts, generator=generator)[:k] for _ in range(tokens)])
    order = torch.argsort(indices.reshape(-1), stable=True)
    return order, *copy_layout(order, k)


def test_spread_and_combine_are_adjoint_and_their_gradients_check_in_float64():
    order, source, positions = planted_copies()
    hidden = torch.randn(7, 4, dtype=torch.float64, requires_grad=True)
    rows = torch.randn(21, 4, dtype=torch.float64, requires_grad=True)
    assert torch.equal(source, order // 3)
    assert torch.equal(SpreadCopies.apply(hidden, source, positions), hidden[order // 3])
    # <spread(h), r> == <h, combine(r)>: each one's backward is the other's forward
    left = (SpreadCopies.apply(hidden, source, positions) * rows).sum()
    right = (hidden * CombineCopies.apply(rows, source, positions)).sum()
    torch.testing.assert_close(left, right, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda h: SpreadCopies.apply(h, source, positions), (hidden,))
    assert torch.autograd.gradcheck(lambda r: CombineCopies.apply(r, source, positions), (rows,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_combining_copies_equals_the_cpu_scatter_add_bit_for_bit(dtype):
    """The gather-based sum adds each token's copies in row order and in float32, as the CPU's
    index_add does: the grouped backend's CPU results did not change when it replaced the scatter."""
    order, source, positions = planted_copies(tokens=50, k=6, experts=16)
    rows = torch.randn(300, 64).to(dtype)
    scattered = torch.zeros(50, 64, dtype=dtype).index_add(0, source, rows)
    assert torch.equal(CombineCopies.apply(rows, source, positions), scattered)


@pytest.mark.parametrize("routing", ROUTINGS)
def test_routing_respects_groups_and_each_variants_weight_sum(routing):
    config, block, hidden, modality = block_and_inputs(routing, "grouped")
    flat = hidden.reshape(-1, config.hidden_size)
    routing_out = block.gate(flat, modality.reshape(-1), torch.ones(flat.shape[0], dtype=torch.bool))
    chosen, weights, tokens_modality = routing_out.indices, routing_out.weights, modality.reshape(-1)
    audio = torch.tensor(config.audio_expert_ids)
    chosen_is_audio = torch.isin(chosen, audio)
    probs = torch.nn.functional.linear(flat.float(), block.gate.weight.float()).softmax(-1).double()
    in_group = torch.where(tokens_modality[:, None] == 1, torch.isin(torch.arange(8), audio), ~torch.isin(torch.arange(8), audio))
    sums = weights.sum(-1)
    if routing == "plain":
        torch.testing.assert_close(sums, probs.topk(2, -1).values.sum(-1).to(sums.dtype))
        assert chosen_is_audio.any() and (~chosen_is_audio).any()
        return
    # no token reaches an expert of the other group
    assert torch.equal(chosen_is_audio, tokens_modality[:, None].expand_as(chosen) == 1)
    group_mass = (probs * in_group).sum(-1)
    if routing == "official":
        # the share of the full softmax its k in-group experts hold: below the group's mass, never renormalised
        torch.testing.assert_close(sums, (probs * in_group).topk(2, -1).values.sum(-1).to(sums.dtype))
        assert bool((sums <= group_mass + 1e-9).all()) and bool((sums < 1).all())
    elif routing == "masked_softmax":
        torch.testing.assert_close(sums, ((probs * in_group) / group_mass[:, None]).topk(2, -1).values.sum(-1).to(sums.dtype))
    else:
        torch.testing.assert_close(sums, torch.ones_like(sums))


def test_group_routers_is_masked_softmax_with_renormalisation():
    """One router matrix serves every variant, so a group's own router is its rows of that matrix:
    `group_routers` is exactly `masked_softmax` with top-k renormalisation (docs/fidelity.md)."""
    config, block, hidden, modality = block_and_inputs("group_routers", "grouped")
    flat, tokens = hidden.reshape(-1, config.hidden_size), torch.ones(30, dtype=torch.bool)
    grouped = block.gate(flat, modality.reshape(-1), tokens)
    block.gate.routing, block.gate.norm_topk_prob = "masked_softmax", True
    masked = block.gate(flat, modality.reshape(-1), tokens)
    assert torch.equal(grouped.indices, masked.indices) and torch.equal(grouped.weights, masked.weights)
    block.gate.norm_topk_prob = False  # a base without norm_topk_prob (DeepSeek-V2-Lite): only the renormalisation differs
    unnormalised = block.gate(flat, modality.reshape(-1), tokens)
    assert torch.equal(unnormalised.indices, grouped.indices)
    torch.testing.assert_close(unnormalised.weights / unnormalised.weights.sum(-1, keepdim=True), grouped.weights)


def test_the_group_balance_loss_cannot_fall_by_moving_router_mass_out_of_the_group():
    """`official` scores are the full softmax masked to the group; the group losses use them
    renormalised over the group, so router mass moved to the other group leaves them unchanged (the
    `all` loss, the reference's joint form, still sees the masked scores)."""
    config, block, hidden, modality = block_and_inputs("official", "grouped")
    flat, tokens = hidden.reshape(-1, config.hidden_size).detach().float(), torch.ones(30, dtype=torch.bool)
    routing = block.gate(flat, modality.reshape(-1), tokens)
    logits = routing.logits.clone()
    logits[:, config.audio_expert_ids] += 1.0  # same choices; text tokens hold less mass in their group
    own = routing.expert_group[None, :] == routing.modality[:, None]
    moved = dataclasses.replace(routing, scores=logits.softmax(-1) * own, logits=logits)
    assert float(in_group_mass(moved)[0]) < float(in_group_mass(routing)[0]) - 0.05
    before, after = balance_losses(routing, config), balance_losses(moved, config)
    torch.testing.assert_close(after["text"], before["text"])
    torch.testing.assert_close(after["audio"], before["audio"])
    assert float(after["all"]) != pytest.approx(float(before["all"]))


def test_the_balance_losses_equal_a_hand_computation_on_planted_routings():
    """4 experts (text 0-1, audio 2-3), top-1, `official` scores (the full softmax masked to the
    token's group), 3 text tokens, 1 audio token, 1 padding token. By hand: text f = 2/(3*1) x
    [1, 2] picks, P = mean of the group-renormalised scores [0.4722, 0.5278] -> 1.0185; audio
    f = 2 x [1, 0], P = [0.75, 0.25] -> 1.5; all (the reference's form: N 4, masked scores, real
    tokens) -> (4/4) x (1 x 0.15 + 2 x 0.2 + 1 x 0.15) = 0.7."""
    from most.model.moe import Routing

    config = tiny_config(n_routed_experts=4, text_expert_ids=[0, 1], audio_expert_ids=[2, 3], num_experts_per_tok=1)
    full = torch.tensor([[0.3, 0.1, 0.4, 0.2], [0.2, 0.2, 0.5, 0.1], [0.1, 0.5, 0.2, 0.2], [0.1, 0.1, 0.6, 0.2], [0.25] * 4])
    modality = torch.tensor([0, 0, 0, 1, 0])
    group = torch.tensor([0, 0, 1, 1])
    routing = Routing(
        indices=torch.tensor([[0], [1], [1], [2], [0]]),
        weights=torch.ones(5, 1),
        scores=full * (group[None, :] == modality[:, None]),
        modality=modality,
        token_mask=torch.tensor([True, True, True, True, False]),
        expert_group=group,
        logits=full.log(),
    )
    losses = balance_losses(routing, config)
    text_share = torch.tensor([0.75 + 0.5 + 1 / 6, 0.25 + 0.5 + 5 / 6]) / 3
    assert float(losses["text"]) == pytest.approx(2 / 3 * float(text_share[0] + 2 * text_share[1]), rel=1e-6)
    assert float(losses["text"]) == pytest.approx(1.018518, rel=1e-5)
    assert float(losses["audio"]) == pytest.approx(1.5, rel=1e-6)
    assert float(losses["all"]) == pytest.approx(0.7, rel=1e-6)
    # the in-group mass of the real tokens: text (0.4 + 0.4 + 0.6) / 3, audio 0.8
    torch.testing.assert_close(in_group_mass(routing), torch.tensor([1.4 / 3, 0.8]))


def test_shared_experts_see_every_token():
    _, block, hidden, modality = block_and_inputs("official", "grouped")
    seen = []
    block.shared_experts.register_forward_hook(lambda module, args, out: seen.append(args[0].shape[0]))
    block(hidden, modality, torch.ones_like(modality, dtype=torch.bool))
    assert seen == [hidden.shape[0] * hidden.shape[1]]


@pytest.mark.parametrize("backend", ["reference", "grouped"])
@pytest.mark.parametrize("kind", ["text", "audio"])
def test_a_single_modality_batch_gives_every_parameter_a_gradient(backend, kind):
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config(expert_backend=backend, aux_loss_alpha=0.01)).train()
    low, high = (3, UNIT_START) if kind == "text" else (UNIT_START, UNIT_START + UNIT_COUNT)
    ids = torch.randint(low, high, (2, 16))
    model(input_ids=ids, labels=ids).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    # the other group's experts got a defined zero gradient
    experts = model.model.layers[1].mlp.experts
    other = model.config.text_expert_ids if kind == "audio" else model.config.audio_expert_ids
    assert float(experts.gate_up_proj.grad[other].abs().sum()) == 0


def test_modality_comes_from_the_token_layout():
    config = tiny_config()
    ids = torch.tensor([[5, BEGIN_SPEECH, UNIT_START, UNIT_START + UNIT_COUNT - 1, 291, 7]])
    assert modality_from_ids(ids, config).tolist() == [[0, 1, 1, 1, 0, 0]]


def test_bad_modality_ids_are_refused():
    model = MoSTForCausalLM(tiny_config())
    with pytest.raises(ValueError, match="modality_ids must be 0"):
        model(input_ids=torch.tensor([[5, 6]]), modality_ids=torch.tensor([[0, 2]]))


def test_config_refuses_overlapping_or_incomplete_groups():
    with pytest.raises(ValueError, match="share experts"):
        tiny_config(text_expert_ids=[0, 1, 2, 3, 4], audio_expert_ids=[4, 5, 6, 7])
    with pytest.raises(ValueError, match="cover experts"):
        tiny_config(text_expert_ids=[0, 1, 2], audio_expert_ids=[4, 5, 6, 7])
    with pytest.raises(ValueError, match="exceeds a group"):
        tiny_config(num_experts_per_tok=4)


class ForceTokens(LogitsProcessor):
    def __init__(self, tokens):
        self.tokens = list(tokens)

    def __call__(self, input_ids, scores):
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.tokens.pop(0)] = 0
        return forced


def test_generated_tokens_get_their_modality_on_the_fly():
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config()).eval()
    seen = []
    model.model.layers[1].mlp.gate.register_forward_hook(lambda module, args, out: seen.append(args[1].tolist()))
    prompt = torch.tensor([[5, 6, 7]])
    forced = [BEGIN_SPEECH, UNIT_START + 3, UNIT_START + 4, 291, 9]
    out = model.generate(prompt, max_new_tokens=5, do_sample=False, logits_processor=LogitsProcessorList([ForceTokens(forced)]))
    assert out[0, 3:].tolist() == forced
    # step inputs: the prompt, then each generated token (the last one is never fed back)
    assert seen == [[0, 0, 0], [1], [1], [1], [0]]


def test_generate_with_cache_equals_without_and_checkpoints_round_trip(tmp_path):
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config()).eval()
    prompt = torch.randint(3, 299, (2, 6))
    cached = model.generate(prompt, max_new_tokens=8, do_sample=False)
    uncached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False)
    assert torch.equal(cached, uncached)
    model.save_pretrained(tmp_path / "model")
    assert (tmp_path / "model" / "model.safetensors").is_file()
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    assert isinstance(loaded, MoSTForCausalLM) and loaded.config.text_expert_ids == [0, 2, 4, 6, 7]
    assert torch.equal(loaded(input_ids=prompt).logits, model(input_ids=prompt).logits)


FRAME = 295  # the speech-frame placeholder of the continuous-input tests
FEATURE_DIM = 12


def continuous_config(**overrides) -> MoSTConfig:
    return tiny_config(speech_input="continuous", speech_frame_id=FRAME, speech_feature_dim=FEATURE_DIM, **overrides)


def test_continuous_frames_are_projected_into_audio_positions_routed_to_audio_experts():
    torch.manual_seed(0)
    model = MoSTForCausalLM(continuous_config()).eval()
    projector = model.model.speech_projector
    assert projector.linear_in.weight.shape == (64, FEATURE_DIM) and projector.linear_out.weight.shape == (64, 64)
    ids = torch.tensor([[1, 5, BEGIN_SPEECH, FRAME, FRAME, FRAME, 291, 7], [1, BEGIN_SPEECH, FRAME, FRAME, 291, 8, 9, 10]])
    frames = torch.randn(5, FEATURE_DIM)
    assert modality_from_ids(ids, model.config)[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    routed = []
    model.model.layers[1].mlp.gate.register_forward_hook(lambda module, args, out: routed.append((args[1], out.indices)))
    out = model(input_ids=ids, speech_features=frames)
    modality, experts = routed[0]
    assert modality.reshape(ids.shape)[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    audio_experts = set(model.config.audio_expert_ids)
    chosen = experts.reshape(*ids.shape, -1)
    assert all(int(e) in audio_experts for row, col in ((0, 3), (0, 4), (1, 2), (1, 3)) for e in chosen[row, col])
    # the frames reach the output, in reading order: a change to the 4th frame (row 1) moves only row 1
    changed = frames.clone()
    changed[3] += 1.0
    moved = model(input_ids=ids, speech_features=changed).logits
    # row 0 keeps its values up to float rounding: the experts multiply both rows' tokens together, and row 1's
    # new routing changes those products' shapes, which on an AVX-512 Xeon rounds row 0 apart by about 1e-7
    assert (moved[0] - out.logits[0]).abs().max() < 1e-5 and (moved[1] - out.logits[1]).abs().max() > 1e-2
    # the projector trains: gradients reach it
    model.train()
    model(input_ids=ids, speech_features=frames).logits.sum().backward()
    assert projector.linear_in.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="5 speech-frame positions but 4 speech_features"):
        model(input_ids=ids, speech_features=frames[:4])
    with pytest.raises(ValueError, match="no speech_features"):
        model(input_ids=ids)


@pytest.mark.parametrize("speech_input", ["units", "continuous"])
def test_cached_generate_equals_uncached_in_both_input_modes(speech_input, tmp_path):
    torch.manual_seed(0)
    model = MoSTForCausalLM(continuous_config() if speech_input == "continuous" else tiny_config()).eval()
    if speech_input == "continuous":
        prompt, inputs = torch.tensor([[1, 9, BEGIN_SPEECH, *[FRAME] * 6, 291]]), {"speech_features": torch.randn(6, FEATURE_DIM)}
    else:
        prompt, inputs = torch.tensor([[1, 9, BEGIN_SPEECH, *range(UNIT_START, UNIT_START + 6), 291]]), {}
    cached = model.generate(prompt, max_new_tokens=8, do_sample=False, **inputs)
    uncached = model.generate(prompt, max_new_tokens=8, do_sample=False, use_cache=False, **inputs)
    assert cached.shape[1] == prompt.shape[1] + 8 and torch.equal(cached, uncached)
    if speech_input == "continuous":  # the frames matter to what is generated, and survive save/load
        other = model.generate(prompt, max_new_tokens=8, do_sample=False, speech_features=torch.randn(6, FEATURE_DIM) * 5)
        assert not torch.equal(other, cached)
        model.save_pretrained(tmp_path / "model")
        loaded = MoSTForCausalLM.from_pretrained(tmp_path / "model")
        assert torch.equal(loaded.generate(prompt, max_new_tokens=8, do_sample=False, **inputs), cached)


def test_outputs_are_model_outputs_with_hidden_states_on_request():
    """As every transformers decoder: a `ModelOutput`, and with `output_hidden_states` the embeddings and
    each layer's output, the last one normalized (the input of the head)."""
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config()).eval()
    ids = torch.cat([torch.randint(3, UNIT_START, (2, 5)), torch.randint(UNIT_START, UNIT_START + UNIT_COUNT, (2, 4))], 1)
    with torch.no_grad():
        plain = model(input_ids=ids)
        out = model(input_ids=ids, output_hidden_states=True)
        base = model.model(input_ids=ids, output_hidden_states=True)
    assert isinstance(out, ModelOutput) and isinstance(base, ModelOutput) and plain.hidden_states is None
    assert len(out.hidden_states) == model.config.num_hidden_layers + 1
    assert all(h.shape == (2, 9, model.config.hidden_size) for h in out.hidden_states)
    torch.testing.assert_close(out.hidden_states[0], model.model.embed_tokens(ids))
    torch.testing.assert_close(out.logits, model.lm_head(out.hidden_states[-1]))
    torch.testing.assert_close(out.logits, plain.logits)
    torch.testing.assert_close(base.last_hidden_state, out.hidden_states[-1])
    model.config.output_hidden_states = True  # the config default, as transformers reads it
    with torch.no_grad():
        assert len(model(input_ids=ids).hidden_states) == model.config.num_hidden_layers + 1


def test_balance_losses_are_per_group_and_ignore_padding():
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config(aux_loss_alpha=0.1)).train()
    ids = torch.cat([torch.randint(3, UNIT_START, (1, 8)), torch.randint(UNIT_START, UNIT_START + UNIT_COUNT, (1, 8))], 1)
    mask = torch.ones_like(ids)
    out = model(input_ids=ids, attention_mask=mask, labels=ids, output_routing_stats=True)
    assert set(out.aux_losses) == {"text", "audio", "all"}
    assert torch.allclose(out.aux_loss, out.aux_losses["text"] + out.aux_losses["audio"])
    # each group's loss is summed over the MoE layers, as the reference adds one loss per layer
    routings = model.model(input_ids=ids, attention_mask=mask).routings
    assert len(routings) == 2
    for name in ("text", "audio", "all"):
        torch.testing.assert_close(out.aux_losses[name], sum(balance_losses(routing, model.config)[name] for routing in routings))
    # the router's in-group mass per layer and modality: official routing leaves part of it outside the group
    assert out.in_group_mass.shape == (2, 2) and bool(((out.in_group_mass > 0) & (out.in_group_mass < 1)).all())
    # expert load: text tokens only on text experts, audio tokens only on audio experts, k copies each
    load = out.expert_load
    assert load.shape == (2, 2, 8)
    assert float(load[:, 0, model.config.audio_expert_ids].sum()) == 0 and float(load[:, 1, model.config.text_expert_ids].sum()) == 0
    assert load[:, 0].sum(-1).tolist() == [16.0, 16.0] and load[:, 1].sum(-1).tolist() == [16.0, 16.0]
    padded = torch.cat([ids, torch.zeros(1, 4, dtype=torch.long)], 1)
    pad_mask = torch.cat([mask, torch.zeros(1, 4, dtype=torch.long)], 1)
    out_padded = model(input_ids=padded, attention_mask=pad_mask, output_routing_stats=True)
    torch.testing.assert_close(out_padded.expert_load, load)
