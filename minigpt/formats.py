"""Checkpoint layouts: detect what a loaded object is and build the model for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .errors import CheckpointError
from .model import Model

BOOK_REQUIRED = ("d_model", "context_length", "num_blocks", "num_heads", "max_token_value")
SUPPORTED = ("book train.py {'model_state_dict', 'h_params'}", "bare book state dict",
             "nanoGPT ckpt.pt")


@dataclass
class Layout:
    name: str
    h_params: dict
    state_dict: dict[str, torch.Tensor]
    make_model: Callable[[dict], torch.nn.Module]
    inferred: list[str] = field(default_factory=list)
    tensors: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)

    def build_model(self) -> torch.nn.Module:
        # Check shapes on the meta device first: absurd h_params allocate nothing.
        with torch.device("meta"):
            check_state_dict(self.make_model(self.h_params), self.state_dict)
        model = self.make_model(self.h_params)
        model.load_state_dict(self.state_dict, strict=True)
        return model


def describe_tensors(sd: dict) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]


def as_float32(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16/bfloat16 checkpoints load into the float32 model."""
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def check_state_dict(model: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise CheckpointError(f"missing tensors: {_names(missing)}")
    if unexpected:
        raise CheckpointError(f"unexpected tensors: {_names(unexpected)}")
    wrong = [f"{k} is {list(sd[k].shape)}, expected {list(v.shape)}"
             for k, v in expected.items() if tuple(sd[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"mis-shaped tensors: {'; '.join(wrong[:3])}"
                              + (f" (+{len(wrong) - 3} more)" if len(wrong) > 3 else ""))
    for k, v in sd.items():
        if not v.is_floating_point():
            raise CheckpointError(f"tensor {k} has dtype {v.dtype}; expected floating point")


def _names(keys: list[str]) -> str:
    return ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")


def _tensor_dict(obj: object, what: str) -> dict[str, torch.Tensor]:
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{what} is not a state dict of tensors")
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{what} holds non-tensor entries: {_names([str(k) for k in bad])}")
    return obj


# --- the book's names -------------------------------------------------------

_BLOCK = re.compile(r"transformer_blocks\.(\d+)\.ln1\.weight$")
_HEAD = re.compile(r"transformer_blocks\.0\.mha\.heads\.(\d+)\.Wq\.weight$")


def is_book_state_dict(sd: dict) -> bool:
    return "token_embedding_lookup_table.weight" in sd and "model_out_linear_layer.weight" in sd


def infer_book_h_params(sd: dict[str, torch.Tensor]) -> tuple[dict, list[str]]:
    """d_model and vocabulary from the embedding, blocks and heads by counting, C from the mask."""
    emb = sd["token_embedding_lookup_table.weight"]
    if emb.dim() != 2:
        raise CheckpointError("token_embedding_lookup_table.weight is not a 2-D matrix")
    blocks = {int(m.group(1)) for k in sd if (m := _BLOCK.match(k))}
    heads = {int(m.group(1)) for k in sd if (m := _HEAD.match(k))}
    mask = sd.get("transformer_blocks.0.mha.heads.0.mask")
    if not blocks or not heads or mask is None or mask.dim() != 2:
        raise CheckpointError("book-style tensors without blocks, heads or mask buffer: "
                              "cannot infer the model's size")
    hp = {
        "d_model": int(emb.shape[1]),
        "max_token_value": int(emb.shape[0]),
        "num_blocks": len(blocks),
        "num_heads": len(heads),
        "context_length": int(mask.shape[0]),
        "dropout": 0.0,
    }
    notes = [f"d_model={hp['d_model']} and max_token_value={hp['max_token_value']} from the "
             "embedding", f"num_blocks={hp['num_blocks']} from the block count",
             f"num_heads={hp['num_heads']} from the heads.{{j}} count",
             f"context_length={hp['context_length']} from the mask buffer"]
    return hp, notes


def _valid_book_h_params(hp: dict) -> dict:
    for key in BOOK_REQUIRED:
        value = hp.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise CheckpointError(f"h_params[{key!r}] must be a positive integer, got {value!r}")
    if hp["d_model"] % hp["num_heads"]:
        raise CheckpointError(f"h_params: d_model {hp['d_model']} is not divisible by "
                              f"num_heads {hp['num_heads']}")
    return hp


def book_layout(obj: dict) -> Layout:
    sd = _tensor_dict(obj["model_state_dict"], "model_state_dict")
    hp = obj["h_params"]
    if not isinstance(hp, dict):
        raise CheckpointError("h_params is not a dict")
    hp = dict(hp)
    inferred: list[str] = []
    if any(k not in hp for k in BOOK_REQUIRED) and is_book_state_dict(sd):
        shapes, notes = infer_book_h_params(sd)
        for key in BOOK_REQUIRED:
            if key not in hp:
                hp[key] = shapes[key]
                inferred += [n for n in notes if n.startswith(key) or f"and {key}" in n]
    _valid_book_h_params(hp)
    return Layout("book (train.py: model_state_dict + h_params)", hp, as_float32(sd), Model,
                  inferred, describe_tensors(sd))


def bare_book_layout(sd: dict) -> Layout:
    hp, notes = infer_book_h_params(sd)
    _valid_book_h_params(hp)
    return Layout("bare book state dict (scifi-demo)", hp, as_float32(sd), Model, notes,
                  describe_tensors(sd))


def detect_format(obj: object, path: Path) -> Layout:
    """Pick the layout from the keys; unknown layouts get one line naming what was found."""
    try:
        if isinstance(obj, dict):
            if "model_state_dict" in obj and "h_params" in obj:
                return book_layout(obj)
            if all(isinstance(v, torch.Tensor) for v in obj.values()) and is_book_state_dict(obj):
                return bare_book_layout(_tensor_dict(obj, "the state dict"))
        found = _summary(obj)
    except CheckpointError as exc:
        raise CheckpointError(f"{path}: {exc}") from exc
    raise CheckpointError(f"{path}: unknown checkpoint layout ({found}); supported: "
                          + "; ".join(SUPPORTED))


def _summary(obj: object) -> str:
    if isinstance(obj, dict):
        keys = [str(k) for k in list(obj)[:5]]
        return "a dict with keys " + ", ".join(keys) + (" …" if len(obj) > 5 else "")
    return f"a {type(obj).__name__}"
