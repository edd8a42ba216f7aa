"""Training examples per task, from the tokenized speech (units) and the prepared text."""

from __future__ import annotations

from pathlib import Path

from most.io import read_jsonl

# task -> the corpus task whose rows it uses (TTS reads the ASR rows the other way round)
SOURCE_TASK = {
    "asr": "asr",
    "tts": "asr",
    "spoken_instruction": "spoken_instruction",
    "spoken_qa": "spoken_qa",
    "text_lm": "text_lm",
    "text_instruction": "text_instruction",
    "text_qa": "text_qa",
    "speech_lm": "asr",  # speech continuation: the units of the ASR utterances, no text
}
SPEECH_TASKS = {"asr", "spoken_instruction", "spoken_qa"}


def task_rows(tasks: list[str], split: str, tokens: Path, prepare: Path) -> dict[str, list[dict]]:
    """Rows for each task: speech rows (with `units`) from `tokens/<split>`, text rows from `prepare/text`."""
    import datasets

    unknown = sorted(set(tasks) - set(SOURCE_TASK))
    if unknown:
        raise ValueError(f"mix: unknown task(s) {unknown} (known: {sorted(SOURCE_TASK)})")
    wanted = {SOURCE_TASK[task] for task in tasks}
    by_source: dict[str, list[dict]] = {source: [] for source in wanted}
    if wanted & SPEECH_TASKS and (Path(tokens) / split).exists():
        for row in datasets.load_from_disk(str(Path(tokens) / split)):
            if row["task"] in wanted:
                by_source[row["task"]].append(row)
    text = Path(prepare) / "text" / f"{split}.jsonl"
    if wanted - SPEECH_TASKS and text.exists():
        for row in read_jsonl(text):
            if row["task"] in wanted:
                by_source[row["task"]].append(row)
    return {task: by_source[SOURCE_TASK[task]] for task in tasks}
