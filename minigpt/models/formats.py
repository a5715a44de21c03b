"""Checkpoint layouts: detect what a loaded object is and build the model for it."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from minigpt.errors import CheckpointError
from minigpt.models.book import Model
from minigpt.models.hparams import HParams

BOOK_REQUIRED = ("d_model", "context_length", "num_blocks", "num_heads", "max_token_value")
SUPPORTED = ("book train.py {'model_state_dict', 'h_params'}", "bare book state dict",
             "bare first-edition state dict (model-ckpt.pt)", "nanoGPT ckpt.pt {'model', "
             "'model_args'}")


@dataclass
class Layout:
    name: str
    h_params: dict  # as the file holds them (the book's dict, extra keys included)
    state_dict: dict[str, torch.Tensor]
    make_model: Callable[[HParams], torch.nn.Module]
    inferred: list[str] = field(default_factory=list)
    tensors: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)
    tokenizer: str = "cl100k_base"  # "nanogpt": meta.pkl / gpt2; "hf": the directory's own
    dataset: str | None = None
    hparams_of: HParams | None = None  # a Hugging Face model's (h_params is its config)
    eos_ids: tuple[int, ...] = ()  # tokens that end a run
    chat: object = None  # a Hugging Face instruct tune's ChatTemplate
    chat_error: str = ""  # why its template cannot be used, where it has one
    backend: str = "native"  # "hf": transformers builds and runs it
    ready_tokenizer: object = None  # a GGUF file's own tokenizer, read with the file

    @property
    def hparams(self) -> HParams:
        return self.hparams_of or HParams.from_book(self.h_params)

    def build_model(self) -> torch.nn.Module:
        if self.hparams_of is not None:  # built as its tensors were read (minigpt.models.hf)
            return self.make_model()
        # Absurd h_params allocate nothing: every size the model is built with must be a
        # size of a tensor really in the file (and those hold all their elements, see
        # safe_load.check_tensor_storage). Cheaper than building on the meta device,
        # which imports torch._dynamo (about 2 s) just to check shapes.
        check_dimensions(self.hparams, self.state_dict)
        check_allocation(self)
        model = self.make_model(self.h_params)  # the file's dict: model.h_params keeps it
        check_state_dict(model, self.state_dict)
        model.load_state_dict(self.state_dict, strict=True)
        return model


def describe_tensors(sd: dict) -> list[tuple[str, tuple[int, ...], str]]:
    return [(k, tuple(v.shape), str(v.dtype).replace("torch.", "")) for k, v in sd.items()]


def as_float32(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """float16/bfloat16 checkpoints load into the float32 model."""
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def check_dimensions(hp: HParams, sd: dict[str, torch.Tensor]) -> None:
    sizes = {size for tensor in sd.values() for size in tensor.shape}
    for key, value in (("d_model", hp.d_model), ("context_length", hp.context_length),
                       ("max_token_value", hp.vocab_size)):
        if value not in sizes:
            raise CheckpointError(f"h_params[{key!r}] = {value} is the size of no tensor in "
                                  "the file: the h_params do not describe these weights")
    if hp.num_blocks > len(sd) or hp.num_heads > hp.d_model:
        raise CheckpointError(f"h_params claim {hp.num_blocks} blocks of "
                              f"{hp.num_heads} heads: more than the file holds")


ALLOCATION_SLACK = 2**26  # elements (256 MB as float32) a model may build beyond its file's


def check_allocation(layout: Layout) -> None:
    """What the model builds from h_params alone — the book's [C, C] mask per head, the
    position table — must be of the order of the tensors the file holds: an unused
    [30000] tensor let context_length 30000 pass ``check_dimensions``, and the masks
    took every byte of the machine before the shapes were compared."""
    hp = layout.hparams
    C, d = hp.context_length, hp.d_model
    built = C * d  # position table (or wpe)
    if layout.make_model is Model:
        built += hp.num_blocks * hp.num_heads * C * C
    held = sum(t.numel() for t in layout.state_dict.values())
    if built > 2 * held + ALLOCATION_SLACK:
        raise CheckpointError(
            f"h_params (context_length {C}) ask for {built * 4 / 2**20:,.0f} MB of masks and "
            f"position tables, but the file's tensors hold {held * 4 / 2**20:,.0f} MB: the "
            "h_params do not describe these weights")


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


def _check_counts(hp: dict, sd: dict) -> None:
    """h_params must agree with the tensors present (and so cannot ask for a billion heads)."""
    blocks = len({m.group(1) for k in sd if (m := _BLOCK.match(k))})
    heads = len({m.group(1) for k in sd if (m := _HEAD.match(k))})
    if hp["num_blocks"] != blocks:
        raise CheckpointError(f"h_params say num_blocks={hp['num_blocks']}, but the state dict "
                              f"has {blocks} blocks")
    if hp["num_heads"] != heads:
        raise CheckpointError(f"h_params say num_heads={hp['num_heads']}, but the state dict "
                              f"has {heads} heads per block")


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
    if is_book_state_dict(sd):
        _check_counts(hp, sd)
    return Layout("book (train.py: model_state_dict + h_params)", hp, as_float32(sd), Model,
                  inferred, describe_tensors(sd))


def bare_book_layout(sd: dict) -> Layout:
    hp, notes = infer_book_h_params(sd)
    _valid_book_h_params(hp)
    return Layout("bare book state dict (scifi-demo)", hp, as_float32(sd), Model, notes,
                  describe_tensors(sd))


# --- first-edition names (the book repo's root model.py) ------------------

FIRST_EDITION_RENAMES = (
    (".layer_norm_1.", ".ln1."), (".layer_norm_2.", ".ln2."),
    (".multi_head_attention_layer.", ".mha."), (".feed_forward_layer.", ".ffn."),
    (".query_layer.", ".Wq."), (".key_layer.", ".Wk."), (".value_layer.", ".Wv."),
    (".tril", ".mask"), ("language_model_out_linear_layer.", "model_out_linear_layer."),
)


def is_first_edition(sd: dict) -> bool:
    return "language_model_out_linear_layer.weight" in sd


def first_edition_layout(sd: dict) -> Layout:
    renamed = {}
    for key, value in sd.items():
        for old, new in FIRST_EDITION_RENAMES:
            key = key.replace(old, new)
        renamed[key] = value
    hp, notes = infer_book_h_params(renamed)
    out = renamed["model_out_linear_layer.weight"]
    hp["embedding_rows"], hp["max_token_value"] = hp["max_token_value"], int(out.shape[0])
    notes[0] = (f"d_model={hp['d_model']} from the embedding, max_token_value="
                f"{hp['max_token_value']} from the output layer (the embedding has "
                f"{hp['embedding_rows']} rows)")
    _valid_book_h_params(hp)
    return Layout("bare state dict, first-edition names (model-ckpt.pt)", hp,
                  as_float32(renamed), Model, notes, describe_tensors(sd))


# --- nanoGPT ------------------------------------------------------------------

def nanogpt_layout(obj: dict) -> Layout:
    from minigpt.models.nanogpt import NanoGPT

    args = obj["model_args"]
    if not isinstance(args, dict):
        raise CheckpointError("model_args is not a dict")
    sd = _tensor_dict(obj["model"], "model")
    prefix = "_orig_mod."
    stripped = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in sd.items()}
    # Older nanoGPT saved the causal-mask buffer as attn.bias; it is not a weight.
    stripped = {k: v for k, v in stripped.items()
                if not (k.endswith(".attn.bias") and v.dim() == 4)}
    if "lm_head.weight" not in stripped and "transformer.wte.weight" in stripped:
        stripped["lm_head.weight"] = stripped["transformer.wte.weight"]  # tied
    try:
        hp = {"d_model": int(args["n_embd"]), "num_blocks": int(args["n_layer"]),
              "num_heads": int(args["n_head"]), "context_length": int(args["block_size"]),
              "max_token_value": int(args["vocab_size"]), "bias": bool(args.get("bias", True)),
              "dropout": 0.0}
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"model_args lacks {exc}: need n_layer, n_head, n_embd, "
                              "block_size, vocab_size") from None
    _valid_book_h_params(hp)
    layers = len({k.split(".")[2] for k in stripped if k.startswith("transformer.h.")})
    if layers != hp["num_blocks"]:
        raise CheckpointError(f"model_args say n_layer={hp['num_blocks']}, but the state dict "
                              f"has {layers} blocks")
    config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
    notes = ["h_params from model_args (n_embd, n_layer, n_head, block_size, vocab_size, bias)"]
    if any(k.startswith(prefix) for k in sd):
        notes.append("stripped the _orig_mod. prefix (torch.compile)")
    dataset = config.get("dataset") if isinstance(config.get("dataset"), str) else None
    return Layout("nanoGPT ckpt.pt (model + model_args)", hp, as_float32(stripped), NanoGPT,
                  notes, describe_tensors(sd), tokenizer="nanogpt", dataset=dataset)


def detect_format(obj: object, path: Path) -> Layout:
    """Pick the layout from the keys; unknown layouts get one line naming what was found."""
    try:
        if isinstance(obj, dict):
            if "model_state_dict" in obj and "h_params" in obj:
                return book_layout(obj)
            if "model" in obj and "model_args" in obj:
                return nanogpt_layout(obj)
            if all(isinstance(v, torch.Tensor) for v in obj.values()):
                if is_book_state_dict(obj):
                    return bare_book_layout(_tensor_dict(obj, "the state dict"))
                if is_first_edition(obj):
                    return first_edition_layout(_tensor_dict(obj, "the state dict"))
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
