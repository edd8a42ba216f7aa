"""Task formatting (the loss mask) and task mixing (ratios, token budget, resumable state)."""

import collections
import dataclasses
import re
from pathlib import Path

import pytest
import torch

from most.model import layout
from most.model.base_lm import train_tokenizer
from most.train.data import speech_runs
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
    ids, labels, speech = formatter.example(task, ROW)
    assert speech is None  # units: no frames
    tokenizer = formatter.tokenizer
    prompt = formatter.prompt(task, ROW)
    assert ids[: len(prompt)] == prompt and ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
    assert labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert labels[len(prompt) :] == ids[len(prompt) :]
    response = formatter.pieces(TEMPLATES[task]["response"], task, ROW)
    assert ids[len(prompt) :] == [*response, tokenizer.eos_token_id]
    assert ids[1] == tokenizer.convert_tokens_to_ids(layout.task_tag(task))


@pytest.mark.parametrize("task", ["asr", "tts", "spoken_qa", "text_qa", "speech_lm"])
def test_the_paper_configs_natural_language_prompts_carry_their_words_and_no_tag(task):
    from most import config

    templates = config.load(Path(__file__).parents[2] / "config" / "paper.yaml")["tasks"]["templates"]
    words = [piece for piece in re.split(r"\{\w+\}", templates[task]["prompt"]) if piece.strip()]
    tokenizer = train_tokenizer(["transcribe the following speech into text output user assistant"] * 5 + [ROW["text"]] * 5, 300)
    token_layout = layout.extend_tokenizer(tokenizer, 16)
    paper = Formatter(tokenizer, templates, token_layout["audio_token_start"])
    ids, labels, _ = paper.example(task, ROW)
    prompt = paper.prompt(task, ROW)
    text = tokenizer.decode(prompt, skip_special_tokens=False)
    assert all(word.strip() in text for word in words)  # the instruction's words, in order of the template
    assert tokenizer.convert_tokens_to_ids(layout.task_tag(task)) not in ids
    assert labels[: len(prompt)] == [IGNORE] * len(prompt) and labels[len(prompt) :] == ids[len(prompt) :]
    if task in ("spoken_qa", "text_qa"):  # asked in the instruction format the paper's stage 2 trains
        instruction = "spoken_instruction" if task == "spoken_qa" else "text_instruction"
        assert paper.prompt(task, ROW) == paper.prompt(instruction, ROW)


def test_speech_is_wrapped_unit_ids(formatter):
    ids, labels, _ = formatter.example("tts", ROW)
    begin = formatter.tokenizer.convert_tokens_to_ids(layout.BEGIN_SPEECH)
    end = formatter.tokenizer.convert_tokens_to_ids(layout.END_SPEECH)
    start = ids.index(begin)
    assert ids[start : start + 5] == [begin, *(formatter.audio_token_start + u for u in (3, 9, 4)), end]
    assert labels[start] == begin  # TTS learns to open and close the speech span
    assert formatter.tokenizer.decode(ids[ids.index(end) + 1 : -1]) == ""


def test_continuous_input_puts_one_frame_position_per_encoder_frame_in_prompts_only(formatter):
    frame_id = formatter.tokenizer.convert_tokens_to_ids(layout.SPEECH_FRAME)
    continuous = dataclasses.replace(formatter, speech_frame_id=frame_id)
    frames = torch.randn(5, 7)
    row = {**ROW, "speech_frames": frames}
    ids, labels, speech = continuous.example("asr", row)
    begin = ids.index(formatter.tokenizer.convert_tokens_to_ids(layout.BEGIN_SPEECH))
    assert ids[begin + 1 : begin + 6] == [frame_id] * 5 and ids[begin + 6] == formatter.tokenizer.convert_tokens_to_ids(layout.END_SPEECH)
    assert torch.equal(speech, frames) and all(label == IGNORE for label in labels[: begin + 7])
    # speech output stays units: the TTS response is unit ids, its prompt has no frames
    ids, _, speech = continuous.example("tts", row)
    assert speech is None and frame_id not in ids and formatter.audio_token_start + 3 in ids
    with pytest.raises(ValueError, match="row r3 has no encoder frames"):
        continuous.example("asr", {**ROW, "id": "r3"})


def test_speech_lm_examples_join_two_to_five_utterances_of_one_voice():
    rows = [{"id": f"{voice}{i}", "speaker": voice, "units": [i, i + 1]} for voice in ("a", "b") for i in range(9)]
    runs = speech_runs(rows)
    # the sizes cycle across voices; a voice's last run takes what is left (never a single utterance)
    assert [len(run["id"].split("+")) for run in runs] == [2, 3, 4, 5, 2, 2]
    for run in runs:
        parts = run["id"].split("+")
        assert {part[0] for part in parts} == {run["speaker"]} and run["task"] == "speech_lm"
        # a unit repeated across a join is kept once: [0, 1] + [1, 2] -> [0, 1, 2]
        first = int(parts[0][1:])
        assert run["units"] == list(range(first, first + len(parts) + 1))


def test_tts_learns_the_output_voice_where_the_corpus_has_one_else_the_asr_recordings(tmp_path):
    import datasets

    from most.train.data import task_rows

    def write(split, rows):
        datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "tokens" / split))

    row = {"text": "a b", "units": [1, 2], "speaker": "s"}
    write("train", [{**row, "id": "a1", "task": "asr"}, {**row, "id": "t1", "task": "tts"}, {**row, "id": "a2", "task": "asr"}])
    write("dev", [{**row, "id": "a3", "task": "asr"}])
    found = task_rows(["asr", "tts"], "train", tmp_path / "tokens", tmp_path / "prepare")
    assert [r["id"] for r in found["asr"]] == ["a1", "a2"] and [r["id"] for r in found["tts"]] == ["t1"]
    # a split without output-voice recordings (hub corpora): TTS speaks like the ASR recordings
    assert [r["id"] for r in task_rows(["tts"], "dev", tmp_path / "tokens", tmp_path / "prepare")["tts"]] == ["a3"]


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


def test_speech_with_words_puts_each_word_just_before_the_units_where_it_starts(formatter):
    worded = dataclasses.replace(formatter, templates={**TEMPLATES, "tts": {"prompt": "{tag}{text}", "response": "{speech_with_words}"}})
    # "the cook finds some cups": "finds" starts on no unit of its own, so it joins "cook"
    row = {**ROW, "units": [3, 9, 4, 7, 1], "word_units": [0, 2, -1, 3, 4]}
    ids, labels, _ = worded.example("tts", row)
    begin = ids.index(formatter.tokenizer.convert_tokens_to_ids(layout.BEGIN_SPEECH))
    end = ids.index(formatter.tokenizer.convert_tokens_to_ids(layout.END_SPEECH))

    def units(*chosen):
        return [formatter.audio_token_start + unit for unit in chosen]

    text = formatter._text
    assert ids[begin + 1 : end] == text("the") + units(3, 9) + text(" cook finds") + units(4) + text(" some") + units(7) + text(
        " cups"
    ) + units(1)
    assert labels[begin:] == ids[begin:]  # the words are learned with the units
    assert [word for words in formatter.spoken_words(row["text"]) for word in words] == text(row["text"])
    for broken in ({**row, "word_units": []}, {**row, "word_units": [0, 2]}):
        with pytest.raises(ValueError, match=r"task tts: row r1 has no word times for \{speech_with_words\}"):
            worded.example("tts", broken)
