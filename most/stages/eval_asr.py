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

from most.evaluate.asr import asr_wer, test_rows
from most.io import atomic_directory, write_json, write_jsonl
from most.stages import StageResult

log = logging.getLogger(__name__)


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
