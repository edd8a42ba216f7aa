"""Audio-LM minimal-pair sets (sWUGGY, sBLIMP, spoken StoryCloze) from their released archives.

A pair set (config `download.pair_sets[]`) is an archive (zip or tar, fetched from `url` by urllib:
https://, file://, or a local path) or a folder. Inside it, `folder` (matched by its trailing path,
so an archive's top folder does not matter) holds the wavs and either
- `gold`: a CSV in the ZeroSpeech 2021 layout: `filename` (wav stem), `id` (the pair), `voice`,
  `correct` (1 or 0), and an optional text column (`text_column`, e.g. `word`); or
- no gold file: labels from the file names through `name_pattern`, a regex with the groups `pair`
  and `label` (a label `correct` is the right side, anything else the wrong one).
Rows become source rows with task `task`, `pair_id`, `label` (`correct`/`wrong`) and the voice as
speaker. Archives are kept in a download cache (`MOST_CACHE`, default ~/.cache/most) keyed by URL
and checked against `sha256` when one is given.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from most.data import sources

log = logging.getLogger(__name__)
NAME_PATTERN = r"^(?P<pair>.+)_(?P<label>correct|incorrect)$"  # the schema's default for `name_pattern`


def cache_dir() -> Path:
    return Path(os.environ.get("MOST_CACHE") or Path.home() / ".cache" / "most")


def fetch(url: str, sha256: str) -> Path:
    """A local path for `url`: a path or folder as is, else the cached download (verified)."""
    if "://" not in url:
        path = Path(url)
        if not path.exists():
            raise FileNotFoundError(f"pair set: {path} does not exist")
        _verify(path, sha256, url)
        return path
    target = cache_dir() / "archives" / hashlib.sha256(url.encode()).hexdigest()[:16] / Path(urllib.parse.urlparse(url).path).name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        log.info("downloading %s", url)
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as handle:
            shutil.copyfileobj(response, handle, length=1 << 20)
        partial.replace(target)
    _verify(target, sha256, url)
    return target


def _verify(path: Path, sha256: str, url: str) -> None:
    if not sha256 or path.is_dir():
        return
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != sha256.lower():
        raise ValueError(f"pair set {url}: sha256 {digest.hexdigest()} does not match the configured {sha256}")


def _unpack(archive: Path, into: Path) -> Path:
    if archive.is_dir():
        return archive
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            handle.extractall(into)
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as handle:
            handle.extractall(into, filter="data")
    else:
        raise ValueError(f"pair set: {archive} is neither a folder, a zip nor a tar archive")
    return into


def _find_folder(root: Path, folder: str) -> Path:
    wanted = Path(folder).parts
    found = [p for p in [root, *sorted(root.rglob("*"))] if p.is_dir() and p.parts[-len(wanted) :] == wanted] if wanted else [root]
    if not found:
        raise ValueError(f"pair set: no folder {folder!r} in {root}")
    return found[0]


def read_pairs(folder: Path, source: dict) -> list[dict]:
    """(file path, row) for every labelled wav of the set, in file order."""
    rows = []
    if source.get("gold", "gold.csv"):
        gold = folder / source.get("gold", "gold.csv")
        if not gold.exists():
            raise ValueError(f"pair set {source['name']}: gold file {gold} not found")
        with open(gold, newline="", encoding="utf-8") as handle:
            for number, row in enumerate(csv.DictReader(handle), 2):
                missing = [key for key in ("filename", "id", "correct") if not row.get(key)]
                if missing:
                    raise ValueError(f"{gold}: line {number} has no {', '.join(missing)}")
                rows.append(
                    {
                        "stem": row["filename"],
                        "pair": row["id"],
                        "label": "correct" if row["correct"].strip() in ("1", "True", "true") else "wrong",
                        "voice": row.get("voice", ""),
                        "text": row.get(source.get("text_column") or "", "") or "",
                    }
                )
    else:
        pattern = re.compile(source.get("name_pattern", NAME_PATTERN))
        for wav in sorted(folder.glob("*.wav")):
            match = pattern.match(wav.stem)
            if not match:
                raise ValueError(f"pair set {source['name']}: {wav.name} does not match name_pattern {pattern.pattern!r}")
            label = "correct" if match.group("label") == "correct" else "wrong"
            rows.append({"stem": wav.stem, "pair": match.group("pair"), "label": label, "voice": "", "text": ""})
    if source.get("max_pairs"):
        keep = set(sorted({row["pair"] for row in rows})[: source["max_pairs"]])
        rows = [row for row in rows if row["pair"] in keep]
    return rows


def copy_pairs(source: dict, out: Path) -> list[dict]:
    """Copy the set's wavs under `out/audio/<split>/`; returns their source rows."""
    name, split = source["name"], source.get("split", "test")
    with tempfile.TemporaryDirectory(prefix=f"most-{name}-") as scratch:
        root = _unpack(fetch(source["url"], source.get("sha256", "")), Path(scratch))
        folder = _find_folder(root, source.get("folder", ""))
        rows = []
        for item in read_pairs(folder, source):
            origin = folder / f"{item['stem']}.wav"
            relative = f"audio/{split}/{item['stem']}.wav"
            (out / relative).parent.mkdir(parents=True, exist_ok=True)
            if origin.exists():  # a missing file stays in the metadata: prepare counts it as unreadable
                shutil.copyfile(origin, out / relative)
            rows.append(
                sources.record(
                    file_name=relative,
                    id=f"{name}-{item['stem']}",
                    split=split,
                    task=source["task"],
                    text=item["text"],
                    speaker=item["voice"],
                    pair_id=f"{name}-{item['pair']}",
                    label=item["label"],
                )
            )
    return rows
