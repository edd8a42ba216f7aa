"""A training step of the MoE model never waits on the host through `nonzero`, and reads values back
(`item`) no more often than transformers' own DeepseekV2ForCausalLM at the same shapes. On a GPU each
of those is a stream synchronisation; the CPU profiler counts the same calls."""

from collections import Counter

import pytest
import torch
import yaml
from torch.profiler import ProfilerActivity, profile
from transformers import DeepseekV2ForCausalLM

from most.model.base_lm import base_config, train_tokenizer
from most.model.graft import graft
from most.model.sequences import collate, model_inputs, row_losses
from tests.unit.test_graft import SETTINGS, TEXTS

HOST_READS = ("aten::_local_scalar_dense", "aten::item")


def embedded_models(routing: str):
    """transformers' DeepseekV2 at the embedded base's shapes (config/config.yaml `base_lm`) and its MoST graft."""
    shapes = yaml.safe_load(open("config/config.yaml"))["base_lm"]
    tokenizer = train_tokenizer(TEXTS * 10, shapes["tokenizer_vocab_size"])
    torch.manual_seed(0)
    config = base_config(shapes, tokenizer)
    config._experts_implementation = "grouped_mm"
    base = DeepseekV2ForCausalLM(config)
    with torch.no_grad():
        for name, parameter in base.named_parameters():
            if name.endswith("gate.weight"):
                parameter.normal_(0, 1.0)
    most, _ = graft(base, tokenizer, {**SETTINGS, "routing": routing}, units=256, seed=0)
    return base.train(), most.train(), tokenizer


def training_batch(tokenizer, units_start: int) -> dict:
    """Rows of text then speech units, of different lengths (padding, as training batches have)."""
    generator = torch.Generator().manual_seed(0)
    rows = []
    for length in (40, 64, 52, 64):
        text = tokenizer(TEXTS[length % 5], add_special_tokens=False)["input_ids"]
        units = torch.randint(units_start, units_start + 256, (length - len(text),), generator=generator).tolist()
        rows.append((text + units, text + units))
    return collate(rows, tokenizer.pad_token_id)


def counted(step) -> Counter:
    step()  # warm-up: one-time work (caches, lazy init) is not per step
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        step()
    return Counter(event.name for event in profiler.events())


@pytest.mark.parametrize("routing", ["official", "plain"])
def test_a_training_step_has_no_nonzero_and_no_more_host_reads_than_transformers(routing):
    base, most, tokenizer = embedded_models(routing)
    batch = training_batch(tokenizer, most.config.audio_token_start)

    def ours():  # as the training loop runs it: routing statistics, balance loss, per-row losses
        out = most(**model_inputs(batch), output_routing_stats=True)
        sums, counts = row_losses(out.logits, batch["labels"])
        (sums.sum() / counts.sum() + most.config.aux_loss_alpha * out.aux_loss).backward()

    vocab = base.config.vocab_size  # the same shapes in the base's vocabulary (it has no unit tokens)
    text_only = {
        **batch,
        "input_ids": batch["input_ids"] % vocab,
        "labels": batch["labels"].where(batch["labels"] < 0, batch["labels"] % vocab),
    }

    def theirs():
        base(**model_inputs(text_only), labels=text_only["labels"]).loss.backward()

    mine, reference = counted(ours), counted(theirs)
    assert mine["aten::nonzero"] == 0, mine["aten::nonzero"]
    assert sum(mine[name] for name in HOST_READS) <= sum(reference[name] for name in HOST_READS), (
        {name: mine[name] for name in HOST_READS},
        {name: reference[name] for name in HOST_READS},
    )
    assert mine["aten::_grouped_mm"] > 0  # the step ran the grouped experts the counts are about
