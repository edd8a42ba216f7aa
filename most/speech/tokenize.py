"""Stage `tokenize`: every utterance of every split as deduplicated units with their run lengths.

Output: one `datasets` dataset per split under `units/tokens/<split>/` (columns id, units,
durations, frames, text, speaker, split, task, source, response, answers, pair_id, label) and
`tokenize_report.json`. Utterances too short to give `min_units` units are left out and counted.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from most.io import atomic_directory, write_json
from most.speech import corpus
from most.speech.units import UnitTokenizer
from most.stages import StageResult

log = logging.getLogger(__name__)

CHUNK = 32
CARRIED = ("text", "speaker", "split", "task", "source", "response", "answers", "pair_id", "label")
_tokenizers: dict[str, UnitTokenizer] = {}


def _encode_chunk(args) -> list[tuple[list[int], list[int], float]]:
    """(units, run lengths, seconds of audio) for each row of one chunk (runs in a worker)."""
    folder, rows = args
    if folder not in _tokenizers:
        import torch

        torch.set_num_threads(1)
        _tokenizers[folder] = UnitTokenizer.load(Path(folder))
    waves = [corpus.read_wave(row) for row in rows]
    encoded = _tokenizers[folder].encode(waves, [row["id"] for row in rows])
    return [(units, durations, len(wave) / 16000) for (units, durations), wave in zip(encoded, waves)]


def encode_rows(folder: Path, rows: list[dict], threads: int, what: str):
    """Yield (row, units, durations, seconds) in row order, spread over `threads` processes."""
    chunks = [(str(folder), rows[i : i + CHUNK]) for i in range(0, len(rows), CHUNK)]
    progress = tqdm(total=len(rows), desc=what, unit="utt", mininterval=5)
    pool = ProcessPoolExecutor(max_workers=threads, mp_context=get_context("spawn")) if threads > 1 and len(chunks) > 1 else None
    try:
        results = pool.map(_encode_chunk, chunks) if pool else map(_encode_chunk, chunks)
        for (_, chunk), encoded in zip(chunks, results):
            for row, (units, durations, seconds) in zip(chunk, encoded):
                yield row, units, durations, seconds
            progress.update(len(chunk))
    finally:
        progress.close()
        if pool:
            pool.shutdown()


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
        for split in corpus.manifest_splits(inputs["prepare"]):
            records = []
            unit_count = frames = 0
            for row, units, durations, seconds in encode_rows(
                Path(inputs["kmeans"]), corpus.rows(inputs["prepare"], [split]), threads, f"tokenizing {split}"
            ):
                audio_seconds += seconds
                if len(units) < settings["min_units"]:
                    report["too_few_units"]["count"] += 1
                    if len(report["too_few_units"]["examples"]) < 5:
                        report["too_few_units"]["examples"].append({"id": row["id"], "units": len(units), "seconds": round(seconds, 3)})
                    continue
                unit_count += len(units)
                frames += sum(durations)
                records.append(
                    {"id": row["id"], "units": units, "durations": durations, "frames": sum(durations), **{k: row[k] for k in CARRIED}}
                )
            datasets.Dataset.from_list(records).save_to_disk(str(out / split))
            report["splits"][split] = {
                "utterances": len(records),
                "units": unit_count,
                "units_per_second": round(unit_count / max(frames, 1) * settings["frame_rate_hz"], 3),
            }
        elapsed = time.time() - started
        report["audio_seconds"] = round(audio_seconds, 1)
        write_json(report, out / "tokenize_report.json")
    speed = audio_seconds / max(elapsed, 1e-9)
    log.info(
        "tokenize: %.0f s of audio in %.1f s, %.0fx real time; %d utterances with too few units",
        audio_seconds,
        elapsed,
        speed,
        report["too_few_units"]["count"],
    )
    metrics = {"x_real_time": speed, "too_few_units": report["too_few_units"]["count"]}
    for split, sizes in report["splits"].items():
        metrics.update({f"{split}.{key}": value for key, value in sizes.items()})
    return StageResult(metrics=metrics, artifacts=[Path(outputs["tokens"]) / "tokenize_report.json"])
