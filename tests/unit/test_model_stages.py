"""pretrain_base and graft as stages: a small text corpus in, a loadable MoST checkpoint and its report out."""

import json

import pytest
import torch

from most import config
from most.model import MoSTForCausalLM
from most.model.layout import BEGIN_SPEECH, unit_token
from most.speech import feature_store
from most.speech.units import UnitTokenizer
from most.stages import graft, pretrain_base
from tests.conftest import tiny_config

WORDS = ["the cook", "my sister", "anna", "three birds", "the farmer"]
ACTIONS = ["walks to the park", "sells green baskets", "sits near the river", "washes the old plates", "keeps the blue kite"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    texts = [f"{who} {what}" for who in WORDS for what in ACTIONS]
    row = {
        "audio": "",
        "duration": 1.0,
        "speaker": "s",
        "task": "asr",
        "source": "t",
        "response": "",
        "answers": [],
        "pair_id": "",
        "label": "",
    }
    manifests = root / "prepare" / "manifests"
    manifests.mkdir(parents=True)
    for split, chosen in (("train", texts[:20]), ("dev", texts[20:])):
        lines = [json.dumps({**row, "id": f"{split}-{i}", "text": text, "split": split}) for i, text in enumerate(chosen)]
        (manifests / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    (root / "tokens").mkdir()
    (root / "tokens" / "tokenize_report.json").write_text(json.dumps({"k": 12}))
    (root / "features").mkdir()
    feature_store.save_stats(root / "features", [torch.randn(40, 6, generator=torch.Generator().manual_seed(0))])
    centroids = torch.randn(12, 6, generator=torch.Generator().manual_seed(1))
    UnitTokenizer(tiny_config()["units"], centroids, torch.zeros(6), torch.ones(6)).save(root / "kmeans")
    return root


def stage_config():
    cfg = tiny_config()
    cfg["base_lm"].update(tokenizer_vocab_size=300, hidden_size=32, num_layers=2, steps=30, batch_size=8, learning_rate=0.01)
    cfg["model"].update(calibration_sentences=10, eval_sentences=5)
    config.validate(cfg)
    return cfg


def test_pretrain_then_graft(corpus, tmp_path):
    cfg = stage_config()
    inputs = {"prepare": corpus / "prepare"}
    result = pretrain_base.run(config.view(cfg, "pretrain_base"), inputs, {"base_lm": tmp_path / "base_lm"})
    report = json.loads((tmp_path / "base_lm" / "pretrain_report.json").read_text())
    assert report["loss_end"] < report["loss_start"] and report["held_out_perplexity"] > 1
    assert result.history[0][0] == 1 and result.history[-1][0] == 30
    assert (tmp_path / "base_lm" / "model.safetensors").is_file() and (tmp_path / "base_lm" / "tokenizer.json").is_file()
    # a CPU rerun gives the same weights
    pretrain_base.run(config.view(cfg, "pretrain_base"), inputs, {"base_lm": tmp_path / "again"})
    assert (tmp_path / "again" / "model.safetensors").read_bytes() == (tmp_path / "base_lm" / "model.safetensors").read_bytes()

    grafted = graft.run(
        config.view(cfg, "graft"),
        {
            **inputs,
            "tokens": corpus / "tokens",
            "features": corpus / "features",
            "kmeans": corpus / "kmeans",
            "base_lm": tmp_path / "base_lm",
        },
        {"graft": tmp_path / "graft"},
    )
    report = json.loads((tmp_path / "graft" / "report.json").read_text())
    assert report["plain_matches_base"] is True and grafted.metrics["plain_max_logit_difference"] <= 1e-5
    assert report["base_perplexity"] > 1 and report["most_perplexity"] > 1 and report["audio_token_count"] == 12
    # unit input by default; the graft builds the projector from the cached features all the same (an ablation may use it)
    assert report["speech_input"] == "units" and report["speech_feature_dim"] == 6
    model = MoSTForCausalLM.from_pretrained(tmp_path / "graft" / "model")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "graft" / "model")
    assert tokenizer.convert_tokens_to_ids(unit_token(11)) == report["audio_token_start"] + 11
    prompt = tokenizer([f"the cook {BEGIN_SPEECH}"], return_tensors="pt", add_special_tokens=False)["input_ids"]
    assert model.generate(prompt, max_new_tokens=4, do_sample=False).shape[1] == prompt.shape[1] + 4


def test_graft_refuses_a_hub_base_it_cannot_reach(corpus, tmp_path, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # no retries against an unreachable hub
    cfg = stage_config()
    cfg["model"]["base"] = "nobody/no-such-model"
    with pytest.raises(ValueError, match="model.base: cannot load 'nobody/no-such-model'"):
        graft.run(
            config.view(cfg, "graft"),
            {
                "prepare": corpus / "prepare",
                "tokens": corpus / "tokens",
                "features": corpus / "features",
                "kmeans": corpus / "kmeans",
                "base_lm": tmp_path,
            },
            {"graft": tmp_path / "g"},
        )
    assert not (tmp_path / "g").exists()


def test_the_graft_report_differs_by_routing(corpus, tmp_path):
    cfg = stage_config()
    pretrain_base.run(config.view(cfg, "pretrain_base"), {"prepare": corpus / "prepare"}, {"base_lm": tmp_path / "base_lm"})
    perplexities = {}
    for routing in ("official", "plain"):
        cfg["model"]["routing"] = routing
        inputs = {
            "prepare": corpus / "prepare",
            "tokens": corpus / "tokens",
            "features": corpus / "features",
            "kmeans": corpus / "kmeans",
            "base_lm": tmp_path / "base_lm",
        }
        graft.run(config.view(cfg, "graft"), inputs, {"graft": tmp_path / routing})
        perplexities[routing] = json.loads((tmp_path / routing / "report.json").read_text())
    plain = perplexities["plain"]
    assert plain["most_perplexity"] == pytest.approx(plain["base_perplexity"], rel=1e-6)
    assert perplexities["official"]["most_perplexity"] != pytest.approx(plain["base_perplexity"], rel=1e-6)
