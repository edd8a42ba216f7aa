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


LINEAGE_CACHE_ENV = "MOST_LINEAGE_CACHE"


def lineage_cache_dir() -> Path:
    """Where `tree_md5` keeps what it hashed: $MOST_LINEAGE_CACHE, else results/.lineage
    (beside the run outputs, outside every output DVC tracks)."""
    return Path(os.environ.get(LINEAGE_CACHE_ENV) or Path.cwd() / "results" / ".lineage")


def tree_md5(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> str:
    """Content hash of a file, or of a folder's files and their relative paths.

    Reads only the files whose size, modification time or inode changed since a previous call hashed
    them (the key DVC's own state database trusts): a job whose inputs are unchanged reads none of
    their bytes, however large. A cache that cannot be written costs speed only."""
    path = Path(path).resolve()
    record = Path(cache_dir or lineage_cache_dir()) / f"{hashlib.md5(str(path).encode()).hexdigest()}.json"
    try:
        known = json.loads(record.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        known = {}
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    entries, digest = {}, hashlib.md5()
    for file in files:
        name = "" if file == path else str(file.relative_to(path))
        status = file.stat()
        stamp = [status.st_size, status.st_mtime_ns, status.st_ino]
        previous = known.get(name)
        entries[name] = previous if isinstance(previous, list) and previous[:3] == stamp else [*stamp, file_md5(file)]
        digest.update(name.encode() + b"\0" + entries[name][3].encode())
    if entries != known:
        partial = record.with_name(f".{record.name}.{os.getpid()}.partial")  # concurrent jobs: each its own file
        try:
            record.parent.mkdir(parents=True, exist_ok=True)
            partial.write_text(json.dumps({"path": str(path), "files": entries}))
            partial.replace(record)
        except OSError:
            with contextlib.suppress(OSError):
                partial.unlink()
    return entries[""][3] if path.is_file() else digest.hexdigest()
