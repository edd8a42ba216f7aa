"""Stage `unit_ceiling`: how well can anything speak through these units and this vocoder?

For the first `ceiling.max_utterances` held-out sentences of each configured dev/test split, in the
output voice (`sources.output_voice_rows`): (a) the judge on the original audio; (b) wav -> units
-> vocoder (predicted run lengths, as TTS will have them) -> judge. (b) is the best TTS WER any
model can reach here. Beside them: (b) with the true run lengths, the untrained centroid look-up
baseline (log-mel units only), and the chance WER of (b) (its transcripts against the next
sentence); each for every judge (`judge.kind`, whose figures are the headline, and `judge.second`).
`units/ceiling.json` holds them per split (WER as fractions); a few wavs go to `units/ceiling_samples/`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from most.data import manifest
from most.data.sources import output_voice_rows
from most.evaluate.normalize import chance_word_error_rate, word_error_rate
from most.io import atomic_directory, write_json
from most.speech.judge import make_judges
from most.speech.speaker import Speaker
from most.speech.units import UnitTokenizer
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import soundfile
    import torch

    torch.set_num_threads(max(1, threads))
    settings = cfg["ceiling"]
    started = time.time()
    tokenizer = UnitTokenizer.load(Path(inputs["kmeans"]))
    speaker = Speaker(Path(inputs["vocoder"]), tokenizer, cfg["voice"])
    judges = make_judges(cfg["judge"], manifest.training_texts(inputs["prepare"]), cfg["seed"], threads)
    results = {}
    with atomic_directory(outputs["ceiling_samples"]) as samples:
        for split in settings["splits"]:
            # the output voice's recordings of held-out texts: what TTS should sound like
            rows = output_voice_rows(manifest.rows(inputs["prepare"], [split], tasks=["tts", "asr"]))[: settings["max_utterances"]]
            if not rows:
                log.warning("unit_ceiling: split %s has no asr or tts utterances; skipped", split)
                continue
            waves = [manifest.read_wave(row) for row in rows]
            encoded = tokenizer.encode(waves, [row["id"] for row in rows])
            variants = {
                "judge_wer_original": waves,
                "resynth_wer": [speaker.speak(units) for units, _ in encoded],
                "resynth_wer_given_durations": [speaker.speak(units, durations) for units, durations in encoded],
            }
            if speaker.centroid is not None:
                variants["centroid_wer"] = [speaker.speak_centroids(units, durations) for units, durations in encoded]
            references = [row["text"] for row in rows]
            words = word_error_rate(references, references)["words"]  # reference words after normalisation
            by_judge = {judge.kind: {} for judge in judges}
            for name, audio in variants.items():
                for judge in judges:
                    transcripts = judge.transcribe(audio)
                    scored = word_error_rate(references, transcripts)
                    by_judge[judge.kind][name] = scored["wer"]
                    if name == "resynth_wer":
                        chance = chance_word_error_rate(references, transcripts, scored, cfg["seed"])
                        by_judge[judge.kind]["resynth_wer_chance"] = chance["wer_chance"]
            # the headline judge's figures, and every judge's under `judges`
            results[split] = {
                "task": rows[0]["task"],
                "utterances": len(rows),
                "words": words,
                **by_judge[judges[0].kind],
                "judges": by_judge,
            }
            for row, original, resynthesized in list(zip(rows, waves, variants["resynth_wer"]))[: settings["samples"]]:
                soundfile.write(samples / f"{row['id']}.original.flac", original, 16000)
                soundfile.write(samples / f"{row['id']}.resynth.flac", resynthesized, 16000)
            for kind, figures in by_judge.items():
                log.info("unit_ceiling %s (%s judge): %s", split, kind, {k: round(v, 3) for k, v in figures.items()})
    write_json({**results, "judge": judges[0].describe(), "judges": [judge.describe() for judge in judges]}, Path(outputs["ceiling"]))
    log.info("unit_ceiling: done in %.0f s", time.time() - started)
    # the headline judge's as `<split>.<figure>` (as before a second judge), the second's as `<split>.<judge>.<figure>`
    metrics = {
        f"{split}.{key}" if kind == judges[0].kind else f"{split}.{kind}.{key}": value
        for split, values in results.items()
        for kind, figures in values["judges"].items()
        for key, value in figures.items()
    }
    metrics |= {f"{split}.{key}": values[key] for split, values in results.items() for key in ("utterances", "words")}
    return StageResult(metrics=metrics, artifacts=[Path(outputs["ceiling"]), *sorted(Path(outputs["ceiling_samples"]).glob("*.flac"))])
