"""Hugging Face model directories: GPT-2, Llama and Qwen2, offline, as transformers
computes them.

A directory (``config.json`` + ``model.safetensors``, shards with their index, or
``pytorch_model.bin``), the path of its ``config.json``, or a hub cache folder
(``models--org--name/`` with ``refs/main`` and ``snapshots/<rev>/``). Nothing is
downloaded. Whatever this module does not implement exactly — another architecture,
rope scaling, sliding-window attention — is refused in one line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.errors import CheckpointError, TokenizerError
from minigpt.paths import read_json_object
from minigpt.models.hf_weights import read_weights
from minigpt.models.hparams import HParams
from minigpt.text.chat import find_chat_template

SUPPORTED = ("GPT2LMHeadModel", "LlamaForCausalLM", "Qwen2ForCausalLM")
MODEL_TYPES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM",
               "qwen2": "Qwen2ForCausalLM"}
CONFIG_LIMIT = 10 * 2**20
WINDOW_STEP = 256  # a window cut to fit memory is a multiple of this


def find_model_dir(path: Path) -> Path | None:
    """The directory holding ``config.json`` that ``path`` names, or None (not HF)."""
    if path.is_file() and path.name == "config.json":
        return path.parent
    if not path.is_dir():
        return None
    if (path / "config.json").is_file():
        return path
    snapshots = path / "snapshots"
    if snapshots.is_dir():  # a hub cache folder: refs/main names the revision
        revision = read_revision(path / "refs" / "main")
        chosen = snapshots / revision if revision else None
        if chosen is not None and chosen.resolve().parent != snapshots.resolve():
            raise CheckpointError(f"{path}: snapshots/{revision} leads outside the cache "
                                  "folder (a symbolic link)")
        if chosen is None or not (chosen / "config.json").is_file():
            found = sorted(d for d in snapshots.iterdir() if (d / "config.json").is_file())
            if len(found) != 1:
                raise CheckpointError(f"{path}: a hub cache folder without a usable refs/main "
                                      f"and {len(found)} snapshots: pass snapshots/<rev>")
            chosen = found[0]
        return chosen
    return None


REVISION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def read_revision(ref: Path) -> str:
    """A hub cache's ``refs/main``: a commit hash or another short name inside
    ``snapshots/`` ("" where there is no such file). Read to a bound (a 1.5 GB one was
    read whole); a path, ``..`` or anything else is one line."""
    if not ref.is_file():
        return ""
    try:
        with open(ref, "rb") as f:
            data = f.read(257)
    except OSError as exc:
        raise CheckpointError(f"{ref}: cannot read ({exc.strerror})") from None
    revision = data.decode("ascii", "replace").strip()
    if len(data) > 256 or not REVISION.fullmatch(revision) or ".." in revision:
        raise CheckpointError(f"{ref}: not a revision name (a short name inside snapshots/, "
                              "such as a commit hash)")
    return revision


def read_json(path: Path, what: str) -> dict:
    return read_json_object(path, what, CheckpointError, CONFIG_LIMIT)


BACKENDS = ("auto", "native", "hf")


def architecture(config: dict) -> str:
    """The config's architecture class name ("" where it names none)."""
    names = config.get("architectures") or [MODEL_TYPES.get(config.get("model_type"), "")]
    return str(names[0]) if isinstance(names, list) and names else str(names)


def choose_backend(name: str, config: dict, backend: str) -> str:
    """``native`` (our decoders: GPT-2, Llama, Qwen2) or ``hf`` (transformers itself):
    ``auto`` is native where we have it, else transformers when it is installed."""
    from minigpt.backends.hf import INSTALL, transformers_module

    if backend not in BACKENDS:
        raise CheckpointError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    shown = name or f"model_type {config.get('model_type')!r}"
    if backend == "native" or (backend == "auto" and name in SUPPORTED):
        if name not in SUPPORTED:
            raise CheckpointError(f"architecture {shown} has no native decoder (those are "
                                  f"{', '.join(SUPPORTED)}): --backend hf runs it through "
                                  "transformers")
        return "native"
    if transformers_module() is None:
        raise CheckpointError(f"architecture {shown} opens through transformers, which is "
                              f"not installed: {INSTALL}")
    if not name.endswith("ForCausalLM") or not hasattr(transformers_module(), name):
        raise CheckpointError(f"unsupported architecture {shown}: neither built in (those are "
                              f"{', '.join(SUPPORTED)}) nor a causal LM transformers knows")
    return "hf"


