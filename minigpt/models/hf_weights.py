"""A Hugging Face directory's weights: safetensors (one file or shards with their index,
memory-mapped by the ``safetensors`` package) or ``pytorch_model.bin`` through the safe
``torch.load``. Stored bfloat16/float16 tensors come back as float32 (an exact upcast),
one tensor at a time, so loading holds no second copy of the model.

A hostile file is one line and bounded memory: the header's length and size are checked
before the library reads it, and the library checks offsets, overlaps and shapes.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import torch

from minigpt.errors import CheckpointError

HEADER_LIMIT = 100_000_000  # bytes of JSON header (the safetensors format's own cap)
INDEX_LIMIT = 50 * 2**20


def read_weights(directory: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(name -> float tensor, name -> stored dtype, which files) of ``directory``."""
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.is_file():
        return (*read_safetensors([single]), "model.safetensors")
    if index.is_file():
        shards = shard_files(directory, index)
        return (*read_safetensors(shards), f"{len(shards)} safetensors shards")
    bin_path = directory / "pytorch_model.bin"
    if bin_path.is_file():
        return (*read_bin(bin_path), "pytorch_model.bin")
    raise CheckpointError(f"{directory}: no model.safetensors, model.safetensors.index.json or "
                          "pytorch_model.bin beside config.json")


def weight_names(directory: Path) -> list[str] | None:
    """The tensor names a directory's safetensors files hold, read from their headers
    (nothing loaded); None for a pytorch_model.bin, which has no header to read."""
    from safetensors import safe_open

    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    paths = [single] if single.is_file() else \
        shard_files(directory, index) if index.is_file() else []
    if not paths:
        return None
    names = []
    for path in paths:
        check_header(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                names.extend(f.keys())
        except Exception as exc:  # SafetensorError and friends: the file is damaged
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    return names


def shard_files(directory: Path, index: Path) -> list[Path]:
    try:
        if index.stat().st_size > INDEX_LIMIT:
            raise CheckpointError(f"{index}: the index is over {INDEX_LIMIT >> 20} MiB")
        weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
        raise CheckpointError(f"{index}: unreadable shard index ({exc})") from None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{index}: no weight_map")
    names = sorted({str(v) for v in weight_map.values()})
    for name in names:
        if Path(name).name != name:  # a shard must sit in the directory itself
            raise CheckpointError(f"{index}: shard name {name!r} points outside the directory")
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: shard {name} named by the index is missing")
    return [directory / name for name in names]


def check_header(path: Path) -> None:
    """The 8-byte header length must fit the file and the format's cap."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from None
    if len(head) < 8:
        raise CheckpointError(f"{path}: too short to be a safetensors file")
    (length,) = struct.unpack("<Q", head)
    if length > HEADER_LIMIT:
        raise CheckpointError(f"{path}: the safetensors header claims {length:,} bytes, over "
                              f"the {HEADER_LIMIT:,}-byte limit (damaged or hostile)")
    if 8 + length > size:
        raise CheckpointError(f"{path}: the safetensors header claims {length:,} bytes, past "
                              f"the end of the {size:,}-byte file")


def read_safetensors(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    weights: dict[str, torch.Tensor] = {}
    stored: dict[str, str] = {}
    for path in paths:
        check_header(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    if name in weights:
                        raise CheckpointError(f"tensor {name} appears in two shards")
                    tensor = f.get_tensor(name)
                    stored[name] = str(tensor.dtype).removeprefix("torch.")
                    weights[name] = as_float(tensor, name)
        except CheckpointError as exc:
            raise CheckpointError(f"{path}: {exc}") from None
        except Exception as exc:  # SafetensorError and friends: the file is damaged
            text = str(exc).strip().splitlines()
            raise CheckpointError(f"{path}: not a valid safetensors file "
                                  f"({text[0][:200] if text else type(exc).__name__})") from None
    return weights, stored


def read_bin(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from minigpt.models.safe_load import read_checkpoint  # weights_only, refusals in one line

    obj = read_checkpoint(path)
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict of tensors")
    stored = {k: str(v.dtype).removeprefix("torch.") for k, v in obj.items()}
    return {k: as_float(v, k) for k, v in obj.items()}, stored


def as_float(tensor: torch.Tensor, name: str) -> torch.Tensor:
    if not tensor.is_floating_point():
        raise CheckpointError(f"tensor {name} has dtype {tensor.dtype}; expected floating point")
    return tensor if tensor.dtype == torch.float32 else tensor.float()
