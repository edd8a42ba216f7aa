"""Stage `eval_tts`: the model speaks the test texts; the judge ASR transcribes what it said.

For the first `evaluate.tts_utterances` texts of the test split: TTS prompt -> units (sampled,
seeded; only unit tokens allowed) -> the run's vocoder -> the judge (`judge` section) -> WER and
CER against the text, each with a bootstrap 95% CI, and the chance WER (the transcripts against the
next text), for every judge (`judge.kind`, whose figures are the headline, and `judge.second`). The
report shows them beside the resynthesis
ceiling (`units/ceiling.json`: the same judge on the test recordings resynthesized through the same
units and vocoder, the best WER any model can reach here). A few wavs are kept in the output folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from most.data.sources import output_voice_rows
from most.evaluate.tts import SPLIT, error_rates, speak_and_judge
from most.io import atomic_directory, write_json, write_jsonl
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets
    import soundfile

    from most.data import manifest
    from most.evaluate.generate import Checkpoint
    from most.speech.judge import make_judges
    from most.speech.speaker import Speaker
    from most.speech.units import UnitTokenizer

    settings, seed, started = cfg["evaluate"], cfg["seed"], time.time()
    # the texts of the output voice's test recordings, whose units are the reference length
    rows = output_voice_rows(datasets.load_from_disk(str(Path(inputs["tokens"]) / SPLIT)))[: settings["tts_utterances"]]
    if len(rows) < 2:
        raise ValueError(f"eval_tts: {inputs['tokens']}/{SPLIT} has {len(rows)} tts or asr utterances; at least 2 are needed")
    checkpoint = Checkpoint.load(Path(inputs["instruct"]), cfg["tasks"]["templates"], threads)
    speaker = Speaker(Path(inputs["vocoder"]), UnitTokenizer.load(Path(inputs["kmeans"])), cfg["voice"])
    judges = make_judges(cfg["judge"], manifest.training_texts(inputs["prepare"]), seed, threads)
    texts = [row["text"] for row in rows]
    spoken = speak_and_judge(checkpoint, speaker, judges, texts, settings, seed)
    by_judge = {judge.kind: error_rates(texts, spoken["transcripts"][judge.kind], seed) | {"judge": judge.describe()} for judge in judges}
    result = by_judge[judges[0].kind] | {  # the headline judge's figures; every judge's under `judges`
        "split": SPLIT,
        "units_per_word": sum(map(len, spoken["units"])) / max(1, sum(len(t.split()) for t in texts)),
        "reference_units_per_word": sum(len(r["units"]) for r in rows) / max(1, sum(len(t.split()) for t in texts)),
        "judges": by_judge,
        "sampling": {
            "temperature": settings["tts_temperature"],
            "top_k": settings["tts_top_k"],
            "max_units": settings["tts_max_units"],
            "max_units_per_word": settings["tts_max_units_per_word"],
        },
        "seconds": round(time.time() - started, 1),
    }
    for kind, figures in by_judge.items():
        log.info(
            "eval_tts (%s judge): WER %.3f (95%% CI %.3f-%.3f; chance %.3f), CER %.3f",
            kind,
            figures["wer"],
            *figures["wer_ci"],
            figures["wer_chance"],
            figures["cer"],
        )
    with atomic_directory(outputs["eval_tts"]) as out:
        write_json(result, out / "metrics.json")
        write_jsonl(
            [
                {"id": r["id"], "text": t, "transcripts": {kind: said[i] for kind, said in spoken["transcripts"].items()}, "units": len(u)}
                for i, (r, t, u) in enumerate(zip(rows, texts, spoken["units"]))
            ],
            out / "transcripts.jsonl",
        )
        for row, wave in list(zip(rows, spoken["waves"]))[: settings["keep_wavs"]]:
            soundfile.write(out / f"{row['id']}.wav", wave, 16000)
    folder = Path(outputs["eval_tts"])
    return StageResult(
        metrics={"wer": result["wer"], "cer": result["cer"], "utterance_mean_wer": result["utterance_mean_wer"]}
        | {f"{kind}.wer": figures["wer"] for kind, figures in by_judge.items()},
        artifacts=[folder / "metrics.json", folder / "transcripts.jsonl", *sorted(folder.glob("*.wav"))],
    )
