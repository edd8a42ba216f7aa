"""Small file helpers shared by the stages: atomic outputs, JSON Lines, hashing."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path


def partial_directory(path: str | os.PathLike) -> Path:
    """The temporary sibling that `atomic_directory` writes `path` into (other processes may write there too)."""
    return Path(path).with_name(f".{Path(path).name}.partial")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Write a stage's output into a sibling temporary folder and rename it into place at the end.

    A crash leaves either the previous complete output or nothing, never a half-written folder
    that looks complete.
    """
    path = Path(path)
    partial = partial_directory(path)
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path)
    partial.rename(path)


def write_jsonl(rows: Iterable[dict], path: str | os.PathLike) -> int:
    """One JSON object per line, keys in the given order, UTF-8: byte-stable for equal rows."""
    count = 0
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number}: not a JSON object ({error.msg})") from None
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
            rows.append(row)
    return rows


def write_json(data, path: str | os.PathLike) -> None:
    """Sorted, indented JSON, written to a temporary file first so a crash never leaves half of it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    partial.replace(path)


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tree_md5(path: str | os.PathLike) -> str:
    """Content hash of a file, or of a folder's files and their relative paths."""
    path = Path(path)
    if path.is_file():
        return file_md5(path)
    digest = hashlib.md5()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode() + b"\0" + file_md5(child).encode())
    return digest.hexdigest()
