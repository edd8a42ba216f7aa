"""Task formatting: one place that turns a corpus row into (input ids, labels) for training and evaluation.

A template (config `tasks.templates.<task>`) has a `prompt` and a `response`, each a string with
placeholders: `{text}` (the row's text), `{response}` (its answer), `{speech}` (the row's speech,
wrapped in begin/end-of-speech markers), `{speech_with_words}` (the same, with each word of the text
just before the units where that word starts: `<bos_speech> w1 u u u w2 u u ... <eos_speech>`) and
`{tag}` (the task's tag token). The sequence is BOS + prompt + response + EOS; the loss covers the
response and EOS only.

`{speech_with_words}` needs the row's `word_units` (from the word times synthesis records; see
`most.stages.tokenize`). Unit and text ids are disjoint, so the words need no markers of their own;
a model trained so is given each word when it speaks and itself ends the word's units
(`most.evaluate.generate.Checkpoint.generate_units`).

Speech in a response is always units (speech output is discrete). Speech in a prompt is units too,
or, for a model with continuous speech input (MoST-C), one `<|speech_frame|>` per encoder frame of
the row (`speech_frames`), whose embedding the model replaces by the projected frame.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NamedTuple

import torch

from most.model.layout import BEGIN_SPEECH, END_SPEECH, task_tag
from most.model.sequences import IGNORE

_PLACEHOLDER = re.compile(r"\{(text|response|speech_with_words|speech|tag)\}")
SPEECH_WITH_WORDS = "{speech_with_words}"


class Example(NamedTuple):
    ids: list[int]
    labels: list[int]
    speech: torch.Tensor | None = None  # encoder frames of the speech-frame positions, in order (continuous input)


@dataclass(frozen=True)
class Formatter:
    tokenizer: object
    templates: dict[str, dict[str, str]]
    audio_token_start: int
    speech_frame_id: int | None = None  # set: prompts carry speech as encoder frames (continuous input)

    @classmethod
    def for_model(cls, tokenizer, templates: dict, config) -> Formatter:
        """The formatter of a MoST model: its unit ids, and frames for prompts if its speech input is continuous."""
        frame_id = config.speech_frame_id if config.speech_input == "continuous" else None
        return cls(tokenizer, templates, config.audio_token_start, frame_id)

    def pieces(self, template: str, task: str, row: dict, frames: list | None = None) -> list[int]:
        """Token ids of one template string: text pieces through the tokenizer, units as ids; with a
        `frames` list (a prompt of a continuous-input model), speech as frame positions, its frames appended to the list."""
        ids: list[int] = []
        position = 0
        for match in _PLACEHOLDER.finditer(template):
            ids += self._text(template[position : match.start()])
            name = match.group(1)
            if name == "speech" and frames is not None:
                speech = row.get("speech_frames")
                if speech is None or not len(speech):
                    raise ValueError(f"task {task}: row {row.get('id', '?')} has no encoder frames for {{speech}} (continuous input)")
                ids += [self._token(BEGIN_SPEECH), *[self.speech_frame_id] * len(speech), self._token(END_SPEECH)]
                frames.append(speech)
            elif name == "speech":
                if not row.get("units"):
                    raise ValueError(f"task {task}: row {row.get('id', '?')} has no units for {{speech}}")
                ids += [self._token(BEGIN_SPEECH), *(self.audio_token_start + u for u in row["units"]), self._token(END_SPEECH)]
            elif name == "speech_with_words":
                ids += [self._token(BEGIN_SPEECH), *self._units_after_words(task, row), self._token(END_SPEECH)]
            elif name == "tag":
                ids.append(self._token(task_tag(task)))
            else:
                ids += self._text(row.get(name) or "")
            position = match.end()
        return ids + self._text(template[position:])

    def example(self, task: str, row: dict) -> Example:
        """(input_ids, labels, speech frames) with labels IGNORE over BOS and the prompt."""
        prompt, speech = self.prompt_with_speech(task, row)
        response = [*self.pieces(self.templates[task]["response"], task, row), self.tokenizer.eos_token_id]
        return Example(prompt + response, [IGNORE] * len(prompt) + response, speech)

    def prompt(self, task: str, row: dict) -> list[int]:
        """The ids a model continues at evaluation: BOS + prompt (the same code as training)."""
        return self.prompt_with_speech(task, row)[0]

    def prompt_with_speech(self, task: str, row: dict) -> tuple[list[int], torch.Tensor | None]:
        """BOS + prompt, and the encoder frames of its speech-frame positions (None: units or no speech)."""
        frames: list | None = [] if self.speech_frame_id is not None else None
        ids = [self.tokenizer.bos_token_id, *self.pieces(self.templates[task]["prompt"], task, row, frames)]
        return ids, torch.cat([torch.as_tensor(f) for f in frames]) if frames else None

    def spoken_words(self, text: str) -> list[list[int]]:
        """The ids of each word of `text` as `{speech_with_words}` places it (after the first, with its space)."""
        return [self._text(word if index == 0 else f" {word}") for index, word in enumerate(text.split(" "))]

    def _units_after_words(self, task: str, row: dict) -> list[int]:
        """A row's units with each word group's ids before the units where the group starts; a word
        that starts on no unit of its own (`word_units` -1) joins the previous word's group."""
        words, starts, units = row.get("text", "").split(" "), row.get("word_units") or [], row.get("units") or []
        if not units or len(starts) != len(words):
            raise ValueError(
                f"task {task}: row {row.get('id', '?')} has no word times for {SPEECH_WITH_WORDS} "
                f"({len(starts)} word starts for {len(words)} words, {len(units)} units); use {{speech}} for data without them"
            )
        groups = [index for index, start in enumerate(starts) if start >= 0] + [len(words)]
        ends = [starts[index] for index in groups[1:-1]] + [len(units)]
        ids: list[int] = []
        for number, (first, following, end) in enumerate(zip(groups, groups[1:], ends)):
            text = " ".join(words[first:following])
            ids += self._text(text if number == 0 else f" {text}")
            ids += [self.audio_token_start + unit for unit in units[starts[first] : end]]
        return ids

    def _text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _token(self, token: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(token)
