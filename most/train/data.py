"""Training examples per task, from the tokenized speech (units) and the prepared text."""

from __future__ import annotations

from pathlib import Path

from most.data import manifest
from most.data.sources import output_voice_rows

# task -> the corpus task whose rows it uses (TTS reads its rows the other way round: text -> units)
SOURCE_TASK = {
    "asr": "asr",
    "tts": "tts",  # the output voice's recordings (sources.output_voice_rows)
    "spoken_instruction": "spoken_instruction",
    "spoken_qa": "spoken_qa",
    "text_lm": "text_lm",
    "text_instruction": "text_instruction",
    "text_qa": "text_qa",
    "speech_lm": "asr",  # speech continuation: runs of 2-5 same-voice ASR utterances' units, no text
}
SPEECH_LM_RUN_LENGTHS = (2, 3, 4, 5)  # utterances per speech_lm example, in turn
SPEECH_TASKS = {"asr", "tts", "spoken_instruction", "spoken_qa"}


def task_rows(tasks: list[str], split: str, tokens: Path, prepare: Path) -> dict[str, list[dict]]:
    """Rows for each task: speech rows (with `units`) from `tokens/<split>`, text rows from `prepare/text`."""
    import datasets

    unknown = sorted(set(tasks) - set(SOURCE_TASK))
    if unknown:
        raise ValueError(f"mix: unknown task(s) {unknown} (known: {sorted(SOURCE_TASK)})")
    wanted = {SOURCE_TASK[task] for task in tasks}
    if "tts" in wanted:
        wanted.add("asr")  # the fallback for a split without output-voice rows
    by_source: dict[str, list[dict]] = {source: [] for source in wanted}
    if wanted & SPEECH_TASKS and (Path(tokens) / split).exists():
        for row in datasets.load_from_disk(str(Path(tokens) / split)):
            if row["task"] in wanted:
                by_source[row["task"]].append(row)
    if wanted - SPEECH_TASKS:
        for row in manifest.text_rows(prepare, split):
            if row["task"] in wanted:
                by_source[row["task"]].append(row)
    if "tts" in by_source:
        by_source["tts"] = output_voice_rows(by_source["tts"] + by_source["asr"])
    out = {task: by_source[SOURCE_TASK[task]] for task in tasks}
    if "speech_lm" in out:
        out["speech_lm"] = speech_runs(out["speech_lm"])
    return out


def speech_runs(rows: list[dict]) -> list[dict]:
    """Speech-LM examples: consecutive utterances of one voice joined, 2, 3, 4, 5, 2, ... at a time, so
    the model learns continuations across sentences the length of the audio-LM test items (stories).
    A unit repeated across a join is kept once (units are deduplicated)."""
    by_speaker: dict[str, list[dict]] = {}
    for row in rows:
        by_speaker.setdefault(row["speaker"], []).append(row)
    runs, turn = [], 0
    for speaker in sorted(by_speaker):
        queue = by_speaker[speaker]
        while len(queue) >= 2:
            size = SPEECH_LM_RUN_LENGTHS[turn % len(SPEECH_LM_RUN_LENGTHS)]
            turn += 1
            chosen, queue = queue[:size], queue[size:]
            units: list[int] = []
            for row in chosen:
                units += row["units"][1:] if units and row["units"][:1] == units[-1:] else row["units"]
            runs.append({"id": "+".join(row["id"] for row in chosen), "units": units, "speaker": speaker, "task": "speech_lm"})
    return runs
