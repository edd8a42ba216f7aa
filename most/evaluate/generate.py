"""What every evaluation asks of a MoST checkpoint: text from a prompt, units from a text, and the
log-likelihood of a formatted example. Prompts come from `most.train.tasks.Formatter`, the code
that formatted the training examples, so evaluation sees exactly the training layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from most.model.layout import BEGIN_SPEECH, END_SPEECH
from most.model.sequences import IGNORE, collate, model_inputs, row_losses
from most.train.tasks import SPEECH_WITH_WORDS, Formatter


@dataclass
class Checkpoint:
    """A MoST model folder loaded for inference: model, tokenizer and the task formatter."""

    model: object
    tokenizer: object
    formatter: Formatter

    @classmethod
    def load(cls, folder: Path, templates: dict, threads: int = 1, **overrides) -> Checkpoint:
        """`folder` holds `config.json` + safetensors + tokenizer (a stage's `model/`); `overrides`
        change config fields on load (the ablations' routing variants)."""
        from transformers import AutoTokenizer

        from most.model import MoSTForCausalLM

        folder = Path(folder)
        if not (folder / "config.json").exists() and (folder / "model" / "config.json").exists():
            folder = folder / "model"  # a stage output folder: its model is in model/
        if not (folder / "config.json").exists():
            raise FileNotFoundError(f"{folder}: no MoST model here (expected config.json, or model/config.json)")
        torch.set_num_threads(max(1, threads))
        model = MoSTForCausalLM.from_pretrained(folder, dtype=torch.float32, **overrides)
        model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
        tokenizer = AutoTokenizer.from_pretrained(folder)
        return cls(model, tokenizer, Formatter.for_model(tokenizer, templates, model.config))

    @property
    def unit_count(self) -> int:
        return self.model.config.audio_token_count

    def token(self, name: str) -> int:
        return self.tokenizer.convert_tokens_to_ids(name)

    @torch.no_grad()
    def generate_text(self, task: str, rows: list[dict], max_new_tokens: int, batch_size: int = 16) -> list[str]:
        """Greedy text response of `task` for each row (ASR transcripts, answers), `batch_size` rows
        per left-padded batch: one decoding step serves the whole batch."""
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        out = []
        for first in range(0, len(rows), batch_size):
            prompts = [self.formatter.prompt_with_speech(task, row) for row in rows[first : first + batch_size]]
            ids, mask, speech = self._left_padded(prompts, [])
            generated = self.model.generate(
                ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=eos, pad_token_id=pad, **speech
            )
            for response in generated[:, ids.shape[1] :].tolist():
                response = response[: response.index(eos)] if eos in response else response
                out.append(self.tokenizer.decode(response, skip_special_tokens=True).strip())
        return out

    def _left_padded(self, prompts: list[tuple], suffix: list[int]) -> tuple[torch.Tensor, torch.Tensor, dict]:
        """Prompts (ids, speech frames) + `suffix`, right-aligned in one batch: input ids, attention
        mask and generate's speech arguments (the frames of every speech-frame position in reading
        order, rows in turn)."""
        width = max(len(prompt) for prompt, _ in prompts) + len(suffix)
        ids = torch.full((len(prompts), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(prompts), width), dtype=torch.long)
        for row, (prompt, _) in enumerate(prompts):
            ids[row, width - len(prompt) - len(suffix) :] = torch.tensor([*prompt, *suffix])
            mask[row, width - len(prompt) - len(suffix) :] = 1
        frames = [speech for _, speech in prompts if speech is not None]
        speech = self._speech(torch.cat(frames) if frames else None)
        return ids.to(self.model.device), mask.to(self.model.device), speech

    def _speech(self, speech: torch.Tensor | None) -> dict:
        """generate's arguments for a prompt's encoder frames: the frames, and never a frame position generated."""
        if speech is None:
            return {}
        return {"speech_features": speech.float().to(self.model.device), "suppress_tokens": [self.formatter.speech_frame_id]}

    @torch.no_grad()
    def generate_units(
        self,
        task: str,
        rows: list[dict],
        max_new_tokens: int,
        temperature: float,
        top_k: int,
        seed: int,
        batch_size: int = 16,
        max_units_per_word: int = 0,
    ) -> list[list[int]]:
        """Units of `task`'s speech response (TTS) for each row, sampled with `temperature` and `top_k`
        (0: greedy), seeded per batch of `batch_size` rows (left-padded: one decoding step serves the
        whole batch), so a rerun gives the same units. At most `max_new_tokens` units, at least one.

        A `{speech}` response: the prompt plus begin-of-speech, then only unit tokens until
        end-of-speech (a text token there could not be spoken). A `{speech_with_words}` response:
        the model is given each word of the row's text in turn and samples its units until it
        predicts any text token or end-of-speech (the word is spoken: the token is dropped and the
        next word given), at most `max_units_per_word` (0: no limit) per word; what ends the last
        word's units ends the speech."""
        response = self.formatter.templates[task]["response"]
        if not response.startswith(("{speech}", SPEECH_WITH_WORDS)):
            raise ValueError(f"tasks.templates.{task}.response must start with {{speech}} or {SPEECH_WITH_WORDS} to generate units")
        start, end = self.model.config.audio_token_start, self.token(END_SPEECH)
        units = range(start, start + self.unit_count)
        pad = self.tokenizer.pad_token_id
        out = []
        for first in range(0, len(rows), batch_size):
            batch = rows[first : first + batch_size]
            prompts = [self.formatter.prompt_with_speech(task, row) for row in batch]
            ids, mask, speech = self._left_padded(prompts, [self.token(BEGIN_SPEECH)])
            if response.startswith(SPEECH_WITH_WORDS):
                words = [self.formatter.spoken_words(row["text"]) for row in batch]
                generator = torch.Generator().manual_seed(seed + first)
                choose = WordByWord(words, units, end, pad, temperature, top_k, max_new_tokens, max_units_per_word, generator)
                limit = max(sum(map(len, row_words)) for row_words in words) + max_new_tokens + 1
                arguments = {"do_sample": False, "logits_processor": LogitsProcessorList([choose])}
            else:
                torch.manual_seed(seed + first)
                limit = max_new_tokens
                sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k} if top_k > 0 else {"do_sample": False}
                arguments = {"min_new_tokens": 1, "logits_processor": LogitsProcessorList([AllowedTokens([*units, end])]), **sampling}
            generated = self.model.generate(
                ids, attention_mask=mask, max_new_tokens=limit, eos_token_id=end, pad_token_id=pad, **arguments, **speech
            )
            for spoken in generated[:, ids.shape[1] :].tolist():
                spoken = spoken[: spoken.index(end)] if end in spoken else spoken
                out.append([token - start for token in spoken if token in units])
        return out

    @torch.no_grad()
    def log_likelihoods(self, task: str, rows: list[dict], batch_size: int = 16, units_only: bool = False) -> list[tuple[float, int]]:
        """(summed log-probability, token count) of each row's `task` response given its prompt;
        `units_only`: of its unit tokens alone (no speech markers, no EOS: what audio-LM pairs compare)."""
        examples = [self.formatter.example(task, row) for row in rows]
        if units_only:
            start, end = self.model.config.audio_token_start, self.model.config.audio_token_start + self.unit_count
            examples = [
                example._replace(labels=[label if start <= label < end else IGNORE for label in example.labels]) for example in examples
            ]
        out = []
        for first in range(0, len(examples), batch_size):
            batch = {
                k: v.to(self.model.device) for k, v in collate(examples[first : first + batch_size], self.tokenizer.pad_token_id).items()
            }
            logits = self.model(**model_inputs(batch)).logits
            sums, counts = row_losses(logits, batch["labels"])
            out += [(-float(s), int(c)) for s, c in zip(sums, counts)]
        return out


class AllowedTokens(LogitsProcessor):
    """Every token outside `allowed` gets probability 0."""

    def __init__(self, allowed: list[int]) -> None:
        self.allowed = torch.tensor(sorted(set(allowed)))

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        masked = torch.full_like(scores, float("-inf"))
        masked[:, self.allowed.to(scores.device)] = scores[:, self.allowed.to(scores.device)]
        return masked


class WordByWord(LogitsProcessor):
    """Word-forced speaking (`{speech_with_words}`), one choice per row and step, made here and
    handed to greedy decoding as the only finite score: the next id of the word being given, or a
    unit sampled (temperature, top-k; `generator`) among units, text tokens and end-of-speech; a
    sampled text token or end-of-speech ends the word, and the next word's first id replaces it.
    After the last word, or at `max_units` units, end-of-speech."""

    def __init__(self, words, units: range, end: int, pad: int, temperature, top_k, max_units, max_units_per_word, generator) -> None:
        self.pending = [list(row_words[0]) for row_words in words]  # ids still to give, per row
        self.next_word = [1] * len(words)
        self.words, self.units, self.end, self.pad = words, units, end, pad
        self.temperature, self.top_k, self.generator = temperature, top_k, generator
        self.max_units, self.max_units_per_word = max_units, max_units_per_word
        self.spoken = [0] * len(words)  # units so far, per row
        self.in_word = [0] * len(words)  # units of the current word
        self.finished = [False] * len(words)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        chosen = [self._choose(row, scores[row]) for row in range(scores.shape[0])]
        forced = torch.full_like(scores, float("-inf"))
        forced[torch.arange(scores.shape[0]), torch.tensor(chosen, device=scores.device)] = 0.0
        return forced

    def _choose(self, row: int, scores: torch.Tensor) -> int:
        if self.finished[row]:
            return self.pad  # generate pads a finished row whatever is chosen
        if self.pending[row]:
            return self.pending[row].pop(0)
        words_left = self.next_word[row] < len(self.words[row])
        must_speak = not words_left and self.spoken[row] == 0  # every response says something
        word_full = 0 < self.max_units_per_word <= self.in_word[row]
        if self.spoken[row] < self.max_units and (must_speak or not word_full):
            token = self._sample(scores, units_only=must_speak)
            if token in self.units:
                self.spoken[row] += 1
                self.in_word[row] += 1
                return token
        if words_left and self.spoken[row] < self.max_units:
            self.pending[row] = list(self.words[row][self.next_word[row]])
            self.next_word[row] += 1
            self.in_word[row] = 0
            return self.pending[row].pop(0)
        self.finished[row] = True
        return self.end

    def _sample(self, scores: torch.Tensor, units_only: bool) -> int:
        """A draw among units, and unless `units_only` text tokens and end-of-speech (never padding
        or the other special ids, which follow the units)."""
        allowed = torch.full_like(scores, float("-inf"))
        first = self.units.start if units_only else 0
        allowed[first : self.units.stop] = scores[first : self.units.stop]
        if not units_only:
            allowed[self.pad] = float("-inf")
            allowed[self.end] = scores[self.end]
        if self.top_k <= 0:
            return int(allowed.argmax())
        top = torch.topk(allowed, min(self.top_k, allowed.numel()))
        probabilities = torch.softmax(top.values.float() / self.temperature, dim=-1)
        return int(top.indices[torch.multinomial(probabilities.cpu(), 1, generator=self.generator)])