@dataclass(frozen=True)
class Memory:
    """What the KV cache may take: ``budget`` bytes (None: no limit known), at
    ``element_size`` bytes per number (the weights' dtype)."""

    budget: int | None = None
    element_size: int = 4


def window_of(limit: int, window: int | None, per_position: int,
              memory: Memory) -> tuple[int, list[str]]:
    """The KV cache's window: the model's own positions (``limit``), capped by
    ``--window``, or by default as many as fit ``memory``'s budget (``per_position``:
    numbers one position keeps, keys and values of every layer)."""
    cache = lambda size: size * per_position * memory.element_size  # noqa: E731
    if window is not None:
        if window < 1:
            raise CheckpointError(f"--window must be ≥ 1, got {window}")
        size = min(window, limit)
        return size, [f"window {size:,} of the model's {limit:,} positions (--window); "
                      f"KV cache {cache(size) / 2**20:,.0f} MiB"]
    budget = memory.budget
    if budget is None or cache(limit) <= budget:
        return limit, [f"window {limit:,} (the model's positions); KV cache "
                       f"{cache(limit) / 2**20:,.0f} MiB"]
    fits = budget // (per_position * memory.element_size)
    size = max(min(WINDOW_STEP, limit), fits // WINDOW_STEP * WINDOW_STEP)
    return size, [f"window {size:,} of the model's {limit:,} positions: a KV cache of "
                  f"{cache(limit) / 2**20:,.0f} MiB for all of them is over a quarter of the "
                  f"memory free ({budget * 4 / 2**20:,.0f} MiB); --window N changes it"]


def _number(config: dict, key: str, default: float, low: float = 0.0,
            low_allowed: bool = True) -> float:
    """A finite number ≥ ``low`` (> ``low`` unless ``low_allowed``), or one line naming the
    field (a rope_theta of 0 or NaN gave NaN rotary tables; a negative rms_norm_eps was
    blamed on damaged weights)."""
    value = config.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value) and (value >= low if low_allowed else value > low)
    if not ok:
        wanted = f"≥ {low:g}" if low_allowed else f"> {low:g}"
        raise CheckpointError(f"config.json: {key} must be a finite number {wanted}, got "
                              f"{value!r}")
    return float(value)


def check_layer_count(weights: dict, pattern: str, declared: int, key: str) -> None:
    """The layers the config declares are the layers the tensors hold, checked before the
    model is built (100,000 declared layers ran 120 s at 1.5 GB, building)."""
    found = {int(m[1]) for name in weights if (m := re.match(pattern, name))}
    if found != set(range(declared)):
        raise CheckpointError(f"config.json: {key} is {declared:,} but the tensors hold "
                              f"{len(found):,} layers")


def _int(config: dict, key: str, default=None) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(f"config.json: {key} must be a positive integer, got {value!r}")
    return value


@dataclass
class HFModel:
    """What ``load`` needs from a directory: the model, its notes and its stop ids."""

    model: torch.nn.Module
    config: dict
    format: str
    notes: list[str]
    tensors: list[tuple[str, tuple[int, ...], str]]
    eos_ids: tuple[int, ...]
    chat: object = None  # minigpt.text.chat.ChatTemplate, for instruct tunes
    chat_error: str = ""  # why a template the directory has cannot be used
    backend: str = "native"  # "hf": transformers runs it


def load_hf_model(directory: Path, window: int | None = None, progress=None,
                  memory: Memory = Memory(), backend: str = "auto") -> HFModel:
    config = read_json(directory / "config.json", "config.json")
    name = architecture(config)
    progress = progress or (lambda stage: None)
    backend = choose_backend(name, config, backend)
    if backend == "hf":
        model, notes, tensors, fmt = _through_transformers(directory, config, name, window,
                                                           memory, progress)
    else:
        if name == "GPT2LMHeadModel":
            make, hp, notes = _gpt2(config, window, memory)
        else:
            make, hp, notes = _llama(config, window, memory, qwen2=name == "Qwen2ForCausalLM")
        progress("read")
        weights, stored, files = read_weights(directory)
        tensors = [(k, tuple(v.shape), stored[k]) for k, v in weights.items()]
        progress("build")
        model = make(weights)
        kinds = sorted(set(stored.values()))
        fmt = f"Hugging Face {name} ({files}, stored {'/'.join(kinds)})"
    chat_error = ""
    try:
        chat = find_chat_template(directory)
    except TokenizerError as exc:  # the model still runs on raw text (too large, not
        chat, chat_error = None, str(exc)  # UTF-8 or not parsing: all the same)
        notes = [*notes, f"{exc} (raw text only)"]
    if chat is not None:
        notes = [*notes, "chat template (the explorer opens in chat mode; --no-chat types raw text)"]
    return HFModel(model, config, fmt, notes, tensors, eos_ids(directory, config), chat,
                   chat_error, backend)


