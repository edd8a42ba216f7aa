"""TTS scoring: the model's units for texts, spoken by the run's vocoder, transcribed by each
judge; WER/CER with bootstrap CIs and the chance WER (transcripts against the next text). Used by
`eval_tts` (`most.stages.eval_tts`) and by spoken QA's S->S path.
"""

from __future__ import annotations

import logging

from most.evaluate.normalize import chance_word_error_rate, character_error_rate, word_error_rate
from most.evaluate.stats import bootstrap_ratio

log = logging.getLogger(__name__)
SPLIT = "test"


def model_units(checkpoint, texts: list[str], settings: dict, seed: int) -> list[list[int]]:
    """The model's TTS units for each text with the `evaluate` sampling settings (at least one unit each)."""
    rows = [{"text": text} for text in texts]
    return checkpoint.generate_units(
        "tts",
        rows,
        settings["tts_max_units"],
        settings["tts_temperature"],
        settings["tts_top_k"],
        seed,
        max_units_per_word=settings["tts_max_units_per_word"],
    )


def speak_and_judge(checkpoint, speaker, judges: list, texts: list[str], settings: dict, seed: int) -> dict:
    """Units for each text from the model, vocoded and transcribed by every judge: the units, the
    waves, and the transcripts per judge kind."""
    units = model_units(checkpoint, texts, settings, seed)
    waves = [speaker.speak(u) for u in units]
    return {"units": units, "waves": waves, "transcripts": {judge.kind: judge.transcribe(waves) for judge in judges}}


def error_rates(references: list[str], hypotheses: list[str], seed: int) -> dict:
    words, characters = word_error_rate(references, hypotheses), character_error_rate(references, hypotheses)
    return {
        "wer": words["wer"],
        "wer_ci": bootstrap_ratio(words["errors"], words["lengths"], seed),
        "utterance_mean_wer": words["utterance_mean"],
        **chance_word_error_rate(references, hypotheses, words, seed),
        "cer": characters["cer"],
        "cer_ci": bootstrap_ratio(characters["errors"], characters["lengths"], seed),
        "utterances": words["utterances"],
        "words": words["words"],
        "per_utterance": {"errors": words["errors"], "words": words["lengths"]},
    }
