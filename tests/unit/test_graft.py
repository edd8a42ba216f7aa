"""Grafting a pretrained MoE LM (DeepSeek-V2 or Qwen2-MoE layout) into MoST, and the token layout."""

import pytest
import torch
from transformers import DeepseekV2Config, DeepseekV2ForCausalLM, Qwen2MoeConfig, Qwen2MoeForCausalLM

from most.model import MoSTForCausalLM
from most.model.base_lm import train_tokenizer
from most.model.graft import base_measurements, graft, graft_report, load_base, plain_logit_difference
from most.model.layout import BEGIN_SPEECH, END_SPEECH, task_tag, unit_token
from most.model.moe import MoSTRouter

TEXTS = [
    "the cook finds some cups at the bakery",
    "my friends ride to the forest every day",
    "three grey bags are soft",
    "her mother hurries to the station every day",
    "we sit near the hospital after lunch",
] * 4
SETTINGS = {
    "routing": "official",
    "expert_backend": "grouped",
    "expert_assignment": "index",
    "speech_input": "units",
    "aux_loss_alpha": 0.001,
    "aux_loss_scope": "group",
    "new_embedding_noise": 0.02,
    "calibration_texts": TEXTS,
}


def save_base(kind: str, folder):
    tokenizer = train_tokenizer(TEXTS, 300)
    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        moe_intermediate_size=16,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_experts_per_tok=2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    if kind == "deepseek_v2":
        config = DeepseekV2Config(
            **common,
            kv_lora_rank=8,
            q_lora_rank=None,
            qk_nope_head_dim=8,
            qk_rope_head_dim=4,
            v_head_dim=8,
            n_routed_experts=8,
            n_shared_experts=2,
            first_k_dense_replace=1,
        )
        model = DeepseekV2ForCausalLM(config)
    else:
        config = Qwen2MoeConfig(**common, num_key_value_heads=2, num_experts=8, shared_expert_intermediate_size=24, norm_topk_prob=True)
        model = Qwen2MoeForCausalLM(config)
    with torch.no_grad():  # routers start at zero in transformers; random rows make routing decisive
        for name, parameter in model.named_parameters():
            if name.endswith("gate.weight"):
                parameter.normal_(0, 1.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["deepseek_v2", "qwen2_moe"])
def base_folder(request, tmp_path_factory):
    return save_base(request.param, tmp_path_factory.mktemp(request.param))


def test_plain_index_graft_reproduces_the_base_and_every_weight_is_copied(base_folder):
    base, tokenizer = load_base(str(base_folder), "")
    model, token_layout = graft(base, tokenizer, {**SETTINGS, "routing": "plain"}, units=20, seed=0)
    measured = base_measurements(*load_base(str(base_folder), ""), TEXTS)
    report = graft_report(measured, model, plain_logit_difference(model, measured), load_base(str(base_folder), "")[1], TEXTS)
    assert report["plain_matches_base"] and report["plain_max_logit_difference"] <= 1e-5
    # nothing left at random init: every parameter equals its base counterpart (new token rows aside)
    theirs = {name.replace("mlp.shared_expert.", "mlp.shared_experts."): p for name, p in base.state_dict().items()}
    first_new = token_layout["base_vocab_size"]
    for name, parameter in model.named_parameters():
        if name.endswith(("embed_tokens.weight", "lm_head.weight")):
            assert torch.equal(parameter[:first_new], theirs[name][:first_new]), name
        else:
            assert torch.equal(parameter, theirs[name]), name


def test_token_layout_appends_contiguous_units_and_markers(base_folder):
    base, tokenizer = load_base(str(base_folder), "")
    before = len(tokenizer)
    model, token_layout = graft(base, tokenizer, SETTINGS, units=20, seed=0)
    start = token_layout["audio_token_start"]
    assert start == before and token_layout["audio_token_count"] == 20
    assert tokenizer.convert_tokens_to_ids([unit_token(0), unit_token(19)]) == [start, start + 19]
    ids = tokenizer(f"{task_tag('tts')} hello {BEGIN_SPEECH}{unit_token(3)}{unit_token(7)}{END_SPEECH}", add_special_tokens=False)[
        "input_ids"
    ]
    assert start + 3 in ids and start + 7 in ids and tokenizer.convert_tokens_to_ids(BEGIN_SPEECH) in ids
    assert model.config.audio_marker_ids == [tokenizer.convert_tokens_to_ids(BEGIN_SPEECH)]
    # new rows: near the mean of the old ones, not identical (seeded noise), and reproducible
    embeddings = model.model.embed_tokens.weight.detach()
    mean = embeddings[:before].mean(0)
    assert not torch.equal(embeddings[start], embeddings[start + 1])
    assert float((embeddings[start:] - mean).abs().max()) < float((embeddings[:before] - mean).abs().max())
    again, _ = graft(*load_base(str(base_folder), ""), SETTINGS, units=20, seed=0)
    assert torch.equal(again.model.embed_tokens.weight, embeddings)


