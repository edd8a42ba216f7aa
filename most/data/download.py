"""Bringing each kind of source into the source-folder layout (`sources.METADATA` and
`sources.TEXT` per source): the embedded corpus (the world's texts spoken by `most.data.synth`), hub
datasets at a pinned revision (audio bytes kept as downloaded), local audiofolders (copied), and the
audio-LM pair sets (`most.data.pair_sets`). The `download` stage (`most.stages.download`) calls one
function per configured source.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

from tqdm import tqdm

from most import world
from most.data import pair_sets, sources, synth
from most.io import write_jsonl
from most.rng import rng_for

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# synthesis shared by the embedded corpus and spoken hub text sets


def _voice_for(item_key: str, split: str, synthesis: dict, seed: int, task: str = "") -> synth.Voice:
    """A voice drawn per item (per pair for minimal pairs), independent of item order; the output
    voice, at its fixed rate and pitch, for the embedded corpus's `tts` items."""
    if task == "tts":
        output = synthesis["output_voice"]
        return synth.Voice("espeak", output["name"], rate=output["rate"], pitch=output["pitch"])
    rng = rng_for(seed, "voice", item_key)
    if split == "test_neural":
        low, high = synthesis["neural_length_scale"]
        return synth.Voice("piper", synthesis["neural_voice"], length_scale=round(rng.uniform(low, high), 3))
    voices = synthesis["voices"][_voice_group(split)]
    return synth.Voice(
        "espeak",
        voices[rng.randrange(len(voices))],
        rate=rng.randint(*synthesis["rate"]),
        pitch=rng.randint(*synthesis["pitch"]),
    )


def _voice_group(split: str) -> str:
    for group in ("train", "dev", "test"):
        if split.startswith(group):
            return group
    raise ValueError(f"split {split!r} does not start with train, dev or test")


def speak(jobs: list[synth.SpeechJob], shard_size: int, sample_rate: int, threads: int) -> list[synth.Spoken]:
    """Synthesize all jobs in fixed shards (one engine each), in parallel; durations and word start
    times in job order."""
    shards: list[list[synth.SpeechJob]] = []
    for job in jobs:
        if not shards or len(shards[-1]) == shard_size or shards[-1][0].voice.engine != job.voice.engine:
            shards.append([])
        shards[-1].append(job)
    spoken: list[synth.Spoken] = []
    progress = tqdm(total=len(jobs), desc="synthesizing", unit="utt", mininterval=5)
    if threads <= 1:
        for shard in shards:
            spoken += synth.synthesize_shard(shard, sample_rate)
            progress.update(len(shard))
    else:
        with ProcessPoolExecutor(max_workers=threads, mp_context=get_context("spawn")) as pool:
            for shard, shard_spoken in zip(shards, pool.map(synth.synthesize_shard, shards, [sample_rate] * len(shards))):
                spoken += shard_spoken
                progress.update(len(shard))
    progress.close()
    return spoken


SYNTHESIS_RATE = 16000  # written at the pipeline's rate; prepare still checks and counts


def download_embedded(settings: dict, seed: int, out: Path, threads: int) -> dict:
    started = time.time()
    synthesis = settings["synthesis"]
    for group in ("train", "dev", "test"):
        synth.check_espeak_voices(synthesis["voices"][group], f"download.synthesis.voices.{group}")
    synth.check_espeak_voices([synthesis["output_voice"]["name"]], "download.synthesis.output_voice.name")
    items = world.build_texts(settings["embedded"]["sizes"], seed)
    spoken = [item for item in items if item.spoken]
    log.info("embedded world: %d spoken items, %d text items", len(spoken), len(items) - len(spoken))
    jobs = []
    for item in spoken:
        voice = _voice_for(item.pair_id or item.id, item.split, synthesis, seed, item.task)
        jobs.append(synth.SpeechJob(item.id, item.text, voice, str(out / "audio" / item.split / f"{item.id}.flac")))
    said = speak(jobs, synthesis["shard_size"], SYNTHESIS_RATE, threads)
    rows = [
        sources.record(file_name=f"audio/{item.split}/{item.id}.flac", speaker=job.voice.speaker, word_start_ms=words, **_item_fields(item))
        for item, job, (_, words) in zip(spoken, jobs, said)
    ]
    write_jsonl(rows, out / sources.METADATA)
    write_jsonl((sources.record(**_item_fields(item)) for item in items if not item.spoken), out / sources.TEXT)
    return _summary("embedded", "embedded", rows, len(items) - len(spoken), sum(duration for duration, _ in said), started)


def _item_fields(item: world.TextItem) -> dict:
    return dict(
        id=item.id,
        split=item.split,
        task=item.task,
        text=item.text,
        response=item.response,
        answers=item.answers,
        pair_id=item.pair_id,
        label=item.label,
    )


def _summary(name: str, kind: str, rows: list[dict], text_items: int, seconds: float, started: float, **extra) -> dict:
    """What sources.json records (deterministic: no timings; those go to the log)."""
    log.info("source %s: %d utterances, %d text items in %.1f s", name, len(rows), text_items, time.time() - started)
    return {
        "name": name,
        "kind": kind,
        "utterances": len(rows),
        "text_items": text_items,
        "seconds": round(seconds, 2),
        "per_split_task": dict(sorted(Counter(f"{r['split']}/{r['task']}" for r in rows).items())),
        **extra,
    }