def _through_transformers(directory: Path, config: dict, name: str, window: int | None,
                          memory: Memory, progress):
    """The ``hf`` backend: transformers builds and runs the model. The config's sizes are
    checked against the files first (a layer count the tensors do not hold would build
    for minutes), and the window is chosen as for the native models."""
    from minigpt.models.hf_weights import weight_names
    from minigpt.backends.hf import load_with_transformers

    text = config.get("text_config") if isinstance(config.get("text_config"), dict) else config
    layers = _int(text, "num_hidden_layers", text.get("n_layer"))
    heads = _int(text, "num_attention_heads", text.get("n_head"))
    kv = _int(text, "num_key_value_heads", heads)
    head_dim = text.get("head_dim") or _int(text, "hidden_size", text.get("n_embd")) // heads
    if not isinstance(head_dim, int) or head_dim < 1:
        raise CheckpointError(f"config.json: head_dim must be a positive integer, got "
                              f"{head_dim!r}")
    limit = _int(text, "max_position_embeddings", text.get("n_positions", 2048))
    size, notes = window_of(limit, window, layers * 2 * kv * head_dim, memory)
    progress("read")
    names = weight_names(directory)
    if names is not None:
        check_layer_count(dict.fromkeys(names), r"(?:.*\.)?(?:layers|h|blocks)\.(\d+)\.",
                          layers, "num_hidden_layers")
    progress("build")
    model = load_with_transformers(directory, config, size, torch.float32)
    tensors = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
               for k, v in model.inner.state_dict().items()]
    import transformers

    fmt = f"Hugging Face {name} via transformers {transformers.__version__}"
    return model, [*notes, "backend hf: transformers runs it (eager attention)"], tensors, fmt


def eos_ids(directory: Path, config: dict) -> tuple[int, ...]:
    """generation_config.json's eos_token_id (int or list), else config.json's."""
    generation = directory / "generation_config.json"
    source = read_json(generation, "generation_config.json") if generation.is_file() else {}
    value = source.get("eos_token_id", config.get("eos_token_id"))
    values = value if isinstance(value, list) else [value]
    return tuple(v for v in values if isinstance(v, int) and not isinstance(v, bool) and v >= 0)


# --- GPT-2 ----------------------------------------------------------------------

CONV1D = (".attn.c_attn.weight", ".attn.c_proj.weight", ".mlp.c_fc.weight", ".mlp.c_proj.weight")