def test_unit_rows_from_centroids_keep_the_centroids_geometry(base_folder, tmp_path):
    """`unit_embedding_init: centroids`: unit input and output rows are the centroids on their
    principal directions (all 6 fit in the hidden size, so distances are kept up to one scale), at
    the base rows' mean norm; every other new row is as with noise."""
    from most.model.graft import unit_centroids
    from most.speech.units import UnitTokenizer

    centroids = torch.randn(20, 6, generator=torch.Generator().manual_seed(3)) * torch.linspace(0.5, 3, 6)
    noise, layout_ = graft(*load_base(str(base_folder), ""), SETTINGS, units=20, seed=0)
    model, _ = graft(*load_base(str(base_folder), ""), {**SETTINGS, "unit_centroids": centroids}, units=20, seed=0)
    start = layout_["audio_token_start"]
    off_diagonal = ~torch.eye(20, dtype=torch.bool)
    for rows, untouched in (
        (model.model.embed_tokens.weight, noise.model.embed_tokens.weight),
        (model.lm_head.weight, noise.lm_head.weight),
    ):
        rows, units = rows.detach(), rows.detach()[start : start + 20]
        ratio = torch.cdist(units.double(), units.double()) / torch.cdist(centroids.double(), centroids.double()).clamp_min(1e-12)
        assert torch.allclose(ratio[off_diagonal], ratio[off_diagonal].mean(), rtol=1e-4)
        assert float(units.norm(dim=1).mean()) == pytest.approx(float(rows[:start].norm(dim=1).mean()), rel=1e-5)
        assert torch.equal(rows[:start], untouched[:start]) and torch.equal(rows[start + 20 :], untouched[start + 20 :])  # markers, tags
    # the stage reads the centroids of the unit tokenizer, and refuses one of another k
    UnitTokenizer(
        {"features": "logmel", "frame_rate_hz": 25, "window_ms": 64, "n_mels": 80}, centroids, torch.zeros(6), torch.ones(6)
    ).save(tmp_path / "kmeans")
    assert torch.equal(unit_centroids(tmp_path / "kmeans", 20), centroids)
    with pytest.raises(ValueError, match="holds 20 centroids, but the tokens were made with k = 16"):
        unit_centroids(tmp_path / "kmeans", 16)


def test_a_continuous_graft_normalises_frames_with_the_corpus_statistics(base_folder, tmp_path):
    stats = {"mean": torch.linspace(-1, 1, 6), "std": torch.linspace(0.5, 2, 6)}
    with pytest.raises(ValueError, match="needs the cached features"):
        graft(*load_base(str(base_folder), ""), {**SETTINGS, "speech_input": "continuous"}, units=20, seed=0)
    model, token_layout = graft(*load_base(str(base_folder), ""), {**SETTINGS, "speech_input": "continuous"}, 20, 0, stats)
    assert model.config.speech_input == "continuous" and model.config.speech_frame_id == token_layout["speech_frame_id"]
    projector = model.model.speech_projector
    assert torch.equal(projector.feature_mean, stats["mean"]) and torch.equal(projector.feature_std, stats["std"])
    again, _ = graft(*load_base(str(base_folder), ""), {**SETTINGS, "speech_input": "continuous"}, 20, 0, stats)
    assert torch.equal(again.model.speech_projector.linear_in.weight, projector.linear_in.weight)  # seeded
    model.save_pretrained(tmp_path / "model")
    loaded = MoSTForCausalLM.from_pretrained(tmp_path / "model")
    assert torch.equal(loaded.model.speech_projector.feature_std, stats["std"])
    # a units graft keeps the projector (an ablation may load it as continuous), unused
    units_model, _ = graft(*load_base(str(base_folder), ""), SETTINGS, 20, 0, stats)
    assert units_model.config.speech_input == "units" and units_model.model.speech_projector is not None


