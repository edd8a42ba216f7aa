"""Stage `tokenize`: every utterance of every split as deduplicated units with their run lengths.

Units come from the frames `encode_features` cached. Output: one `datasets` dataset per split
under `units/tokens/<split>/` (columns id, units, durations, frames, text, speaker, split, task,
source, response, answers, pair_id, label, word_units) and `tokenize_report.json`. Utterances too short to
give `min_units` units are left out and counted. `word_units` gives, per word of the text, the unit where
it starts (`most.speech.units.word_unit_starts`), from the word times synthesis recorded; it is empty
for utterances without them, which the report counts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm import tqdm

from most.data import manifest
from most.io import atomic_directory, write_json
from most.speech import feature_store
from most.speech.units import UnitTokenizer, word_unit_starts
from most.stages import StageResult

log = logging.getLogger(__name__)

CARRIED = ("text", "speaker", "split", "task", "source", "response", "answers", "pair_id", "label")


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    import datasets

    settings = cfg["units"]
    started = time.time()
    tokenizer = UnitTokenizer.load(Path(inputs["kmeans"]))
    report = {
        "k": tokenizer.k,
        "frame_rate_hz": settings["frame_rate_hz"],
        "min_units": settings["min_units"],
        "splits": {},
        "too_few_units": {"count": 0, "examples": []},
    }
    audio_seconds = 0.0
    with atomic_directory(outputs["tokens"]) as out:
        for split in manifest.splits(inputs["prepare"]):
            cached = feature_store.load_split(Path(inputs["features"]), split)
            records = []
            unit_count = frames = without_word_times = 0
            for row in tqdm(manifest.rows(inputs["prepare"], [split]), desc=f"tokenizing {split}", unit="utt", mininterval=5):
                if row["id"] not in cached:
                    raise ValueError(f"tokenize: utterance {row['id']} of {split} has no cached features in {inputs['features']}")
                units, durations = tokenizer.units_of(cached[row["id"]])
                seconds = len(cached[row["id"]]) / settings["frame_rate_hz"]
                audio_seconds += seconds
                if len(units) < settings["min_units"]:
                    report["too_few_units"]["count"] += 1
                    if len(report["too_few_units"]["examples"]) < 5:
                        report["too_few_units"]["examples"].append({"id": row["id"], "units": len(units), "seconds": round(seconds, 3)})
                    continue
                unit_count += len(units)
                frames += sum(durations)
                word_units = word_unit_starts(row.get("word_start_ms") or [], durations, settings["frame_rate_hz"])
                without_word_times += not word_units
                records.append(
                    {
                        "id": row["id"],
                        "units": units,
                        "durations": durations,
                        "frames": sum(durations),
                        "word_units": word_units,
                        **{k: row[k] for k in CARRIED},
                    }
                )
            datasets.Dataset.from_list(records).save_to_disk(str(out / split))
            report["splits"][split] = {
                "utterances": len(records),
                "units": unit_count,
                "units_per_second": round(unit_count / max(frames, 1) * settings["frame_rate_hz"], 3),
                "without_word_times": without_word_times,
            }
        elapsed = time.time() - started
        report["audio_seconds"] = round(audio_seconds, 1)
        write_json(report, out / "tokenize_report.json")
    speed = audio_seconds / max(elapsed, 1e-9)
    log.info(
        "tokenize: %.0f s of speech (cached frames) in %.1f s, %.0fx real time; %d utterances with too few units",
        audio_seconds,
        elapsed,
        speed,
        report["too_few_units"]["count"],
    )
    metrics = {"x_real_time": speed, "too_few_units": report["too_few_units"]["count"]}
    for split, sizes in report["splits"].items():
        metrics.update({f"{split}.{key}": value for key, value in sizes.items()})
    return StageResult(metrics=metrics, artifacts=[Path(outputs["tokens"]) / "tokenize_report.json"])
