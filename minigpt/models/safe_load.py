"""The safe read of a PyTorch checkpoint file: ``torch.load(..., weights_only=True,
map_location="cpu")`` after checks that keep a damaged or hostile file to one line and
bounded memory; a file that needs arbitrary pickled objects is refused, naming them."""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
import zipfile
from pathlib import Path

import torch

from minigpt.errors import CheckpointError, clip
from minigpt.paths import require_regular_file

MIN_TORCH = (2, 6)


def check_torch_version(version: str = torch.__version__) -> None:
    """weights_only loading could be bypassed before torch 2.6 (CVE-2025-32434)."""
    parts = version.split("+")[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return
    if (major, minor) < MIN_TORCH:
        raise CheckpointError(
            f"torch {version} is too old to load checkpoints safely (CVE-2025-32434): "
            "install torch >= 2.6"
        )


def read_checkpoint(path: str | os.PathLike) -> object:
    """The safe ``torch.load``; every failure becomes one ``CheckpointError`` line."""
    check_torch_version()
    path = Path(path)
    if path.is_dir():
        inside = [path / name for name in ("ckpt.pt", "model.ckpt") if (path / name).is_file()]
        hint = f": did you mean {inside[0]}?" if inside else \
            " (a Hugging Face model directory holds config.json)"
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file{hint}")
    require_regular_file(path, "checkpoint file", CheckpointError)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror})") from exc
    if size == 0:
        raise CheckpointError(f"{path}: the file is empty")
    check_archive_sizes(path, size)
    try:
        with warnings.catch_warnings():
            # torch warns about unusual pickle protocols before it fails: the error we
            # raise says it in one line.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        needs = outside_globals(path)
        if needs or "Unsupported global" in text or "allowed global" in text or "REDUCE" in text:
            named = f" ({', '.join(needs[:3])})" if needs else ""
            raise CheckpointError(
                f"{path}: refused for safety: it needs arbitrary pickled Python objects"
                f"{named}, which could run code; only tensors and plain containers are loaded"
            ) from exc
        if is_vocabulary_pickle(path):
            raise CheckpointError(f"{path}: this is a nanoGPT vocabulary (meta.pkl), not a "
                                  "checkpoint: pass it with --tokenizer") from exc
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (unreadable pickle)") from exc
    except PermissionError as exc:
        raise CheckpointError(f"{path}: permission denied") from exc
    except Exception as exc:  # zip, pickle and storage errors of every kind
        if isinstance(exc, MemoryError):
            raise CheckpointError(f"{path}: the file claims more memory than is available "
                                  "(damaged?)") from exc
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint (damaged or truncated file: "
            f"{_first_line(exc)})"
        ) from exc
    check_tensor_storage(obj, path)
    return obj


# torch writes archive members uncompressed, so a checkpoint's members add up to about
# its own size; more is a zip bomb (or damage), refused before anything is inflated.
ARCHIVE_SLACK_BYTES = 64 << 20


def check_archive_sizes(path: Path, size: int) -> None:
    try:
        if not zipfile.is_zipfile(path):
            return
        with zipfile.ZipFile(path) as archive:
            declared = sum(info.file_size for info in archive.infolist())
    except Exception:  # a damaged archive: torch.load says so in its own words
        return
    if declared > 2 * size + ARCHIVE_SLACK_BYTES:
        raise CheckpointError(f"{path}: refused: its archive declares {declared:,} bytes "
                              f"inside a {size:,}-byte file (a zip bomb, or damage)")


def check_tensor_storage(obj, path: Path) -> None:
    """Refuse tensors whose shape claims more elements than their storage holds
    (stride 0, overlapping strides): loaded, they would be materialised at their full
    size, so a few kilobytes could claim gigabytes."""
    stack, seen = [obj], 0
    while stack and seen < 100_000:
        item = stack.pop()
        seen += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif isinstance(item, torch.Tensor) and item.numel():
            if item.untyped_storage().nbytes() < item.numel() * item.element_size():
                raise CheckpointError(
                    f"{path}: refused: a tensor of shape {list(item.shape)} is backed by "
                    f"{item.untyped_storage().nbytes():,} bytes (stride 0 or overlapping): "
                    "real weights hold every element")


def is_vocabulary_pickle(path: Path) -> bool:
    """A nanoGPT meta.pkl (a plain dict with stoi/itos), read without running anything."""
    from minigpt.text.vocab import read_meta_pkl

    if path.stat().st_size > 64 << 20:
        return False
    try:
        read_meta_pkl(path)
        return True
    except Exception:
        return False


SAFE_MODULES = ("torch", "collections")  # what a plain checkpoint's pickle names


def outside_globals(path: Path, limit: int = 64 << 20) -> list[str]:
    """Globals a pickle names outside torch and collections, read with ``pickletools``
    (which parses opcodes and executes nothing). Looks inside torch's zip format too."""
    try:  # a bounded prefix only: the file (or the inflated member) may be huge
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                name = next((n for n in archive.namelist() if n.endswith("data.pkl")), None)
                data = b""
                if name:
                    with archive.open(name) as member:
                        data = member.read(limit)
        else:
            with open(path, "rb") as f:
                data = f.read(limit)
    except Exception:  # a damaged archive of any kind: this is only a diagnosis
        return []
    found: list[str] = []
    strings: list[str] = []
    try:
        for opcode, arg, _ in pickletools.genops(data):
            if isinstance(arg, str):
                strings.append(arg)
            if opcode.name == "GLOBAL":
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) >= 2:
                found.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # a damaged pickle: judge by what was read before the damage
        pass
    return [g for g in dict.fromkeys(found) if not g.startswith(SAFE_MODULES)]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return clip(text[0] if text else type(exc).__name__)