def _gpt2(config: dict, window: int | None, memory: Memory):
    from minigpt.models.nanogpt import GPTShape, NanoGPT

    activation = config.get("activation_function", "gelu_new")
    if activation not in ("gelu_new", "gelu_pytorch_tanh", "gelu"):
        raise CheckpointError(f"GPT-2 activation {activation!r} is not supported "
                              "(gelu_new, gelu_pytorch_tanh, gelu are)")
    if config.get("scale_attn_by_inverse_layer_idx") or not config.get("scale_attn_weights", True):
        raise CheckpointError("GPT-2 attention scaling other than 1/√head_dim is not supported")
    if config.get("add_cross_attention"):
        raise CheckpointError("GPT-2 with cross-attention is not supported")
    if config.get("tie_word_embeddings", True) is False:
        raise CheckpointError("GPT-2 with an untied output layer is not supported")
    d, heads = _int(config, "n_embd"), _int(config, "n_head")
    if d % heads:
        raise CheckpointError(f"config.json: n_embd {d} is not divisible by n_head {heads}")
    limit = _int(config, "n_positions", config.get("n_ctx", 1024))
    layers = _int(config, "n_layer")
    size, notes = window_of(limit, window, layers * 2 * d, memory)
    hp = HParams(d, size, layers, heads, _int(config, "vocab_size"))
    shape = GPTShape("gelu" if activation == "gelu" else "gelu_new",
                     _number(config, "layer_norm_epsilon", 1e-5), config.get("n_inner"))

    def make(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        check_layer_count(weights, r"(?:transformer\.)?h\.(\d+)\.", layers, "n_layer")
        sd = {}
        for key, value in weights.items():
            if key.endswith((".attn.bias", ".attn.masked_bias")):
                continue  # causal-mask buffers, not weights
            key = key if key.startswith(("transformer.", "lm_head.")) else "transformer." + key
            if key.endswith(CONV1D) and value.dim() == 2:
                value = value.t()  # Conv1D stores [in, out]; Linear wants [out, in]
            sd[key] = value
        sd.setdefault("lm_head.weight", sd.get("transformer.wte.weight"))
        if sd["lm_head.weight"] is None:
            raise CheckpointError("missing tensors: transformer.wte.weight")
        wpe = sd.get("transformer.wpe.weight")
        if wpe is not None and wpe.shape[0] > size:
            sd["transformer.wpe.weight"] = wpe[:size]  # positions past the window: unused
        model = build(lambda: NanoGPT(hp, shape), sd)
        model.transformer.wte.weight = model.lm_head.weight
        return model

    return make, hp, notes


# --- Llama and Qwen2 -------------------------------------------------------------------

def _rope_theta(config: dict) -> float:
    for key in ("rope_scaling", "rope_parameters"):
        rope = config.get(key)
        if isinstance(rope, dict):
            kind = rope.get("rope_type", rope.get("type", "default"))
            if kind != "default":
                raise CheckpointError(f"rope scaling {kind!r} is not supported (only the "
                                      "default rotary embedding is)")
            if "rope_theta" in rope:
                return _number(rope, "rope_theta", 0.0, low_allowed=False)
        elif rope is not None:
            raise CheckpointError(f"config.json: {key} is not an object")
    return _number(config, "rope_theta", 10000.0, low_allowed=False)


def _llama(config: dict, window: int | None, memory: Memory, qwen2: bool):
    from minigpt.models.llama import Llama, LlamaConfig

    if config.get("hidden_act", "silu") != "silu":
        raise CheckpointError(f"activation {config.get('hidden_act')!r} is not supported "
                              "(silu is)")
    if qwen2 and config.get("use_sliding_window"):
        raise CheckpointError("sliding-window attention (use_sliding_window) is not supported")
    d, heads = _int(config, "hidden_size"), _int(config, "num_attention_heads")
    kv = _int(config, "num_key_value_heads", heads)
    if heads % kv:
        raise CheckpointError(f"config.json: {heads} attention heads do not group into {kv} "
                              "key/value heads")
    head_dim = config.get("head_dim") or d // heads
    if not isinstance(head_dim, int) or head_dim % 2:
        raise CheckpointError(f"config.json: head_dim must be an even integer, got {head_dim!r}")
    layers = _int(config, "num_hidden_layers")
    size, notes = window_of(_int(config, "max_position_embeddings", 2048), window,
                            layers * 2 * kv * head_dim, memory)
    hp = HParams(d, size, layers, heads, _int(config, "vocab_size"))
    bias = bool(config.get("attention_bias", False))
    c = LlamaConfig(hp, kv, head_dim, _int(config, "intermediate_size"),
                    _number(config, "rms_norm_eps", 1e-6), _rope_theta(config),
                    qkv_bias=qwen2 or bias, o_bias=bias and not qwen2,
                    mlp_bias=bool(config.get("mlp_bias", False)),
                    tied=bool(config.get("tie_word_embeddings", False)))

    def make(weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        check_layer_count(weights, r"model\.layers\.(\d+)\.", layers, "num_hidden_layers")
        sd = {k: v for k, v in weights.items() if not k.endswith("rotary_emb.inv_freq")}
        if c.tied or "lm_head.weight" not in sd:
            if not c.tied:
                raise CheckpointError("missing tensors: lm_head.weight (and the config says "
                                      "the output layer is not tied to the embedding)")
            sd["lm_head.weight"] = sd.get("model.embed_tokens.weight")
            if sd["lm_head.weight"] is None:
                raise CheckpointError("missing tensors: model.embed_tokens.weight")
        model = build(lambda: Llama(c), sd)
        model.tie()
        return model

    return make, hp, notes


def build(make_model, sd: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The model on the meta device, then the file's tensors assigned in place: no
    random initialisation and no second copy of the weights."""
    from minigpt.models.formats import check_state_dict

    with torch.device("meta"):
        model = make_model()
    check_state_dict(model, sd)
    model.load_state_dict(sd, strict=True, assign=True)
    return model
