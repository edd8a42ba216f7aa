"""Quality checks of `prepare`: every skipped or repaired sample is counted by reason."""

from __future__ import annotations

import unicodedata
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

# reason -> what it means (the report lists every reason, with zero counts too)
SKIP_REASONS = {
    "unreadable": "audio file missing, corrupt or not decodable",
    "empty_audio": "audio has no samples",
    "silence": "RMS level below prepare.silence_dbfs",
    "clipped": "more than prepare.max_clipped_fraction of the samples at full scale",
    "too_short": "shorter than prepare.min_duration_s",
    "too_long": "longer than prepare.max_duration_s",
    "empty_transcript": "no text after normalisation",
    "characters_outside_alphabet": "text has characters outside prepare.alphabet",
    "duplicate_id": "an earlier row of the same source has this id",
}
REPAIR_REASONS = {
    "resampled": "audio at another sample rate, resampled to prepare.sample_rate",
    "downmixed": "multi-channel audio mixed down to mono",
    "punctuation_removed": "punctuation stripped from the text",
    "word_times_dropped": "word start times dropped: normalising changed the text's words (split or removed one)",
}
EXAMPLES_PER_REASON = 5


@dataclass
class Outcome:
    """The verdict on one row: kept (maybe repaired) or skipped for one reason."""

    skip: str | None = None
    detail: str = ""
    repairs: list[str] = field(default_factory=list)
    text: str = ""


def normalize_text(text: str, settings: dict) -> Outcome:
    """Normalise a transcript; `Outcome.skip` says why it cannot be used."""
    outcome = Outcome()
    normalized = unicodedata.normalize("NFKC", text or "")
    if settings["lowercase"]:
        normalized = normalized.lower()
    if settings["strip_punctuation"]:
        stripped = "".join(" " if unicodedata.category(ch).startswith("P") and ch != "'" else ch for ch in normalized)
        if stripped != normalized:
            outcome.repairs.append("punctuation_removed")
        normalized = stripped
    normalized = " ".join(normalized.split())
    outcome.text = normalized
    if not normalized:
        outcome.skip = "empty_transcript"
        return outcome
    alphabet = set(settings["alphabet"])
    outside = sorted({ch for ch in normalized if ch not in alphabet})
    if outside:
        outcome.skip = "characters_outside_alphabet"
        outcome.detail = "".join(outside)[:20]
    return outcome


def audio_problem(mono: np.ndarray, rate: int, settings: dict) -> tuple[str | None, str]:
    """The first reason this (mono, resampled) audio cannot be used, with a detail; None if fine."""
    if mono.size == 0:
        return "empty_audio", "0 samples"
    if not np.isfinite(mono).all():
        return "unreadable", "non-finite samples"
    rms = float(np.sqrt(np.mean(np.square(mono, dtype=np.float64))))
    level = 20 * np.log10(max(rms, 1e-10))
    if level < settings["silence_dbfs"]:
        return "silence", f"{level:.1f} dBFS"
    clipped = float(np.mean(np.abs(mono) >= 0.999))
    if clipped > settings["max_clipped_fraction"]:
        return "clipped", f"{clipped:.4f} of samples at full scale"
    duration = mono.size / rate
    if duration < settings["min_duration_s"]:
        return "too_short", f"{duration:.2f} s"
    if duration > settings["max_duration_s"]:
        return "too_long", f"{duration:.2f} s"
    return None, ""


class QualityReport:
    def __init__(self) -> None:
        self.rows: Counter = Counter()
        self.kept: Counter = Counter()
        self.skipped: dict[str, Counter] = {}
        self.repaired: dict[str, Counter] = {}
        self.examples: dict[str, list[dict]] = {}

    def add(self, source: str, kind: str, item_id: str, outcome: Outcome) -> None:
        key = f"{source}/{kind}"
        self.rows[key] += 1
        for repair in outcome.repairs:
            self.repaired.setdefault(key, Counter())[repair] += 1
        if outcome.skip:
            self.skipped.setdefault(key, Counter())[outcome.skip] += 1
            examples = self.examples.setdefault(outcome.skip, [])
            if len(examples) < EXAMPLES_PER_REASON:
                examples.append({"source": source, "id": item_id, "detail": outcome.detail})
        else:
            self.kept[key] += 1

    def to_dict(self, extra: dict) -> dict:
        def totals(counters: dict[str, Counter], reasons: dict) -> dict:
            merged = Counter()
            for counter in counters.values():
                merged.update(counter)
            return {reason: merged.get(reason, 0) for reason in reasons}

        groups = {}
        for key in sorted(self.rows):
            groups[key] = {
                "rows": self.rows[key],
                "kept": self.kept[key],
                "skipped": {r: c for r, c in sorted(self.skipped.get(key, Counter()).items())},
                "repaired": {r: c for r, c in sorted(self.repaired.get(key, Counter()).items())},
            }
        skipped = totals(self.skipped, SKIP_REASONS)
        return {
            "rows": sum(self.rows.values()),
            "kept": sum(self.kept.values()),
            "skipped_total": sum(skipped.values()),
            "skipped": skipped,
            "repaired": totals(self.repaired, REPAIR_REASONS),
            "by_source": groups,
            "examples": {reason: self.examples[reason] for reason in sorted(self.examples)},
            **extra,
        }


def to_markdown(report: dict) -> str:
    lines = ["# Data quality report", ""]
    lines.append(f"{report['rows']} rows read, {report['kept']} kept, {report['skipped_total']} skipped.")
    lines += ["", "## Skipped", "", "| reason | count | meaning |", "|---|---:|---|"]
    lines += [f"| {r} | {report['skipped'][r]} | {SKIP_REASONS[r]} |" for r in SKIP_REASONS]
    lines += ["", "## Repaired (kept)", "", "| reason | count | meaning |", "|---|---:|---|"]
    lines += [f"| {r} | {report['repaired'][r]} | {REPAIR_REASONS[r]} |" for r in REPAIR_REASONS]
    lines += ["", "## By source", "", "| source/kind | rows | kept | skipped | repaired |", "|---|---:|---:|---|---|"]
    for key, group in report["by_source"].items():
        skipped = ", ".join(f"{r} {c}" for r, c in group["skipped"].items()) or "-"
        repaired = ", ".join(f"{r} {c}" for r, c in group["repaired"].items()) or "-"
        lines.append(f"| {key} | {group['rows']} | {group['kept']} | {skipped} | {repaired} |")
    lines += ["", "## Corpus", "", "| split | utterances | hours | speakers | text items |", "|---|---:|---:|---:|---:|"]
    for split, sizes in report["splits"].items():
        lines.append(f"| {split} | {sizes['utterances']} | {sizes['hours']:.3f} | {sizes['speakers']} | {sizes['text_items']} |")
    leakage = report["held_out_in_training"]
    lines += ["", "## Held-out text found in training text", ""]
    if leakage["mode"] == "off":
        lines.append("Not checked (prepare.leakage_check: off).")
    else:
        lines.append(f"{leakage['found']} of {leakage['checked']} dev/test texts ({leakage['mode']} match).")
        lines += [f"- {example}" for example in leakage["examples"]]
    if report["examples"]:
        lines += ["", "## Examples of skipped rows", ""]
        for reason, examples in report["examples"].items():
            for example in examples:
                lines.append(f"- {reason}: {example['source']} `{example['id']}` {example['detail']}")
    return "\n".join(lines) + "\n"
