"""posttrain and instruct on a tiny corpus: a graft in, a trained model and summary.json out."""

import json

import datasets
import pytest
import torch

from most import config
from most.model import MoSTForCausalLM
from most.speech import feature_store
from most.speech.units import UnitTokenizer
from most.stages import graft, instruct, posttrain, pretrain_base
from tests.conftest import tiny_config

SENTENCES = ["the cook finds some cups", "my sister walks to the park", "three birds sit near the river", "anna keeps the blue kite"]


@pytest.fixture(scope="module")
def grafted(tmp_path_factory):
    root = tmp_path_factory.mktemp("train")
    common = {"speaker": "s", "source": "t", "answers": [], "pair_id": "", "label": "", "durations": [1] * 6, "frames": 6}
    tokens, features = root / "tokens", root / "features"
    features.mkdir()
    for split in ("train", "dev"):
        rows = [
            {
                **common,
                "id": f"{split}-{i}",
                "text": text,
                "task": "asr",
                "split": split,
                "response": "",
                "units": [(i * 3 + j) % 12 for j in range(6)],
                # TTS speaks these rows too (no output-voice rows here), with each word before its units
                "word_units": [word if word < 6 else -1 for word in range(len(text.split()))],
            }
            for i, text in enumerate(SENTENCES)
        ]
        rows += [
            {
                **common,
                "id": f"{split}-qa",
                "text": "what is two plus two",
                "task": "spoken_qa",
                "split": split,
                "response": "four",
                "units": [1, 2, 3],
                "word_units": [0, 1, 2, -1, -1],
            }
        ]
        datasets.Dataset.from_list(rows).save_to_disk(str(tokens / split))
        # cached encoder frames (continuous input, the default): 8-d, one more frame per unit
        generator = torch.Generator().manual_seed(len(split))
        feature_store.save_split(
            features, split, [r["id"] for r in rows], [torch.randn(len(r["units"]) + 1, 8, generator=generator) for r in rows]
        )
    feature_store.save_stats(features, [torch.randn(50, 8, generator=torch.Generator().manual_seed(0))])
    (tokens / "tokenize_report.json").write_text(json.dumps({"k": 12}))
    manifests = root / "prepare" / "manifests"
    manifests.mkdir(parents=True)
    (manifests / "train.jsonl").write_text(
        "".join(json.dumps({"id": f"m{i}", "text": t, "task": "asr", "split": "train"}) + "\n" for i, t in enumerate(SENTENCES))
    )
    (manifests / "dev.jsonl").write_text(
        "".join(json.dumps({"id": f"d{i}", "text": t, "task": "asr", "split": "dev"}) + "\n" for i, t in enumerate(SENTENCES))
    )
    text = [{"id": f"t{i}", "text": t, "task": "text_lm", "split": "train", "response": ""} for i, t in enumerate(SENTENCES * 3)]
    text += [{"id": "ti", "text": "name a colour", "task": "text_instruction", "split": "train", "response": "blue"}]
    text += [{"id": "tq", "text": "what is two plus two", "task": "text_qa", "split": "train", "response": "four", "answers": ["four"]}]
    (root / "prepare" / "text").mkdir()
    (root / "prepare" / "text" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in text))
    cfg = tiny_config()
    cfg["model"]["speech_input"] = "continuous"  # the frames path (the tiny workflow runs units, and continuous too)
    cfg["base_lm"].update(tokenizer_vocab_size=300, hidden_size=32, num_layers=2, steps=20, batch_size=8)
    cfg["model"].update(calibration_sentences=4, eval_sentences=4)
    inputs = {"prepare": root / "prepare", "tokens": tokens, "features": features}
    pretrain_base.run(config.view(cfg, "pretrain_base"), inputs, {"base_lm": root / "base_lm"})
    centroids = torch.randn(12, 8, generator=torch.Generator().manual_seed(1))
    UnitTokenizer(cfg["units"], centroids, torch.zeros(8), torch.ones(8)).save(root / "kmeans")
    graft.run(config.view(cfg, "graft"), {**inputs, "kmeans": root / "kmeans", "base_lm": root / "base_lm"}, {"graft": root / "graft"})
    return root, cfg


