"""Training the unit-to-mel vocoder (the `train_vocoder` stage, `most.stages.train_vocoder`).

Training data are (units, run lengths, log-mel, F0) of the training utterances of the output voice
(`sources.output_voice_rows`), all or a seeded sample of `vocoder.max_utterances`: the units and run
lengths come from `tokenize`, the log-mel and F0 targets from the audio. One step takes a batch of
utterances of similar length (sorted by length, a random window: little padding). The loss is L1 on
the normalized log-mel (and, weighted by `vocoder.mel_delta_weight`, on its differences between
neighbouring bins and between neighbouring frames), squared error on log run lengths, and
cross-entropy on F0 bins; the decoder sees the true F0 while training (teacher forcing) and the F0
predictor's contour when speaking (`voice.f0: predicted`).
"""

from __future__ import annotations

import json
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from most.data import manifest
from most.data.sources import output_voice_rows
from most.rng import rng_for
from most.speech import vocoder

log = logging.getLogger(__name__)


def load_examples(inputs: dict, mel: vocoder.MelSettings, frames_per_unit: int, threads: int = 1, limit: int = 0, seed: int = 0):
    """(units, durations, log-mel, f0 bins, speaker) per training utterance, sorted by length; at most
    `limit` utterances (a sample seeded by `seed`; 0: all). Utterances are read and analysed `threads`
    at a time, each on one torch thread (the same numbers as one after another: every utterance's
    analysis is its own)."""
    import datasets

    tokens_root = Path(inputs["tokens"])
    audio = {
        row["id"]: row
        for row in manifest.rows(inputs["prepare"], [split for split in manifest.splits(inputs["prepare"]) if split.startswith("train")])
    }
    records = [
        record
        for split_dir in sorted(p for p in tokens_root.iterdir() if p.is_dir() and p.name.startswith("train"))
        for record in datasets.load_from_disk(str(split_dir))
    ]
    records = output_voice_rows(records)
    if not records:
        raise ValueError(f"train_vocoder: no training utterances of task tts or asr in {tokens_root}")
    if 0 < limit < len(records):
        records = [records[i] for i in sorted(rng_for(seed, "vocoder-utterances").sample(range(len(records)), limit))]

    def analyse(record):
        wave = manifest.read_wave(audio[record["id"]])
        target = mel.log_mel(wave)
        f0 = vocoder.f0_bins(wave, hop=mel.hop)
        frames = min(len(target), len(f0), sum(record["durations"]) * frames_per_unit)
        return record["units"], record["durations"], target[:frames], f0[:frames], record["speaker"]

    torch_threads = torch.get_num_threads()
    torch.set_num_threads(1)  # soundfile and torch release the GIL: the parallelism is across utterances
    try:
        with ThreadPoolExecutor(max(1, threads)) as pool:
            examples = list(pool.map(analyse, records))
    finally:
        torch.set_num_threads(torch_threads)
    examples.sort(key=lambda e: len(e[2]))
    return examples


def crop(example, max_units: int, frames_per_unit: int, generator: torch.Generator):
    """A random run of at most `max_units` units of one example, with its frames."""
    units, durations, target, f0, speaker = example
    if len(units) <= max_units:
        return example
    start = int(torch.randint(len(units) - max_units + 1, (1,), generator=generator))
    first = sum(durations[:start]) * frames_per_unit
    last = first + sum(durations[start : start + max_units]) * frames_per_unit
    return units[start : start + max_units], durations[start : start + max_units], target[first:last], f0[first:last], speaker


def make_batch(examples, k: int, frames_per_unit: int, mel_mean, mel_std, speakers: dict[str, int]):
    units_max = max(len(e[0]) for e in examples)
    frames_max = max(len(e[2]) for e in examples)
    n = len(examples)
    batch = {
        "units": torch.full((n, units_max), k, dtype=torch.long),
        "log_durations": torch.zeros(n, units_max),
        "unit_mask": torch.zeros(n, units_max),
        "index": torch.zeros(n, frames_max, dtype=torch.long),
        "position": torch.zeros(n, frames_max, dtype=torch.long),
        "frame_mask": torch.zeros(n, frames_max),
        "mel": torch.zeros(n, frames_max, mel_mean.numel()),
        "f0": torch.zeros(n, frames_max, dtype=torch.long),
        "speakers": torch.tensor([speakers[e[4]] for e in examples]),
    }
    for row, (units, durations, target, f0, _) in enumerate(examples):
        frames = len(target)
        batch["units"][row, : len(units)] = torch.tensor(units)
        batch["log_durations"][row, : len(units)] = torch.log(torch.tensor(durations, dtype=torch.float))
        batch["unit_mask"][row, : len(units)] = 1
        index, position = vocoder.run_positions([d * frames_per_unit for d in durations])
        batch["index"][row, :frames] = index[:frames]
        batch["position"][row, :frames] = position[:frames]
        batch["frame_mask"][row, :frames] = 1
        batch["mel"][row, :frames] = (target - mel_mean) / mel_std
        batch["f0"][row, :frames] = f0
    return batch