def text_logits(model, tokenizer, vocab: int, routing: str | None = None) -> torch.Tensor:
    """Logits over the base vocabulary on the real tokens of a few texts, routers optionally switched."""
    if routing is not None:
        for router in (module for module in model.modules() if isinstance(module, MoSTRouter)):
            router.routing = routing
    ids = tokenizer(TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"]).logits[..., :vocab]
    return logits[ids["attention_mask"].bool()]


@pytest.mark.parametrize("assignment", ["usage", "duplicate"])
def test_other_expert_assignments(base_folder, assignment):
    base, tokenizer = load_base(str(base_folder), "")
    model, _ = graft(base, tokenizer, {**SETTINGS, "expert_assignment": assignment, "routing": "masked_softmax"}, units=20, seed=0)
    layer = next(layer for layer in model.model.layers if hasattr(layer.mlp, "experts"))
    base_layer = next(layer for layer in base.model.layers if hasattr(layer.mlp, "experts"))
    ours, theirs = layer.mlp.experts.gate_up_proj, base_layer.mlp.experts.gate_up_proj
    if assignment == "duplicate":
        assert model.config.n_routed_experts == 16 and model.config.expert_copies == 2
        assert torch.equal(ours[:8], theirs) and torch.equal(ours[8:], theirs)
    else:
        # per layer, a permutation of the base experts with the ones text uses most in the text group
        from most.model.graft import text_usage

        usage = text_usage(*load_base(str(base_folder), ""), TEXTS)[0]
        source = [next(j for j in range(8) if torch.equal(ours[i], theirs[j])) for i in range(8)]
        assert sorted(source) == list(range(8))
        assert min(usage[source[:4]]) >= max(usage[source[4:]]) and usage.sum() > 0
        assert torch.equal(layer.mlp.gate.weight, base_layer.mlp.gate.weight[source])


@pytest.mark.parametrize("routing", ["official", "masked_softmax", "plain"])
def test_a_duplicate_graft_reproduces_the_base_under_official_masked_and_plain_routing(base_folder, routing):
    """Text tokens see exactly the base's experts and routing: `official` scales its masked softmax
    over both copies back to the base's mass, `plain` routes over the originals, `masked_softmax`
    needs neither. The graft report's plain-routing parity therefore holds for `duplicate` too."""
    base, tokenizer = load_base(str(base_folder), "")
    if routing == "official" and base.config.norm_topk_prob:
        pytest.skip("official routing never renormalises its top-k: it reproduces only a base that does not (DeepSeek-V2)")
    vocab = base.config.vocab_size
    expected = text_logits(base, tokenizer, vocab)
    model, _ = graft(base, tokenizer, {**SETTINGS, "expert_assignment": "duplicate", "routing": routing}, units=20, seed=0)
    torch.testing.assert_close(text_logits(model, tokenizer, vocab), expected, rtol=1e-5, atol=1e-5)
    measured = base_measurements(*load_base(str(base_folder), ""), TEXTS)
    assert plain_logit_difference(model, measured) <= 1e-5
    if routing != "masked_softmax":  # without the correction: halved routed weights, or an expert and its copy
        for router in (module for module in model.modules() if isinstance(module, MoSTRouter)):
            router.expert_copies = 1
        assert float((text_logits(model, tokenizer, vocab, routing) - expected).abs().max()) > 1e-3


def test_a_usage_graft_reproduces_the_base_under_plain_routing(base_folder):
    model, _ = graft(*load_base(str(base_folder), ""), {**SETTINGS, "expert_assignment": "usage"}, units=20, seed=0)
    assert plain_logit_difference(model, base_measurements(*load_base(str(base_folder), ""), TEXTS)) <= 1e-5


def test_the_grafted_model_saves_loads_and_generates(base_folder, tmp_path):
    base, tokenizer = load_base(str(base_folder), "")
    model, _ = graft(base, tokenizer, SETTINGS, units=20, seed=0)
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    loaded = MoSTForCausalLM.from_pretrained(tmp_path / "m")
    prompt = tokenizer(["the cook finds"], return_tensors="pt")["input_ids"]
    out = loaded.generate(prompt, max_new_tokens=5, do_sample=False)
    assert out.shape == (1, prompt.shape[1] + 5)
    assert torch.equal(loaded(input_ids=prompt).logits, model(input_ids=prompt).logits)


def test_an_unsupported_base_is_refused(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = train_tokenizer(TEXTS, 300)
    LlamaForCausalLM(
        LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2)
    ).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="graft supports deepseek_v2 and qwen2_moe"):
        load_base(str(tmp_path), "")


def test_every_grafted_parameter_belongs_to_a_trainable_group(base_folder):
    from most.train.freezing import select_trainable

    model, _ = graft(*load_base(str(base_folder), ""), SETTINGS, units=20, seed=0)
    everything = select_trainable(model, ["all"])
    assert len(everything.whole) == len(list(model.parameters())) and not everything.partial
    select_trainable(model, ["experts.shared", "routers"])
    names = {name for name, p in model.named_parameters() if p.requires_grad}
    assert names and all(".mlp.shared_expert" in name or ".mlp.gate." in name for name in names)


def test_a_graft_written_in_shards_loads_in_transformers_and_equals_the_in_memory_graft(base_folder, tmp_path):
    """The stage's path (`write_graft`, tensor by tensor, shards and index past `max_shard_bytes`)
    gives the same weights as `graft()`, readable by transformers' own `from_pretrained`."""
    from most.model.checkpoint_files import INDEX, CheckpointFiles
    from most.model.graft import _load_graft, write_graft
    from most.model.graft import base_folder as folder_of

    base, tokenizer = load_base(str(base_folder), "")
    expected, _ = graft(base, load_base(str(base_folder), "")[1], SETTINGS, units=20, seed=0)
    write_graft(folder_of(str(base_folder), ""), tmp_path / "g", base.config, tokenizer, SETTINGS, 20, 0, None, None, 20_000)
    shards = sorted(path.name for path in (tmp_path / "g").glob("*.safetensors"))
    assert len(shards) > 2 and (tmp_path / "g" / INDEX).is_file() and len(CheckpointFiles(tmp_path / "g").names()) > 10
    ours, theirs = _load_graft(tmp_path / "g"), MoSTForCausalLM.from_pretrained(tmp_path / "g")
    for name, tensor in expected.state_dict().items():
        assert torch.equal(ours.state_dict()[name], tensor), name
        assert torch.equal(theirs.state_dict()[name], tensor), name
