"""The cached frame features of a corpus (stage `encode_features`): one safetensors file per split.

`<split>.safetensors` holds `frames` (every utterance's frames, concatenated, float16) and `offsets`
(utterance i is `frames[offsets[i]:offsets[i + 1]]`); `<split>.ids.json` the utterance ids in that
order; `stats.safetensors` the mean and standard deviation of every training frame; `features.json`
the settings they were made with, their size and rate. The frames are not normalised: the unit
tokenizer (units.normalize: global) and the continuous input's projector use those statistics.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

SETTINGS_FILE = "features.json"
STATS_FILE = "stats.safetensors"


def save_split(folder: Path, split: str, ids: list[str], frames: list[torch.Tensor]) -> None:
    from safetensors.torch import save_file

    lengths = torch.tensor([0, *(len(f) for f in frames)], dtype=torch.long)
    stacked = torch.cat(frames).to(torch.float16) if frames else torch.zeros(0, 0, dtype=torch.float16)
    save_file({"frames": stacked.contiguous(), "offsets": lengths.cumsum(0)}, str(Path(folder) / f"{split}.safetensors"))
    (Path(folder) / f"{split}.ids.json").write_text(json.dumps(ids) + "\n")


def save_stats(folder: Path, frames: list[torch.Tensor]) -> None:
    """Mean and standard deviation per dimension over `frames` (the training split's)."""
    from safetensors.torch import save_file

    stacked = torch.cat(frames).double()
    mean, std = stacked.mean(0).float(), stacked.std(0).float() + 1e-5
    save_file({"mean": mean.contiguous(), "std": std.contiguous()}, str(Path(folder) / STATS_FILE))


def stats(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    path = Path(folder) / STATS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: {folder} is not an encode_features output")
    return load_file(str(path))


def load_split(folder: Path, split: str) -> dict[str, torch.Tensor]:
    """utterance id -> its frames (float16 [frames, dim]: views into one tensor, converted by their users)."""
    from safetensors.torch import load_file

    path = Path(folder) / f"{split}.safetensors"
    if not path.exists():
        raise FileNotFoundError(f"no cached features for split {split!r}: {path} (rerun encode_features)")
    tensors = load_file(str(path))
    ids = json.loads((Path(folder) / f"{split}.ids.json").read_text())
    frames, offsets = tensors["frames"], tensors["offsets"].tolist()
    if len(offsets) != len(ids) + 1:
        raise ValueError(f"{path}: {len(offsets) - 1} utterances but {len(ids)} ids in {split}.ids.json")
    return {item: frames[offsets[i] : offsets[i + 1]] for i, item in enumerate(ids)}


def splits(folder: Path) -> list[str]:
    """The splits with cached frames (the statistics file is not one)."""
    return sorted(path.name.removesuffix(".safetensors") for path in Path(folder).glob("*.safetensors") if path.name != STATS_FILE)


def with_frames(rows: list[dict], folder: Path, split: str) -> list[dict]:
    """The rows, each with its cached frames as `speech_frames` (the continuous speech input)."""
    cached = load_split(folder, split)
    missing = [row["id"] for row in rows if row["id"] not in cached]
    if missing:
        raise ValueError(f"no cached features in {folder} ({split}) for {missing[:5]}")
    return [{**row, "speech_frames": cached[row["id"]]} for row in rows]
