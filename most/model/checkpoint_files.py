"""Safetensors checkpoints read and written one tensor at a time, for models as large as the machine.

`from_pretrained` maps the files and copies out of the mapping, so for a moment a model costs its
size twice over in resident memory (1.37x for a 2 GB bf16 DeepSeek-V2 here). The graft needs to
hold a 16B base and its MoST graft one after the other, never both, so it reads and writes tensors
itself with plain file reads (`readinto` straight into the destination) and writes the output as
it is produced. The file format is safetensors' documented one: an 8-byte little-endian header
length, a JSON header (dtype, shape, byte offsets per tensor), then the raw bytes.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
NAMES = {dtype: name for name, dtype in DTYPES.items()}
INDEX = "model.safetensors.index.json"


def _raw(tensor: torch.Tensor):
    """A writable byte view of a contiguous tensor's memory."""
    return tensor.reshape(-1).view(torch.uint8).numpy()


class CheckpointFiles:
    """The tensors of a checkpoint folder (`model.safetensors`, or shards named by the index)."""

    def __init__(self, folder: Path) -> None:
        folder = Path(folder)
        index = folder / INDEX
        if index.exists():
            files = sorted({folder / name for name in json.loads(index.read_text())["weight_map"].values()})
        elif (folder / "model.safetensors").exists():
            files = [folder / "model.safetensors"]
        else:
            raise ValueError(f"{folder}: no model.safetensors or {INDEX} (only safetensors checkpoints are read: no pickle)")
        self.entries: dict[str, tuple[Path, int, dict]] = {}
        for path in files:
            with open(path, "rb") as handle:
                (length,) = struct.unpack("<Q", handle.read(8))
                header = json.loads(handle.read(length))
            header.pop("__metadata__", None)
            for name, entry in header.items():
                if entry["dtype"] not in DTYPES:
                    raise ValueError(f"{path}: tensor {name} has dtype {entry['dtype']}, which this reader does not handle")
                self.entries[name] = (path, 8 + length, entry)

    def names(self) -> list[str]:
        return list(self.entries)

    def dtype(self, name: str) -> torch.dtype:
        return DTYPES[self.entries[name][2]["dtype"]]

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name][2]["shape"])

    def read(self, name: str, out: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor `name`, read into `out` (contiguous, same dtype and shape) or a new tensor."""
        if name not in self.entries:
            raise KeyError(f"checkpoint has no tensor {name!r}")
        path, data_start, entry = self.entries[name]
        if out is None:
            out = torch.empty(entry["shape"], dtype=DTYPES[entry["dtype"]])
        elif out.dtype != self.dtype(name) or tuple(out.shape) != self.shape(name) or not out.is_contiguous():
            raise ValueError(f"{path}: {name} is {self.dtype(name)} {self.shape(name)}; cannot read it into {out.dtype} {tuple(out.shape)}")
        begin, end = entry["data_offsets"]
        with open(path, "rb") as handle:
            handle.seek(data_start + begin)
            if out.numel() and handle.readinto(_raw(out)) != end - begin:
                raise ValueError(f"{path}: {name} is truncated")
        return out


def write_checkpoint(
    folder: Path, plan: list[tuple[str, torch.dtype, tuple[int, ...]]], tensors: Iterator[tuple[str, torch.Tensor]], max_shard_bytes: int
) -> None:
    """Write the tensors `plan` lists (name, dtype, shape, in order) as they come from `tensors`, in
    shards of at most `max_shard_bytes` (one larger tensor gets a shard of its own); one file is
    `model.safetensors`, several come with the index transformers reads."""
    shards: list[list[tuple[str, torch.dtype, tuple[int, ...]]]] = [[]]
    size = 0
    for item in plan:
        nbytes = torch.Size(item[2]).numel() * item[1].itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(item)
        size += nbytes
    names = (
        ["model.safetensors"] if len(shards) == 1 else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )
    produced = iter(tensors)
    for file_name, shard in zip(names, shards, strict=True):
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, dtype, shape in shard:
            nbytes = torch.Size(shape).numel() * dtype.itemsize
            header[name] = {"dtype": NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        encoded = json.dumps(header, separators=(",", ":")).encode()
        encoded += b" " * (-len(encoded) % 8)  # the data starts 8-byte aligned
        with open(Path(folder) / file_name, "wb") as handle:
            handle.write(struct.pack("<Q", len(encoded)) + encoded)
            for name, dtype, shape in shard:
                got, tensor = next(produced)
                if got != name or tensor.dtype != dtype or tuple(tensor.shape) != tuple(shape):
                    raise ValueError(
                        f"checkpoint writer: expected {name} {dtype} {tuple(shape)}, got {got} {tensor.dtype} {tuple(tensor.shape)}"
                    )
                if tensor.numel():
                    handle.write(_raw(tensor.contiguous()))  # the buffer itself, no bytes copy
    if len(shards) > 1:
        weight_map = {name: file_name for file_name, shard in zip(names, shards, strict=True) for name, _, _ in shard}
        total = sum(torch.Size(shape).numel() * dtype.itemsize for _, dtype, shape in plan)
        (Path(folder) / INDEX).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def load_lean(build: Callable[[], torch.nn.Module], folder: Path, read: Callable[[str], torch.Tensor] | None = None) -> torch.nn.Module:
    """The model `build()` makes, with its weights from `folder`, each read (`read(name)`, by default
    straight from the files, in the file's dtype) and put in place by `materialize`: memory holds
    the model once."""
    if read is None:  # else the caller's reader has parsed the files already: not parsed twice
        files = CheckpointFiles(folder)
        extra = set(files.names()) - set(_model_tensor_names(build))
        if extra:
            raise ValueError(f"{folder}: tensors {sorted(extra)[:5]} have no place in the model")
        read = files.read
    return materialize(build, read, str(folder))


def materialize(build: Callable[[], torch.nn.Module], read: Callable[[str], torch.Tensor], source: str) -> torch.nn.Module:
    """`build()` on the meta device (no random initialisation), then every saved tensor from
    `read(name)` put in place as it is (no copy). The rotary embedding (the one buffer not saved) is
    rebuilt on the CPU; a model with other unsaved buffers is refused rather than left on meta."""
    with torch.device("meta"):
        model = build()
    tied = set(getattr(model, "_tied_weights_keys", None) or {}) if model.config.tie_word_embeddings else set()
    for name, placeholder in model.state_dict(keep_vars=True).items():
        if name in tied:
            continue
        try:
            value = read(name)
        except KeyError as error:
            raise ValueError(f"{source}: no weights for {name}") from error
        if value.shape != placeholder.shape:
            raise ValueError(f"{source}: {name} has shape {tuple(value.shape)}; the model expects {tuple(placeholder.shape)}")
        owner_name, _, leaf = name.rpartition(".")
        owner = model.get_submodule(owner_name)
        if leaf in owner._parameters:
            owner._parameters[leaf] = torch.nn.Parameter(value, requires_grad=placeholder.requires_grad)
        else:
            owner._buffers[leaf] = value
    model.model.rotary_emb = type(model.model.rotary_emb)(config=model.config)
    if tied:
        model.tie_weights()
    unset = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if unset:
        raise ValueError(f"{type(model).__name__}: {unset} are not in {source} and cannot be rebuilt")
    return model.eval()


def _model_tensor_names(build: Callable[[], torch.nn.Module]) -> list[str]:
    with torch.device("meta"):
        return list(build().state_dict())
