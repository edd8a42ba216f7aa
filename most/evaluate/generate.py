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
from most.train.tasks import Formatter


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
        self, task: str, rows: list[dict], max_new_tokens: int, temperature: float, top_k: int, seed: int, batch_size: int = 16
    ) -> list[list[int]]:
        """Units of `task`'s speech response (TTS) for each row: the prompt plus begin-of-speech, then
        only unit tokens until end-of-speech (a text token there could not be spoken), at least one. Sampled with
        `temperature` and `top_k` (0: greedy), seeded per batch of `batch_size` rows (left-padded: one
        decoding step serves the whole batch), so a rerun gives the same units."""
        if not self.formatter.templates[task]["response"].startswith("{speech}"):
            raise ValueError(f"tasks.templates.{task}.response must start with {{speech}} to generate units")
        start, end = self.model.config.audio_token_start, self.token(END_SPEECH)
        allowed = LogitsProcessorList([AllowedTokens([*range(start, start + self.unit_count), end])])
        sampling = {"do_sample": True, "temperature": temperature, "top_k": top_k} if top_k > 0 else {"do_sample": False}
        pad = self.tokenizer.pad_token_id
        out = []
        for first in range(0, len(rows), batch_size):
            prompts = [self.formatter.prompt_with_speech(task, row) for row in rows[first : first + batch_size]]
            ids, mask, speech = self._left_padded(prompts, [self.token(BEGIN_SPEECH)])
            torch.manual_seed(seed + first)
            generated = self.model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=max_new_tokens,
                min_new_tokens=1,
                eos_token_id=end,
                pad_token_id=pad,
                logits_processor=allowed,
                **sampling,
                **speech,
            )
            for response in generated[:, ids.shape[1] :].tolist():
                spoken = response[: response.index(end)] if end in response else response
                out.append([token - start for token in spoken if start <= token < start + self.unit_count])
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
