"""The source-folder contract between `download` and `prepare`.

Every source, whatever its origin (embedded synthesis, a hub dataset, a local folder), ends up
under `results/<run>/download/<source>/` as:

  metadata.jsonl   one row per utterance: file_name (relative to the folder), id, text, speaker,
                   split, task, and optional response, answers, pair_id, label, word_start_ms
                   (per word of the text, where it starts in the audio: what synthesis knows)
  text.jsonl       one row per text-only item: id, text, split, task, response, answers
  audio/...        the audio files, as downloaded or synthesized (decoded later, with soundfile)

Local folders use the same layout as `datasets`' audiofolder (metadata.jsonl or metadata.csv with a
`file_name` column), so any folder a user already has for `datasets` works as a source; a
`word_start_ms` column (a list, or its JSON text in a CSV) gives word times from an aligner.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from most.io import read_jsonl

METADATA = "metadata.jsonl"
TEXT = "text.jsonl"
# audio-LM minimal-pair tasks: each utterance is scored alone, so they need no transcript
PAIR_TASKS = ("swuggy", "sblimp", "storycloze")


def is_spoken(task: str) -> bool:
    """Tasks whose items are utterances; `text_*` tasks are text only."""
    return not task.startswith("text_")


def output_voice_rows(rows) -> list[dict]:
    """The recordings of the voice the model learns to speak in (TTS targets, the vocoder's data,
    the resynthesis ceiling): the `tts` rows, which the embedded corpus speaks in its one output
    voice, or the `asr` rows of a corpus without them (hub and local data)."""
    rows = list(rows)
    return [row for row in rows if row["task"] == "tts"] or [row for row in rows if row["task"] == "asr"]


def record(**values) -> dict:
    """A metadata/text row with every field present and typed (stable for `datasets`)."""
    row = {
        "id": str(values.get("id", "")),
        "split": str(values.get("split", "")),
        "task": str(values.get("task", "")),
        "text": "" if values.get("text") is None else str(values["text"]),
        "speaker": str(values.get("speaker") or ""),
        "response": str(values.get("response") or ""),
        "answers": [str(a) for a in (values.get("answers") or [])],
        "pair_id": str(values.get("pair_id") or ""),
        "label": str(values.get("label") or ""),
        "word_start_ms": [int(ms) for ms in (values.get("word_start_ms") or [])],
    }
    if "file_name" in values:
        row = {"file_name": str(values["file_name"]), **row}
    return row


def read_local_metadata(folder: Path, default_split: str, default_task: str) -> list[dict]:
    """Rows of a local audiofolder-style source, with defaults filled in.

    Raises ValueError naming the file when the metadata is missing or lacks `file_name`.
    """
    jsonl, csv_path = folder / METADATA, folder / "metadata.csv"
    if jsonl.exists():
        raw, where = read_jsonl(jsonl), jsonl
    elif csv_path.exists():
        with open(csv_path, newline="", encoding="utf-8") as handle:
            raw, where = list(csv.DictReader(handle)), csv_path
    else:
        raise ValueError(f"local source {folder} has no {METADATA} or metadata.csv")
    rows = []
    for number, row in enumerate(raw, 1):
        if not row.get("file_name"):
            raise ValueError(f"{where}: row {number} has no file_name")
        text = row.get("text", row.get("transcription", row.get("sentence")))
        rows.append(
            record(
                file_name=row["file_name"],
                id=row.get("id") or Path(row["file_name"]).stem,
                split=row.get("split") or default_split,
                task=row.get("task") or default_task,
                text=text,
                speaker=row.get("speaker") or row.get("speaker_id"),
                response=row.get("response"),
                answers=row.get("answers"),
                pair_id=row.get("pair_id"),
                label=row.get("label"),
                word_start_ms=_word_start_ms(row.get("word_start_ms"), where, number),
            )
        )
    return rows


def _word_start_ms(value, where: Path, number: int) -> list[int]:
    """A row's word start times: a list (JSON Lines) or its JSON text (CSV); none when absent."""
    if value in (None, ""):
        return []
    try:
        times = json.loads(value) if isinstance(value, str) else value
        return [int(ms) for ms in times]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{where}: row {number}: word_start_ms must be a list of whole milliseconds, got {value!r}") from error