# --------------------------------------------------------------------------------------------
# hub datasets


_SHA = re.compile(r"^[0-9a-f]{40}$")


def _column(row: dict, path: str):
    """Value at a dotted path (`messages.0.content`) of a dataset row."""
    value = row
    for part in path.split("."):
        if isinstance(value, list | tuple):
            value = value[int(part)] if part.isdigit() and int(part) < len(value) else None
        elif isinstance(value, dict):
            value = value.get(part)
        else:
            return None
    return value


def download_hub(source: dict, synthesis: dict, seed: int, out: Path, threads: int) -> dict:
    import datasets

    started = time.time()
    name, task = source["name"], source["task"]
    columns = {"id": "id", "audio": "audio", "text": "text", "speaker": "speaker_id", "response": "response", **source.get("columns", {})}
    if not _SHA.match(source["revision"]):
        log.warning("hub source %s: revision %r is not a commit sha; the data may change under you", name, source["revision"])
    spoken_from_audio = sources.is_spoken(task) and not source.get("speak", False)
    rows, text_rows, jobs = [], [], []
    for split, hub_split in source["splits"].items():
        log.info("hub source %s: loading %s split %s at %s", name, source["path"], hub_split, source["revision"])
        dataset = datasets.load_dataset(
            source["path"],
            source.get("config_name") or None,
            split=hub_split,
            revision=source["revision"],
            streaming=source.get("streaming", False),
        )
        if spoken_from_audio:
            # raw bytes: decoding is prepare's job, with soundfile
            dataset = dataset.cast_column(columns["audio"], datasets.Audio(decode=False))
        limit = source.get("max_samples", 0) or None
        for index, row in enumerate(tqdm(dataset, desc=f"{name}/{split}", unit="row", mininterval=10, total=limit)):
            if limit is not None and index >= limit:
                break
            item_id = str(_column(row, columns["id"]) or f"{split}-{index:08d}")
            fields = dict(
                id=item_id,
                split=split,
                task=task,
                text=_column(row, columns["text"]),
                speaker=_column(row, columns["speaker"]),
                response=_column(row, columns["response"]),
            )
            if spoken_from_audio:
                audio = _column(row, columns["audio"]) or {}
                relative = f"audio/{split}/{_safe_name(item_id)}{Path(audio.get('path') or '.flac').suffix or '.flac'}"
                target = out / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                if audio.get("bytes") is not None:
                    target.write_bytes(audio["bytes"])
                elif audio.get("path") and Path(audio["path"]).exists():
                    shutil.copyfile(audio["path"], target)
                # else: no audio at all; prepare counts the row as unreadable
                rows.append(sources.record(file_name=relative, **fields))
            elif source.get("speak", False):
                voice = _voice_for(f"{name}/{item_id}", split, synthesis, seed)
                relative = f"audio/{split}/{_safe_name(item_id)}.flac"
                jobs.append(synth.SpeechJob(item_id, fields["text"] or "", voice, str(out / relative)))
                rows.append(sources.record(file_name=relative, **{**fields, "speaker": voice.speaker}))
            else:
                text_rows.append(sources.record(**fields))
    seconds = 0.0
    if jobs:
        speakable = [job for job in jobs if job.text.strip()]
        seconds = sum(duration for duration, _ in speak(speakable, synthesis["shard_size"], SYNTHESIS_RATE, threads))
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, out / sources.METADATA)
    write_jsonl(text_rows, out / sources.TEXT)
    return _summary(name, "hub", rows, len(text_rows), seconds, started, path=source["path"], revision=source["revision"])


def _safe_name(item_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", item_id)[:200]


# --------------------------------------------------------------------------------------------
# local folders


def download_local(source: dict, out: Path) -> dict:
    started = time.time()
    folder = Path(source["path"])
    if not folder.is_dir():
        raise ValueError(f"download.local source {source['name']!r}: folder {folder} does not exist")
    rows = sources.read_local_metadata(folder, source.get("split", "train"), source.get("task", "asr"))
    for row in rows:
        origin = folder / row["file_name"]
        target = out / row["file_name"]
        target.parent.mkdir(parents=True, exist_ok=True)
        if origin.is_file():
            # a copy, never a hard link: DVC may later protect (chmod) cached files in place
            shutil.copyfile(origin, target)
        # a missing file is kept in the metadata: prepare counts it as unreadable
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, out / sources.METADATA)
    write_jsonl([], out / sources.TEXT)
    return _summary(source["name"], "local", rows, 0, 0.0, started, path=str(folder))


# --------------------------------------------------------------------------------------------
# audio-LM pair sets


def download_pair_set(source: dict, out: Path) -> dict:
    started = time.time()
    rows = pair_sets.copy_pairs(source, out)
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(rows, out / sources.METADATA)
    write_jsonl([], out / sources.TEXT)
    return _summary(source["name"], "pair_set", rows, 0, 0.0, started, url=source["url"], pairs=len({r["pair_id"] for r in rows}))
