"""Checking downloaded rows for the `prepare` stage (`most.stages.prepare`).

Every row is checked; a row that cannot be used is skipped and counted by reason, a row that can be
repaired (resampled, mixed down, punctuation stripped) is kept and counted. Work is spread over
processes in fixed chunks, and results are merged in input order, so outputs never depend on the
number of processes.
"""

from __future__ import annotations

import logging
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from most.data import audio, quality, sources
from most.data.leakage import held_out_found_in
from most.data.manifest import speech_row

log = logging.getLogger(__name__)

CHUNK = 64  # rows per work unit


def duplicate_rows(rows: list[dict]) -> set[int]:
    """Indices of rows whose id an earlier row of the same source already has."""
    seen: set[str] = set()
    duplicates = set()
    for index, row in enumerate(rows):
        if row.get("id", "") in seen:
            duplicates.add(index)
        seen.add(row.get("id", ""))
    return duplicates


def check_text(row: dict, duplicate: bool, settings: dict) -> quality.Outcome:
    if row.get("task") in sources.PAIR_TASKS and not (row.get("text") or "").strip():
        outcome = quality.Outcome()  # a released pair set may give no transcript: scoring needs none
    else:
        outcome = quality.normalize_text(row.get("text", ""), settings)
    if outcome.skip is None and duplicate:
        outcome.skip = "duplicate_id"
    return outcome


def check_utterances(rows, source_dir, source, settings, audio_out, repaired_root, threads):
    """Yield (row, outcome, manifest row) in input order."""
    duplicates = duplicate_rows(rows)
    chunks = [
        (rows[i : i + CHUNK], i, source_dir, source, settings, audio_out, repaired_root, duplicates) for i in range(0, len(rows), CHUNK)
    ]
    progress = tqdm(total=len(rows), desc=f"checking {source}", unit="utt", mininterval=5)
    if threads <= 1 or len(chunks) <= 1:
        results = map(_check_chunk, chunks)
        pool = None
    else:
        pool = ProcessPoolExecutor(max_workers=threads, mp_context=get_context("spawn"))
        results = pool.map(_check_chunk, chunks)
    try:
        for chunk, checked in zip(chunks, results):
            for row, (outcome, kept) in zip(chunk[0], checked):
                yield row, outcome, kept
            progress.update(len(chunk[0]))
    finally:
        progress.close()
        if pool is not None:
            pool.shutdown()


def _check_chunk(args) -> list[tuple[quality.Outcome, dict | None]]:
    rows, offset, source_dir, source, settings, audio_out, repaired_root, duplicates = args
    return [_check_one(row, offset + i in duplicates, source_dir, source, settings, audio_out, repaired_root) for i, row in enumerate(rows)]


def _check_one(row, duplicate, source_dir, source, settings, audio_out, repaired_root):
    outcome = check_text(row, duplicate, settings)
    if outcome.skip:
        return outcome, None
    path = Path(source_dir) / row["file_name"]
    try:
        samples, rate = audio.read(path)
    except Exception as error:  # soundfile raises several types for corrupt input
        outcome.skip, outcome.detail = "unreadable", f"{path}: {type(error).__name__}: {str(error)[:120]}"
        return outcome, None
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    if samples.shape[1] > 1:
        outcome.repairs.append("downmixed")
    target_rate = settings["sample_rate"]
    if rate != target_rate and mono.size:
        mono = audio.resample(mono, rate, target_rate)
        outcome.repairs.append("resampled")
    skip, detail = quality.audio_problem(mono, target_rate, settings)
    if skip:
        outcome.skip, outcome.detail = skip, f"{path}: {detail}"
        return outcome, None
    audio_path = str(path)
    if "resampled" in outcome.repairs or "downmixed" in outcome.repairs:
        relative = Path(source) / row["split"] / f"{Path(row['file_name']).stem}.flac"
        audio.write_flac(Path(audio_out) / relative, mono, target_rate)
        audio_path = str(Path(repaired_root) / relative)
    word_start_ms = row.get("word_start_ms") or []
    if word_start_ms and len(word_start_ms) != len(outcome.text.split(" ")):
        # normalising split or removed a word (punctuation): the times no longer name the words
        word_start_ms = []
        outcome.repairs.append("word_times_dropped")
    kept = speech_row(
        id=f"{source}-{row['id']}",
        audio=audio_path,
        duration=round(mono.size / target_rate, 4),
        text=outcome.text,
        speaker=row.get("speaker", ""),
        split=row["split"],
        task=row["task"],
        source=source,
        response=row.get("response", ""),
        answers=row.get("answers", []),
        pair_id=row.get("pair_id", ""),
        label=row.get("label", ""),
        word_start_ms=word_start_ms,
    )
    return outcome, kept


def split_sizes(speech: dict, text: dict) -> dict:
    sizes = {}
    for split in sorted(set(speech) | set(text)):
        rows = speech.get(split, [])
        sizes[split] = {
            "utterances": len(rows),
            "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
            "speakers": len({r["speaker"] for r in rows}),
            "text_items": len(text.get(split, [])),
        }
    return sizes


def held_out_in_training(speech: dict, text: dict, mode: str) -> dict:
    """Count dev/test texts that occur in training text (see `most.data.leakage`)."""
    if mode == "off":
        return {"mode": mode}
    train_rows = [r for split, rows in list(speech.items()) + list(text.items()) if split.startswith("train") for r in rows]
    training = [r["text"] for r in train_rows] + [r["response"] for r in train_rows if r["response"]]
    held_out = {
        r["text"]: r["id"]
        for split, rows in list(speech.items()) + list(text.items())
        if not split.startswith("train")
        for r in rows
        if r["task"] != "swuggy"  # single vocabulary words by design
    }
    found = held_out_found_in(training, held_out, mode)
    return {
        "mode": mode,
        "checked": len(held_out),
        "found": len(found),
        "examples": [f"{held_out[t]}: {t}" for t in sorted(found)[:5]],
    }
