"""Units -> waveform with a run's vocoder: what the ceiling, TTS and spoken-QA S->S speak with."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from most.speech import vocoder
from most.speech.units import UnitTokenizer

log = logging.getLogger(__name__)


class Speaker:
    """Units -> waveform with the run's vocoder (and the centroid baseline where it applies)."""

    def __init__(self, vocoder_folder: Path, tokenizer: UnitTokenizer, settings: dict) -> None:
        """`settings` is the `voice` config section."""
        self.model = vocoder.load(vocoder_folder)
        self.settings = settings
        if isinstance(self.model, vocoder.UnitMelVocoder):
            config = self.model.config
            self.mel = vocoder.MelSettings(config.n_fft, config.hop, config.n_mels)
            self.speaker = settings["speaker"] or config.speakers[0]
            self.model.speaker_index(self.speaker)  # fail early on an unknown speaker
        try:
            self.centroid = vocoder.CentroidVocoder(tokenizer, self.mel) if isinstance(self.model, vocoder.UnitMelVocoder) else None
        except ValueError as reason:
            log.info("no centroid baseline: %s", reason)
            self.centroid = None

    def speak(self, units: list[int], durations: list[int] | None = None) -> np.ndarray:
        if isinstance(self.model, vocoder.UnitHifiGan):
            return self.model.synthesize(units, durations)
        return self.mel.griffin_lim(
            self.model.synthesize_mel(units, self.speaker, durations, self.settings["f0"]), self.settings["griffin_lim_iterations"]
        )

    def speak_centroids(self, units: list[int], durations: list[int]) -> np.ndarray:
        return self.mel.griffin_lim(self.centroid.synthesize_mel(units, durations), self.settings["griffin_lim_iterations"])