def test_posttrain_then_instruct(grafted):
    root, cfg = grafted
    cfg["posttrain"].update(steps=30, tokens_per_batch=256, warmup_steps=3, checkpoint_every=10, dev_asr_utterances=2, max_new_tokens=8)
    cfg["instruct"].update(steps=6, tokens_per_batch=256, warmup_steps=1, checkpoint_every=5, dev_asr_utterances=2, max_new_tokens=8)
    config.validate(cfg)
    inputs = {"prepare": root / "prepare", "tokens": root / "tokens", "features": root / "features", "graft": root / "graft"}
    result = posttrain.run(config.view(cfg, "posttrain"), inputs, {"posttrain": root / "run" / "posttrain"})
    summary = json.loads((root / "run" / "posttrain" / "summary.json").read_text())
    assert summary["steps"] == 30 and summary["tokens_per_second"] > 0 and 0 <= summary["dev_asr_wer"]
    assert set(summary["loss_start"]) == {"asr", "tts", "text_lm", "text_qa", "speech_lm"}
    assert summary["loss_end"]["asr"] < summary["loss_start"]["asr"]
    history = json.loads((root / "run" / "posttrain" / "history.json").read_text())
    assert [entry["step"] for entry in history] == list(range(1, 31)) and all("loss" in entry for entry in history)
    assert set(summary["dev_loss_start"]) == {"asr", "tts", "speech_lm"}  # no dev text: text_lm has no dev loss
    assert summary["dev_loss_end"]["asr"] < summary["dev_loss_start"]["asr"]
    assert summary["examples"] == {"asr": 4, "tts": 4, "text_lm": 12, "text_qa": 1, "speech_lm": 2}  # speech_lm: the asr units, 2 by 2
    assert summary["too_long"] == {"asr": 0, "tts": 0, "text_lm": 0, "text_qa": 0, "speech_lm": 0}
    # what decides the float rounding, beside seed and threads: this process's torch and its kernels' instruction set
    assert summary["float_path"]["torch.version"] == torch.__version__
    assert summary["float_path"]["torch.cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {path.name for path in result.artifacts} == {"summary.json", "expert_load.json", "expert_load.png"}
    assert (root / "run" / "posttrain" / "expert_load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (root / "run" / "checkpoints").exists() or not any((root / "run" / "checkpoints").iterdir())  # removed once saved
    trained = MoSTForCausalLM.from_pretrained(root / "run" / "posttrain" / "model")
    grafted_model = MoSTForCausalLM.from_pretrained(root / "graft" / "model")
    assert trained.config.speech_input == "continuous"  # ASR prompts were encoder frames, and the projector trained
    assert not torch.equal(trained.model.speech_projector.linear_in.weight, grafted_model.model.speech_projector.linear_in.weight)

    cfg["instruct"]["mix"] = {"spoken_qa": 0.3, "text_instruction": 0.3, "asr": 0.2, "tts": 0.2}
    instruct.run(config.view(cfg, "instruct"), {**inputs, "posttrain": root / "run" / "posttrain"}, {"instruct": root / "run" / "instruct"})
    summary = json.loads((root / "run" / "instruct" / "summary.json").read_text())
    assert summary["steps"] == 6 and set(summary["loss_start"]) <= {"spoken_qa", "text_instruction", "asr", "tts"}


def test_a_mix_task_without_rows_is_named(grafted):
    root, cfg = grafted
    cfg["posttrain"].update(steps=2, mix={"asr": 0.5, "text_instruction": 0.0, "spoken_instruction": 0.5})
    inputs = {"prepare": root / "prepare", "tokens": root / "tokens", "features": root / "features", "graft": root / "graft"}
    with pytest.raises(ValueError, match=r"no training examples for task\(s\) \['spoken_instruction'\]"):
        posttrain.run(config.view(cfg, "posttrain"), inputs, {"posttrain": root / "x" / "posttrain"})
