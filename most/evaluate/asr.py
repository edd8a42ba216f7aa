"""Stage `eval_asr`: the model's transcripts of held-out speech, WER per test set with bootstrap CIs.

Test sets (`evaluate.asr_sets`): tokenized splits (`test`: the espeak test voices; `test_neural`:
the held-out piper voice) and `librivox`, the real LibriVox recordings of Debian's
`pocketsphinx-testdata` (`evaluate.librivox_dir`), tokenized here with the run's unit tokenizer.
A set that is absent (package not installed, split not made) is reported as skipped, with why.

Per set: corpus WER (errors / reference words) and the utterance mean, each with a bootstrap 95%
CI over utterances, and the chance WER (the same hypotheses against the next utterance's reference)
with a paired CI of chance minus WER: above 0 means the transcripts depend on the speech.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from most.evaluate.normalize import chance_word_error_rate, word_error_rate
from most.evaluate.stats import bootstrap_ratio
from most.io import atomic_directory, write_json, write_jsonl
from most.stages import StageResult

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


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    from most.evaluate.generate import Checkpoint

    settings, seed = cfg["evaluate"], cfg["seed"]
    checkpoint = Checkpoint.load(Path(inputs["instruct"]), cfg["tasks"]["templates"], threads)
    results, transcripts, started = {}, [], time.time()
    for name in settings["asr_sets"]:
        rows, skipped = test_rows(name, settings, inputs)
        if len(rows) < 2:
            results[name] = {"skipped": skipped or f"{len(rows)} utterance(s): too few to score"}
            log.warning("eval_asr: %s skipped: %s", name, results[name]["skipped"])
            continue
        scored = asr_wer(checkpoint, rows, settings["max_new_tokens"], seed)
        transcripts += [{"set": name, "id": r["id"], "reference": r["text"], "hypothesis": h} for r, h in zip(rows, scored["hypotheses"])]
        results[name] = {k: v for k, v in scored.items() if k not in ("hypotheses", "errors", "lengths")}
        results[name]["per_utterance"] = {"errors": scored["errors"], "words": scored["lengths"]}
        log.info(
            "eval_asr %s: WER %.3f (95%% CI %.3f-%.3f), chance %.3f, %d utterances",
            name,
            scored["wer"],
            *scored["wer_ci"],
            scored["wer_chance"],
            scored["utterances"],
        )
    scored_sets = [name for name in settings["asr_sets"] if "wer" in results[name]]
    if not scored_sets:
        raise ValueError(f"eval_asr: no test set could be scored: {results}")
    with atomic_directory(outputs["eval_asr"]) as out:
        write_json({"primary": scored_sets[0], "sets": results, "seconds": round(time.time() - started, 1)}, out / "metrics.json")
        write_jsonl(transcripts, out / "transcripts.jsonl")
    metrics = {f"{name}.{key}": results[name][key] for name in scored_sets for key in ("wer", "utterance_mean_wer", "wer_chance")}
    return StageResult(
        metrics=metrics, artifacts=[Path(outputs["eval_asr"]) / "metrics.json", Path(outputs["eval_asr"]) / "transcripts.jsonl"]
    )
