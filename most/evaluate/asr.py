"""ASR scoring: the model's transcripts of a test set, corpus and utterance-mean WER with
bootstrap 95% CIs, and the chance WER (the same hypotheses against the next utterance's reference)
with a paired CI of chance minus WER: above 0 means the transcripts depend on the speech. Used by
`eval_asr` (`most.stages.eval_asr`) and by training's dev decoding.
"""

from __future__ import annotations

import logging
from pathlib import Path

from most.evaluate.normalize import chance_word_error_rate, word_error_rate
from most.evaluate.stats import bootstrap_ratio

log = logging.getLogger(__name__)


def asr_wer(checkpoint, rows: list[dict], max_new_tokens: int, seed: int) -> dict:
    """Greedy ASR on `rows` (each with `units` and `text`): WER with CIs, chance WER, hypotheses."""
    hypotheses = checkpoint.generate_text("asr", rows, max_new_tokens)
    return score_transcripts([row["text"] for row in rows], hypotheses, seed)


def score_transcripts(references: list[str], hypotheses: list[str], seed: int) -> dict:
    scored = word_error_rate(references, hypotheses)
    per_utterance = [e / n for e, n in zip(scored["errors"], scored["lengths"]) if n]
    return {
        "wer": scored["wer"],
        "wer_ci": bootstrap_ratio(scored["errors"], scored["lengths"], seed),
        "utterance_mean_wer": scored["utterance_mean"],
        "utterance_mean_wer_ci": bootstrap_ratio(per_utterance, [1] * len(per_utterance), seed),
        **chance_word_error_rate(references, hypotheses, scored, seed),
        "utterances": scored["utterances"],
        "words": scored["words"],
        "errors": scored["errors"],
        "lengths": scored["lengths"],
        "hypotheses": hypotheses,
    }


def librivox_rows(folder: Path, kmeans: Path) -> list[dict]:
    """The LibriVox clips listed in `folder/transcription` (`<s> text </s> (id)` lines), as units."""
    from most.data import audio
    from most.speech.units import UnitTokenizer

    rows = []
    for number, line in enumerate((folder / "transcription").read_text().splitlines(), 1):
        if not line.strip():
            continue
        text, _, utterance = line.rpartition("(")
        utterance = utterance.rstrip(") ")
        path = folder / f"{utterance}.wav"
        if not utterance or not path.exists():
            raise ValueError(f"{folder / 'transcription'} line {number}: no clip {path.name} for {line!r}")
        rows.append({"id": utterance, "text": text.replace("<s>", "").replace("</s>", "").strip(), "wave": audio.read_mono(path, 16000)})
    tokenizer = UnitTokenizer.load(kmeans)
    for row, frames in zip(rows, tokenizer.features.unnormalized([row.pop("wave") for row in rows], [row["id"] for row in rows])):
        units, durations = tokenizer.units_of(frames)
        row.update(units=units, durations=durations, speech_frames=frames)
    return rows


def test_rows(name: str, settings: dict, inputs: dict) -> tuple[list[dict], str]:
    """Rows of one ASR test set (units, and encoder frames for continuous input), or ([], why it is skipped)."""
    import datasets

    from most.speech.feature_store import with_frames

    if name == "librivox":
        folder = Path(settings["librivox_dir"])
        if not (folder / "transcription").exists():
            return [], f"{folder} not found (Debian package pocketsphinx-testdata)"
        return librivox_rows(folder, Path(inputs["kmeans"]))[: settings["asr_utterances"]], ""
    split = Path(inputs["tokens"]) / name
    if not split.exists():
        return [], f"no tokenized split {split}"
    rows = [row for row in datasets.load_from_disk(str(split)) if row["task"] == "asr"][: settings["asr_utterances"]]
    return with_frames(rows, Path(inputs["features"]), name), "" if rows else f"split {name} has no asr utterances"
