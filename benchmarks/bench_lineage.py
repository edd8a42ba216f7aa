"""Lineage of a large input: `tree_md5` on a first job (every byte read) and on a second job (the
lineage cache: one stat per file), side by side on the same folder.

    python benchmarks/bench_lineage.py [--gigabytes 5] [--files 50] [--folder /tmp/most-lineage-bench]

Writes `--files` files of `--gigabytes` in all (kept for reruns; delete the folder afterwards), then
times three calls, each in a fresh cache state: cold (the cache is empty), warm (a second job),
and warm after one file changed. The target (issue 17): a second job spends under 1 s on lineage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from most.io import tree_md5


def write_input(folder: Path, gigabytes: float, files: int) -> None:
    size = int(gigabytes * (1 << 30) / files)
    block = os.urandom(1 << 20)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        path = folder / f"shard-{index:05d}.bin"
        if path.exists() and path.stat().st_size == size:
            continue
        with open(path, "wb") as handle:
            for offset in range(0, size, len(block)):
                # a different first byte per block: no two blocks, hence no two files, are equal
                handle.write(bytes([(index + offset // len(block)) % 256]) + block[1 : min(len(block), size - offset)])


def timed(call) -> tuple[float, str]:
    started = time.perf_counter()
    digest = call()
    return time.perf_counter() - started, digest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gigabytes", type=float, default=5.0)
    parser.add_argument("--files", type=int, default=50)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "most-lineage-bench")
    args = parser.parse_args()
    write_input(args.folder, args.gigabytes, args.files)
    cache = Path(tempfile.mkdtemp(prefix="most-lineage-cache-"))
    try:
        cold, digest = timed(lambda: tree_md5(args.folder, cache))
        warm, again = timed(lambda: tree_md5(args.folder, cache))
        one = args.folder / "shard-00000.bin"
        os.utime(one)  # a touched file: hashed again, the others not
        touched, after = timed(lambda: tree_md5(args.folder, cache))
    finally:
        shutil.rmtree(cache)
    assert digest == again == after
    result = {
        "gigabytes": args.gigabytes,
        "files": args.files,
        "first_job_s": round(cold, 3),
        "second_job_s": round(warm, 4),
        "one_file_touched_s": round(touched, 3),
        "first_over_second": round(cold / warm, 1),
    }
    print(json.dumps(result, indent=2))
    out = Path(__file__).parent / "results" / "lineage.json"
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
