"""Task formatting: one place that turns a corpus row into (input ids, labels) for training and evaluation.

A template (config `tasks.templates.<task>`) has a `prompt` and a `response`, each a string with
placeholders: `{text}` (the row's text), `{response}` (its answer), `{speech}` (the row's units,
wrapped in begin/end-of-speech markers) and `{tag}` (the task's tag token). The sequence is
BOS + prompt + response + EOS; the loss covers the response and EOS only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from most.model.layout import BEGIN_SPEECH, END_SPEECH, task_tag
from most.model.sequences import IGNORE

_PLACEHOLDER = re.compile(r"\{(text|response|speech|tag)\}")


@dataclass(frozen=True)
class Formatter:
    tokenizer: object
    templates: dict[str, dict[str, str]]
    audio_token_start: int

    def pieces(self, template: str, task: str, row: dict) -> list[int]:
        """Token ids of one template string: text pieces through the tokenizer, units as ids."""
        ids: list[int] = []
        position = 0
        for match in _PLACEHOLDER.finditer(template):
            ids += self._text(template[position : match.start()])
            name = match.group(1)
            if name == "speech":
                if not row.get("units"):
                    raise ValueError(f"task {task}: row {row.get('id', '?')} has no units for {{speech}}")
                ids += [self._token(BEGIN_SPEECH), *(self.audio_token_start + u for u in row["units"]), self._token(END_SPEECH)]
            elif name == "tag":
                ids.append(self._token(task_tag(task)))
            else:
                ids += self._text(row.get(name) or "")
            position = match.end()
        return ids + self._text(template[position:])

    def example(self, task: str, row: dict) -> tuple[list[int], list[int]]:
        """(input_ids, labels) with labels IGNORE over BOS and the prompt."""
        template = self.templates[task]
        prompt = [self.tokenizer.bos_token_id, *self.pieces(template["prompt"], task, row)]
        response = [*self.pieces(template["response"], task, row), self.tokenizer.eos_token_id]
        return prompt + response, [IGNORE] * len(prompt) + response

    def prompt(self, task: str, row: dict) -> list[int]:
        """The ids a model continues at evaluation: BOS + prompt (the same code as training)."""
        return [self.tokenizer.bos_token_id, *self.pieces(self.templates[task]["prompt"], task, row)]

    def _text(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _token(self, token: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(token)
