"""The training loop: it learns, and a run stopped and resumed from its checkpoint ends with identical weights."""

import torch

from most.model import MoSTForCausalLM
from most.train.loop import LoopSettings, latest_checkpoint, train
from most.train.mixing import MixedBatches
from tests.unit.test_model import UNIT_START, tiny_config


def examples():
    generator = torch.Generator().manual_seed(0)
    data = {"asr": [], "text_lm": []}
    for _ in range(40):
        units = torch.randint(UNIT_START, UNIT_START + 20, (6,), generator=generator).tolist()
        words = [u - UNIT_START + 10 for u in units]  # a learnable mapping units -> "words"
        data["asr"].append(([1, *units, *words, 2], [-100] * 7 + words + [2]))
        text = torch.randint(10, 30, (8,), generator=generator).tolist()
        data["text_lm"].append(([1, *text, 2], [-100, *text, 2]))
    return data


SETTINGS = LoopSettings(
    steps=20,
    tokens_per_batch=96,
    learning_rate=3e-3,
    warmup_steps=3,
    weight_decay=0.01,
    grad_clip=1.0,
    checkpoint_every=5,
    keep_checkpoints=2,
    seed=0,
)


def fresh(tmp):
    torch.manual_seed(0)
    model = MoSTForCausalLM(tiny_config(aux_loss_alpha=0.01))
    data = examples()
    lengths = {task: [len(ids) for ids, _ in rows] for task, rows in data.items()}
    return model, data, MixedBatches(lengths, {"asr": 0.5, "text_lm": 0.5}, SETTINGS.tokens_per_batch, seed=1)


def test_stopped_and_resumed_training_equals_straight_training(tmp_path):
    model, data, batches = fresh(tmp_path)
    logged = []
    progress = train(model, data, batches, SETTINGS, tmp_path / "straight", pad_id=0, on_step=lambda s, m: logged.append((s, m)))
    assert [s for s, _ in logged] == list(range(1, 21))
    assert progress["loss_end"]["asr"] < progress["loss_start"]["asr"]
    keys = {key for _, metrics in logged for key in metrics}
    assert {"loss.asr", "loss.text_lm", "lr", "tokens_per_second", "aux_loss.text", "aux_loss.audio"} <= keys
    assert any(key.startswith("expert_entropy.audio.layer") for key in keys)
    # only the newest `keep_checkpoints` remain, each complete
    assert sorted(p.name for p in (tmp_path / "straight").iterdir()) == ["step_15", "step_20"]

    first, data, batches = fresh(tmp_path)
    train(first, data, batches, SETTINGS, tmp_path / "resumed", pad_id=0, stop_after=10)
    assert latest_checkpoint(tmp_path / "resumed").name == "step_10"
    second, data, batches = fresh(tmp_path)  # a new process: fresh weights, fresh sampler
    train(second, data, batches, SETTINGS, tmp_path / "resumed", pad_id=0)
    for (name, a), (_, b) in zip(model.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_an_unfinished_checkpoint_is_never_resumed(tmp_path):
    model, data, batches = fresh(tmp_path)
    train(model, data, batches, SETTINGS, tmp_path / "run", pad_id=0, stop_after=5)
    (tmp_path / "run" / ".step_10.tmp-crashed").mkdir()  # what a crash mid-write leaves
    assert latest_checkpoint(tmp_path / "run").name == "step_5"
