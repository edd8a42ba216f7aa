"""Tokenize throughput: feature extraction + unit encoding, in x real time, two implementations side by side.

    python benchmarks/bench_tokenize.py [--utterances 400] [--config config/config.yaml]

Needs a finished `fit_units` (results/<run>/units/kmeans) and `prepare`. Both implementations run in
this process on the same utterances, after one warm-up pass: `kmeans.nearest` (one matrix product
per chunk, what `tokenize` uses) and `torch.cdist(...).argmin`. Run it on an otherwise idle machine:
any other CPU load slows torch by an order of magnitude here.
"""

from __future__ import annotations

import argparse
import time

import torch

from most import config, stages
from most.data import manifest
from most.speech import kmeans
from most.speech.units import UnitTokenizer, deduplicate


def encode_cdist(tokenizer: UnitTokenizer, waves, ids):
    return [deduplicate(torch.cdist(f, tokenizer.centroids).argmin(1)) for f in tokenizer.frame_features(waves, ids)]


def encode_nearest(tokenizer: UnitTokenizer, waves, ids):
    return [deduplicate(kmeans.nearest(f, tokenizer.centroids)[0]) for f in tokenizer.frame_features(waves, ids)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    run = config.load(args.config)["run"]
    tokenizer = UnitTokenizer.load(stages.output_path(run, "kmeans"))
    rows = manifest.rows(stages.output_path(run, "prepare"), ["train"])[: args.utterances]
    waves = [manifest.read_wave(row) for row in rows]
    ids = [row["id"] for row in rows]
    seconds = sum(len(w) for w in waves) / 16000
    timings = {}
    results = {}
    for name, encode in (("kmeans.nearest", encode_nearest), ("torch.cdist", encode_cdist)):
        encode(tokenizer, waves[:20], ids[:20])  # warm-up
        started = time.perf_counter()
        results[name] = encode(tokenizer, waves, ids)
        timings[name] = time.perf_counter() - started
    same = results["kmeans.nearest"] == results["torch.cdist"]
    print(
        f"{len(rows)} utterances, {seconds:.0f} s of audio, k={tokenizer.k}, {tokenizer.settings['features']} at {tokenizer.settings['frame_rate_hz']} Hz, {args.threads} threads"
    )
    for name, elapsed in timings.items():
        print(f"  {name:15s} {elapsed:6.2f} s  {seconds / elapsed:7.0f}x real time")
    print(f"  ratio cdist/nearest: {timings['torch.cdist'] / timings['kmeans.nearest']:.2f}; identical units: {same}")


if __name__ == "__main__":
    main()
