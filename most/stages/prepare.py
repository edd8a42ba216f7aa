"""Stage `prepare`: manifests per split and a quality report, from the downloaded sources.

Every row is checked; a row that cannot be used is skipped and counted by reason, a row that can be
repaired (resampled, mixed down, punctuation stripped) is kept and counted. Work is spread over
processes in fixed chunks, and results are merged in input order, so outputs never depend on the
number of processes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path

from most.data import manifest, quality, sources
from most.data.prepare import check_text, check_utterances, duplicate_rows, held_out_in_training, split_sizes
from most.io import atomic_directory, read_jsonl, write_json
from most.stages import StageResult

log = logging.getLogger(__name__)


def run(cfg: dict, inputs: dict, outputs: dict, threads: int = 1) -> StageResult:
    settings = cfg["prepare"]
    download = Path(inputs["download"])
    report = quality.QualityReport()
    speech: dict[str, list[dict]] = defaultdict(list)
    text: dict[str, list[dict]] = defaultdict(list)
    with atomic_directory(outputs["prepare"]) as out:
        repaired_root = Path(outputs["prepare"]) / "audio"  # final location of repaired audio
        for source_dir in sorted(p for p in download.iterdir() if p.is_dir()):
            source = source_dir.name
            rows = read_jsonl(source_dir / sources.METADATA) if (source_dir / sources.METADATA).exists() else []
            text_rows = read_jsonl(source_dir / sources.TEXT) if (source_dir / sources.TEXT).exists() else []
            log.info("source %s: %d utterances, %d text items", source, len(rows), len(text_rows))
            for row, outcome, kept in check_utterances(rows, source_dir, source, settings, out / "audio", repaired_root, threads):
                report.add(source, "speech", row.get("id", ""), outcome)
                if outcome.skip is None:
                    speech[row["split"]].append(kept)
            duplicates = duplicate_rows(text_rows)
            for index, row in enumerate(text_rows):
                outcome = check_text(row, index in duplicates, settings)
                report.add(source, "text", row.get("id", ""), outcome)
                if outcome.skip is None:
                    text[row["split"]].append(
                        manifest.text_row(
                            id=f"{source}-{row['id']}",
                            text=outcome.text,
                            split=row["split"],
                            task=row["task"],
                            source=source,
                            response=row.get("response", ""),
                            answers=row.get("answers", []),
                        )
                    )
        manifest.write(out, speech, text)
        splits = split_sizes(speech, text)
        leakage = held_out_in_training(speech, text, settings["leakage_check"])
        data = report.to_dict({"splits": splits, "held_out_in_training": leakage})
        write_json(data, out / "quality_report.json")
        (out / "quality_report.md").write_text(quality.to_markdown(data))
    log.info(
        "prepare: %d rows, %d kept, %d skipped; held-out texts in training: %s",
        data["rows"],
        data["kept"],
        data["skipped_total"],
        leakage.get("found"),
    )
    metrics = {"rows": data["rows"], "kept": data["kept"], "skipped": data["skipped_total"]}
    metrics.update({f"skipped.{reason}": count for reason, count in data["skipped"].items()})
    metrics.update({f"repaired.{reason}": count for reason, count in data["repaired"].items()})
    for split, sizes in splits.items():
        metrics.update({f"{split}.{key}": value for key, value in sizes.items()})
    if leakage["mode"] != "off":
        metrics["held_out_in_training"] = leakage["found"]
    prepared = Path(outputs["prepare"])
    return StageResult(metrics=metrics, artifacts=[prepared / "quality_report.json", prepared / "quality_report.md"])
