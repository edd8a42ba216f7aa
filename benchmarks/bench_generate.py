"""Greedy text generation (ASR transcripts): one utterance per `generate` call against left-padded batches.

    python benchmarks/bench_generate.py [--utterances 96] [--batch-size 16] [--config config/config.yaml]

Needs a finished `instruct` and `tokenize` (results/<run>/). Both ways run in this process on the same
test utterances, round-robin for `--rounds` rounds after a warm-up, and the median is kept; the
transcripts must be identical. Run it on an otherwise idle machine: any other CPU load slows torch
by an order of magnitude here. The numbers are written to `benchmarks/results/generate.json`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from most import config, stages
from most.evaluate.asr import test_rows
from most.evaluate.generate import Checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--utterances", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the evaluation stages run on 1)")
    args = parser.parse_args()
    cfg = config.load(args.config)
    run = cfg["run"]
    checkpoint = Checkpoint.load(stages.output_path(run, "instruct"), cfg["tasks"]["templates"], args.threads)
    inputs = {name: stages.output_path(run, name) for name in ("tokens", "features", "kmeans")}
    rows, skipped = test_rows("test", {**cfg["evaluate"], "asr_utterances": args.utterances}, inputs)
    if not rows:
        raise SystemExit(f"no test utterances: {skipped}")
    max_new_tokens = cfg["evaluate"]["max_new_tokens"]
    ways = {"one per call": 1, f"batches of {args.batch_size}": args.batch_size}
    checkpoint.generate_text("asr", rows[:4], max_new_tokens, batch_size=4)  # warm-up
    timings: dict[str, list[float]] = {name: [] for name in ways}
    transcripts: dict[str, list[str]] = {}
    for _ in range(args.rounds):
        for name, batch_size in ways.items():
            started = time.perf_counter()
            transcripts[name] = checkpoint.generate_text("asr", rows, max_new_tokens, batch_size=batch_size)
            timings[name].append(time.perf_counter() - started)
    median = {name: statistics.median(values) for name, values in timings.items()}
    one, batched = median.values()
    same = len({tuple(values) for values in transcripts.values()}) == 1
    print(
        f"{len(rows)} test utterances, greedy, up to {max_new_tokens} new tokens, {args.threads} torch thread(s), torch {torch.__version__}"
    )
    for name, seconds in median.items():
        print(f"  {name:15s} {seconds:6.2f} s  {len(rows) / seconds:6.1f} utterances/s")
    print(f"  ratio one-per-call / batched: {one / batched:.2f}; identical transcripts: {same}")
    results = {"utterances": len(rows), "threads": args.threads, "seconds": median, "ratio": one / batched, "identical": same}
    out = Path(__file__).parent / "results" / "generate.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