def loss_terms(model: vocoder.UnitMelVocoder, batch: dict, mel_delta_weight: float = 0.0) -> dict[str, torch.Tensor]:
    encoded = model.encode(batch["units"], batch["unit_mask"], batch["speakers"])
    unit_mask, frame_mask = batch["unit_mask"], batch["frame_mask"]
    duration = (((model.duration(encoded)[..., 0] - batch["log_durations"]) ** 2) * unit_mask).sum() / unit_mask.sum()
    frames = model.regulate(encoded, batch["index"], batch["position"], frame_mask, batch["speakers"])
    f0_logits = model.f0_logits(frames, frame_mask)
    f0 = (torch.nn.functional.cross_entropy(f0_logits.transpose(1, 2), batch["f0"], reduction="none") * frame_mask).sum() / frame_mask.sum()
    predicted = model.decode(frames, batch["f0"], frame_mask)
    error = predicted - batch["mel"]
    mel = (error.abs().mean(-1) * frame_mask).sum() / frame_mask.sum()
    terms = {"mel_l1": mel, "duration_mse": duration, "f0_ce": f0}
    if mel_delta_weight > 0:  # the spectrum's shape and its changes, which an L1 on the mel alone lets blur
        # a difference of the error is the prediction's difference minus the target's
        across_bins = error.diff(dim=-1).abs().mean(-1)
        terms["mel_delta_bins"] = mel_delta_weight * (across_bins * frame_mask).sum() / frame_mask.sum()
        pairs = frame_mask[:, 1:] * frame_mask[:, :-1]  # neighbouring frames both inside the utterance
        across_frames = error.diff(dim=1).abs().mean(-1)
        terms["mel_delta_frames"] = mel_delta_weight * (across_frames * pairs).sum() / pairs.sum().clamp(min=1)
    return terms


def learning_rate_factor(steps: int, schedule: str = "cosine", warmup_fraction: float = 0.05):
    """Learning-rate factor per step: linear warmup, then `constant` or `cosine` decay to zero; valid
    for any number of steps."""
    if schedule not in ("constant", "cosine"):
        raise ValueError(f"vocoder.schedule: {schedule!r} is not constant or cosine")
    warmup = max(1, round(steps * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    return factor


def train_unit_mel(settings: dict, seed: int, inputs: dict, out: Path, threads: int) -> dict:
    tokens_report = json.loads((Path(inputs["tokens"]) / "tokenize_report.json").read_text())
    mel = vocoder.MelSettings(settings["n_fft"], round(16000 * settings["hop_ms"] / 1000), settings["n_mels"])
    unit_hop = 16000 / tokens_report["frame_rate_hz"]
    if unit_hop % mel.hop:
        raise ValueError(f"vocoder.hop_ms: the unit frame ({unit_hop:g} samples) must be a whole number of mel hops ({mel.hop})")
    frames_per_unit = int(unit_hop // mel.hop)
    started = time.time()
    examples = load_examples(inputs, mel, frames_per_unit, threads, settings["max_utterances"], seed)
    all_mel = torch.cat([e[2] for e in examples])
    mel_mean, mel_std = all_mel.mean(0), all_mel.std(0) + 1e-5
    speakers = sorted({e[4] for e in examples})
    speaker_f0 = []
    for name in speakers:
        voiced = torch.cat([e[3][e[3] > 0] for e in examples if e[4] == name])
        speaker_f0.append(int(voiced.median()) if len(voiced) else vocoder.F0_BINS // 2)
    log.info(
        "train_vocoder: %d utterances, %d mel frames, %d speakers, data ready in %.1f s",
        len(examples),
        len(all_mel),
        len(speakers),
        time.time() - started,
    )
    config = vocoder.UnitMelConfig(
        k=tokens_report["k"],
        speakers=speakers,
        hidden_size=settings["hidden_size"],
        encoder_layers=settings["encoder_layers"],
        decoder_layers=settings["decoder_layers"],
        frames_per_unit=frames_per_unit,
        n_mels=mel.n_mels,
        n_fft=mel.n_fft,
        hop=mel.hop,
        mel_mean=mel_mean.tolist(),
        mel_std=mel_std.tolist(),
        speaker_f0=speaker_f0,
    )
    torch.manual_seed(seed)
    model = vocoder.UnitMelVocoder(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings["learning_rate"])
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate_factor(settings["steps"], settings["schedule"]))
    generator = torch.Generator().manual_seed(seed)
    size = min(settings["batch_size"], len(examples))
    speaker_index = {name: i for i, name in enumerate(speakers)}
    history, first, last = [], None, None
    started = time.time()
    model.train()
    for step in range(1, settings["steps"] + 1):
        start = int(torch.randint(len(examples) - size + 1, (1,), generator=generator))
        chosen = [crop(e, settings["crop_units"], frames_per_unit, generator) for e in examples[start : start + size]]
        terms = loss_terms(
            model, make_batch(chosen, config.k, frames_per_unit, mel_mean, mel_std, speaker_index), settings["mel_delta_weight"]
        )
        loss = sum(terms.values())
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        values = {name: value.item() for name, value in terms.items()}
        first = first or values
        if step % 50 == 0 or step == settings["steps"]:
            history.append((step, values))
            last = values
        if step % 200 == 0:
            log.info(
                "train_vocoder: step %d/%d %s (%.0f s)",
                step,
                settings["steps"],
                " ".join(f"{k}={v:.3f}" for k, v in values.items()),
                time.time() - started,
            )
    vocoder.save(model, out)
    return {
        "steps": settings["steps"],
        "utterances": len(examples),
        "seconds": round(time.time() - started, 1),
        "loss_start": first,
        "loss_end": last,
        "speakers": speakers,
        "history": history,
    }
