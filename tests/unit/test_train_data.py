"""Task formatting (the loss mask) and task mixing (ratios, token budget, resumable state)."""

import collections

import pytest

from most.model import layout
from most.model.pretrain_base import train_tokenizer
from most.train.mixing import MixedBatches
from most.train.tasks import IGNORE, Formatter

TEMPLATES = {
    "asr": {"prompt": "{tag}{speech}", "response": "{text}"},
    "tts": {"prompt": "{tag}{text}", "response": "{speech}"},
    "text_lm": {"prompt": "{tag}", "response": "{text}"},
    "spoken_qa": {"prompt": "{tag}{speech} answer:", "response": " {response}"},
}


@pytest.fixture(scope="module")
def formatter():
    tokenizer = train_tokenizer(["the cook finds some cups", "what is two plus two", "four"] * 5, 300)
    token_layout = layout.extend_tokenizer(tokenizer, 16)
    return Formatter(tokenizer, TEMPLATES, token_layout["audio_token_start"])


ROW = {"id": "r1", "text": "the cook finds some cups", "response": "four", "units": [3, 9, 4]}


@pytest.mark.parametrize("task", sorted(TEMPLATES))
def test_the_loss_covers_exactly_the_response(formatter, task):
    ids, labels = formatter.example(task, ROW)
    tokenizer = formatter.tokenizer
    prompt = formatter.prompt(task, ROW)
    assert ids[: len(prompt)] == prompt and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert labels[len(prompt) :] == ids[len(prompt) :]
    response = formatter.pieces(TEMPLATES[task]["response"], task, ROW)
    assert ids[len(prompt) :] == [*response, tokenizer.eos_token_id]
    assert ids[1] == tokenizer.convert_tokens_to_ids(layout.task_tag(task))


def test_speech_is_wrapped_unit_ids(formatter):
    ids, labels = formatter.example("tts", ROW)
    begin = formatter.tokenizer.convert_tokens_to_ids(layout.BEGIN_SPEECH)
    end = formatter.tokenizer.convert_tokens_to_ids(layout.END_SPEECH)
    start = ids.index(begin)
    assert ids[start : start + 5] == [begin, *(formatter.audio_token_start + u for u in (3, 9, 4)), end]
    assert labels[start] == begin  # TTS learns to open and close the speech span
    assert formatter.tokenizer.decode(ids[ids.index(end) + 1 : -1]) == ""


def test_a_row_without_units_is_named(formatter):
    with pytest.raises(ValueError, match="row r2 has no units"):
        formatter.example("asr", {"id": "r2", "text": "x", "units": []})


def test_ratios_hold_within_two_percent_over_10k_draws():
    ratios = {"asr": 0.4, "tts": 0.4, "text_lm": 0.2}
    batches = MixedBatches({t: [10] * 50 for t in ratios}, ratios, tokens_per_batch=100, seed=3)
    counts = collections.Counter(batches.draw_task() for _ in range(10_000))
    for task, ratio in ratios.items():
        assert abs(counts[task] / 10_000 - ratio) <= 0.02, counts


def test_batches_respect_the_token_budget_and_bucket_by_length():
    lengths = {"asr": [5 + (i * 7) % 60 for i in range(200)], "text_lm": [3 + (i * 5) % 20 for i in range(200)]}
    batches = MixedBatches(lengths, {"asr": 0.5, "text_lm": 0.5}, tokens_per_batch=128, seed=0)
    padding, real = 0, 0
    for _ in range(200):
        batch = batches.next_batch()
        sizes = [lengths[t][i] for t, i in batch]
        assert max(sizes) * len(sizes) <= 128 or len(sizes) == 1
        padding += max(sizes) * len(sizes) - sum(sizes)
        real += sum(sizes)
    assert padding / real < 0.15  # sorted pools keep padding small


def test_a_restored_sampler_continues_identically():
    lengths = {"asr": list(range(5, 45)), "tts": list(range(8, 60))}
    straight = MixedBatches(lengths, {"asr": 0.5, "tts": 0.5}, tokens_per_batch=120, seed=7)
    expected = [straight.next_batch() for _ in range(30)]
    first = MixedBatches(lengths, {"asr": 0.5, "tts": 0.5}, tokens_per_batch=120, seed=7)
    drawn = [first.next_batch() for _ in range(12)]
    import json

    state = json.loads(json.dumps(first.state_dict()))  # checkpoints store it as JSON
    resumed = MixedBatches(lengths, {"asr": 0.5, "tts": 0.5}, tokens_per_batch=120, seed=999)
    resumed.load_state_dict(state)
    drawn += [resumed.next_batch() for _ in range(18)]
    assert drawn == expected


def test_a_task_without_examples_is_named():
    with pytest.raises(ValueError, match=r"no training examples for task\(s\) \['tts'\]"):
        MixedBatches({"asr": [3]}, {"asr": 0.5, "tts": 0.5}, 100, 0)
