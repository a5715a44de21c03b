"""GGUF files (llama.cpp, Ollama, LM Studio): ``minigpt-tui model.gguf``.

The ``gguf`` package reads the file (memory-mapped) and dequantizes each tensor to
float32 (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K…Q6_K and the rest it knows);
Llama-family and Qwen2 files run on our native decoders (llama.cpp's converter permuted
Llama's q/k rows for its rotary layout: undone here, as transformers undoes it); other
architectures run through transformers (``from_pretrained(gguf_file=…)``). The tokenizer
and the chat template come from the file's own metadata, through transformers' GGUF
tokenizer converter, so prompt and chat ids are transformers' (the ``hf`` extra).

A hostile file (lying counts, strings or arrays past the file, unknown quant types) is one
line in bounded memory: the header and every metadata length are checked against the
file before the reader builds anything.
"""

from __future__ import annotations

import contextlib
import io
import json
import mmap
import struct
from pathlib import Path

import numpy as np
import torch

from minigpt.errors import CheckpointError
from minigpt.backends.hf import INSTALL, transformers_module

MAGIC = b"GGUF"
NATIVE = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}
MAX_ENTRIES = 1 << 20  # metadata entries and tensors a file may declare
MAX_ARRAY = 1 << 23  # elements of one metadata array (vocabularies: a few 100k)
MAX_STRING = 16 << 20  # bytes of one metadata string (chat templates: tens of KB)
LAYER = {"attn_norm.weight": "input_layernorm.weight",
         "ffn_norm.weight": "post_attention_layernorm.weight",
         "attn_q.weight": "self_attn.q_proj.weight", "attn_q.bias": "self_attn.q_proj.bias",
         "attn_k.weight": "self_attn.k_proj.weight", "attn_k.bias": "self_attn.k_proj.bias",
         "attn_v.weight": "self_attn.v_proj.weight", "attn_v.bias": "self_attn.v_proj.bias",
         "attn_output.weight": "self_attn.o_proj.weight",
         "ffn_gate.weight": "mlp.gate_proj.weight", "ffn_up.weight": "mlp.up_proj.weight",
         "ffn_down.weight": "mlp.down_proj.weight"}
TOP = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight",
       "output.weight": "lm_head.weight"}
# Value types of GGUF metadata: fixed sizes, string (8), array (9).
SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def is_gguf(path: Path) -> bool:
    """Only a regular file is opened: opening a FIFO would wait for a writer forever (the
    loader's own checks then say "not a regular file")."""
    try:
        if not path.is_file():
            return False
        with open(path, "rb") as f:
            return f.read(4) == MAGIC
    except OSError:
        return False


def check_header(path: Path) -> None:
    """Walk the header and the metadata with every count and length checked against the
    file, before ``GGUFReader`` (which trusts them) builds a Python object per element."""
    size = path.stat().st_size
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
        def take(fmt: str, at: int) -> tuple[int, int]:
            width = struct.calcsize(fmt)
            if at + width > size:
                raise CheckpointError("the GGUF header runs past the end of the file")
            return struct.unpack_from(fmt, data, at)[0], at + width

        version, at = take("<I", 4)
        if version not in (2, 3):
            raise CheckpointError(f"GGUF version {version} is not supported (2 and 3 are)")
        tensors, at = take("<Q", at)
        entries, at = take("<Q", at)
        if tensors > MAX_ENTRIES or entries > MAX_ENTRIES or (tensors + entries) * 8 > size:
            raise CheckpointError(f"the GGUF header claims {tensors:,} tensors and {entries:,} "
                                  "metadata entries, more than the file can hold (damaged or "
                                  "hostile)")

        def string(at: int) -> int:
            length, at = take("<Q", at)
            if length > MAX_STRING or at + length > size:
                raise CheckpointError(f"a GGUF metadata string claims {length:,} bytes "
                                      "(past the file or over 16 MiB)")
            return at + length

        def value(kind: int, at: int) -> int:
            if kind in SIZES:
                if at + SIZES[kind] > size:
                    raise CheckpointError("the GGUF metadata runs past the end of the file")
                return at + SIZES[kind]
            if kind == 8:
                return string(at)
            if kind == 9:
                inner, at = take("<I", at)
                count, at = take("<Q", at)
                if count > MAX_ARRAY or (inner in SIZES and at + count * SIZES[inner] > size):
                    raise CheckpointError(f"a GGUF metadata array claims {count:,} elements "
                                          "(past the file or over 8 M)")
                if inner in SIZES:
                    return at + count * SIZES[inner]
                for _ in range(count):
                    at = value(inner, at)
                return at
            raise CheckpointError(f"unknown GGUF metadata type {kind} (damaged or hostile)")

        for _ in range(entries):
            at = string(at)
            kind, at = take("<I", at)
            at = value(kind, at)


def read(path: Path):
    """The file's ``GGUFReader``; any failure (offsets past the file, an unknown quant
    type) one line."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise CheckpointError(f"GGUF files need the gguf package: {INSTALL}") from None
    check_header(path)
    try:
        return GGUFReader(str(path))
    except Exception as exc:  # ValueError, IndexError, struct.error, …: damaged or hostile
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"not a readable GGUF file ({type(exc).__name__}: "
                              f"{first[0][:200] if first else ''})") from None


def field(reader, key: str, default=None):
    found = reader.fields.get(key)
    if found is None:
        return default
    try:
        return found.contents()
    except Exception:  # a field of the wrong shape: as if absent
        return default


def hf_config(reader, arch: str, names: set[str]) -> dict:
    """The Hugging Face config a Llama or Qwen2 GGUF stands for (what hf.py checks and
    builds from), from the file's metadata and tensor shapes."""
    scaling = field(reader, f"{arch}.rope.scaling.type")
    if scaling not in (None, "none"):
        raise CheckpointError(f"rope scaling {scaling!r} is not supported (only the default "
                              "rotary embedding is)")
    heads = field(reader, f"{arch}.attention.head_count")
    config = {
        "architectures": [NATIVE[arch]], "model_type": arch,
        "hidden_size": field(reader, f"{arch}.embedding_length"),
        "intermediate_size": field(reader, f"{arch}.feed_forward_length"),
        "num_hidden_layers": field(reader, f"{arch}.block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": field(reader, f"{arch}.attention.head_count_kv", heads),
        "rms_norm_eps": field(reader, f"{arch}.attention.layer_norm_rms_epsilon", 1e-6),
        "rope_theta": field(reader, f"{arch}.rope.freq_base", 10000.0),
        "max_position_embeddings": field(reader, f"{arch}.context_length", 2048),
        "tie_word_embeddings": "output.weight" not in names,
        "attention_bias": arch == "llama" and "blk.0.attn_q.bias" in names,
    }
    head_dim = field(reader, f"{arch}.attention.key_length")
    if head_dim is not None:
        config["head_dim"] = head_dim
    embedding = next((t for t in reader.tensors if t.name == "token_embd.weight"), None)
    if embedding is None:
        raise CheckpointError("missing tensors: token_embd.weight")
    config["vocab_size"] = int(embedding.shape[-1])
    return config


def hf_name(name: str) -> str | None:
    if name in TOP:
        return TOP[name]
    parts = name.split(".", 2)
    if len(parts) == 3 and parts[0] == "blk" and parts[1].isdigit() and parts[2] in LAYER:
        return f"model.layers.{parts[1]}.{LAYER[parts[2]]}"
    return None


def unpermute(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's converter interleaved each head's rotary halves of q and k rows; back
    to the rotate-half layout the checkpoint had (as transformers undoes it)."""
    half = weights.shape[0] // heads // 2
    return weights.reshape(heads, half, 2, *weights.shape[1:]).swapaxes(2, 1) \
        .reshape(weights.shape)


def dequantized(reader, config: dict, arch: str, progress) -> tuple[dict, list]:
    """HF-named float32 tensors, one at a time from the memory-mapped file; and what
    ``inspect`` shows of each (its GGUF name's HF name, shape, quant type)."""
    from gguf import dequantize

    weights, shown = {}, []
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    for tensor in reader.tensors:
        name = hf_name(tensor.name)
        if name is None:
            continue  # rope frequencies and the like: computed, not loaded
        try:
            out = dequantize_rows(tensor, dequantize)
        except Exception as exc:  # NotImplementedError for a type the package lacks, …
            raise CheckpointError(f"tensor {tensor.name} ({tensor.tensor_type.name}) cannot "
                                  f"be dequantized: {str(exc)[:200]}") from None
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            out = torch.from_numpy(unpermute(out.numpy(), heads if "q_proj" in name else kv)
                                   .copy())
        weights[name] = out
        shown.append((name, tuple(out.shape), tensor.tensor_type.name))
    return weights, shown


ROWS_AT_ONCE = 2048  # rows dequantized together: the temporaries stay a few MB


def dequantize_rows(tensor, dequantize) -> torch.Tensor:
    """A tensor's float32 values, written into one buffer a block of rows at a time, so
    the dequantizer's temporaries never hold a second copy of a large matrix (the
    embedding of a 49k vocabulary is 113 MB)."""
    data = tensor.data
    rows = data[:1] if data.ndim > 1 else data
    first = dequantize(rows, tensor.tensor_type)
    if data.ndim == 1:
        return torch.from_numpy(np.array(first, dtype=np.float32))
    out = torch.empty((data.shape[0], *first.shape[1:]), dtype=torch.float32)
    values = out.numpy()  # the same memory: blocks are copied in, never wrapped
    for start in range(0, data.shape[0], ROWS_AT_ONCE):
        block = dequantize(data[start:start + ROWS_AT_ONCE], tensor.tensor_type)
        values[start:start + block.shape[0]] = block
    return out


def gguf_tokenizer(path: Path):
    """The file's tokenizer and chat template, as transformers reads them from a GGUF
    (``AutoTokenizer.from_pretrained(dir, gguf_file=…)``): the same ids by construction."""
    transformers = transformers_module()
    if transformers is None:
        raise CheckpointError(f"a GGUF file's tokenizer is read through transformers: {INSTALL}")
    from minigpt.text.chat import SPECIAL_NAMES, ChatTemplate
    from minigpt.text.hf_tokenizer import HFTokenizer, _decoder_kinds

    try:
        wrapped = transformers.AutoTokenizer.from_pretrained(str(path.parent),
                                                             gguf_file=path.name,
                                                             local_files_only=True)
    except Exception as exc:
        raise CheckpointError(f"the GGUF file's tokenizer cannot be read ({type(exc).__name__}:"
                              f" {str(exc)[:200]})") from None
    backend = wrapped.backend_tokenizer
    spec = json.loads(backend.to_str())
    tokenizer = HFTokenizer(backend, "gguf", _decoder_kinds(spec.get("decoder")))
    source = wrapped.chat_template if isinstance(wrapped.chat_template, str) else None
    tokens = tuple((name, value) for name in SPECIAL_NAMES
                   if isinstance(value := getattr(wrapped, name, None), str))
    return tokenizer, (ChatTemplate(source, tokens) if source and source.strip() else None)


def eos_ids(reader) -> tuple[int, ...]:
    """The ids that end a turn: eos, and llama.cpp's end-of-turn ids where the file has
    them (eot, eom)."""
    found = [field(reader, f"tokenizer.ggml.{key}_token_id") for key in ("eos", "eot", "eom")]
    return tuple(dict.fromkeys(i for i in found if isinstance(i, int) and i >= 0))


def load_gguf(path: Path, window: int | None, progress, memory, backend: str,
              dtype: torch.dtype):
    """(``HFModel``, tokenizer) of a GGUF file: native decoders for Llama and Qwen2 (unless
    ``--backend hf``), transformers for the rest."""
    from minigpt.models.hf import HFModel, _llama, window_of

    progress("read")
    reader = read(path)
    arch = str(field(reader, "general.architecture", ""))
    names = {t.name for t in reader.tensors}
    quant = sorted({t.tensor_type.name for t in reader.tensors})
    native = arch in NATIVE and backend != "hf"
    if backend == "native" and not native:
        raise CheckpointError(f"GGUF architecture {arch!r} has no native decoder (llama and "
                              "qwen2 have): --backend hf runs it through transformers")
    config = hf_config(reader, arch, names) if native else None
    ends = eos_ids(reader)
    if native:  # the metadata is read: its objects (a vocabulary's strings: 150 MB for
        reader.fields.clear()  # 49k tokens) go before the weights come in
    tokenizer, chat = gguf_tokenizer(path)  # its own pass over the file, weights not in yet
    if native:
        make, hp, notes = _llama(config, window, memory, qwen2=arch == "qwen2")
        progress("build")
        weights, tensors = dequantized(reader, config, arch, progress)
        del reader  # the mapped file's pages, once every tensor is copied out
        model = make(weights)
        fmt = f"GGUF {arch} ({'/'.join(quant)}, dequantized to float32)"
    else:
        model, config, notes, tensors = _gguf_through_transformers(path, reader, arch, window,
                                                                   memory, progress, dtype)
        fmt = f"GGUF {arch} via transformers ({'/'.join(quant)}, dequantized)"
    if chat is not None:
        notes = [*notes, "chat template (the explorer opens in chat mode; --no-chat types raw text)"]
    shown = {k: v for k, v in config.items() if not isinstance(v, (list, dict)) or k == "architectures"}
    hf = HFModel(model, {**shown, "gguf_architecture": arch, "quantization": "/".join(quant)},
                 fmt, notes, tensors, ends, chat, "", "hf" if not native else "native")
    return hf, tokenizer


def _gguf_through_transformers(path, reader, arch, window, memory, progress, dtype):
    from minigpt.models.hf import window_of
    from minigpt.backends.hf import TransformersModel

    transformers = transformers_module()
    if transformers is None:
        raise CheckpointError(f"GGUF architecture {arch!r} runs through transformers: {INSTALL}")
    heads = field(reader, f"{arch}.attention.head_count") or 1
    heads = heads if isinstance(heads, int) else max(heads)
    kv = field(reader, f"{arch}.attention.head_count_kv", heads)
    kv = kv if isinstance(kv, int) else max(kv)
    layers = field(reader, f"{arch}.block_count") or 1
    head_dim = field(reader, f"{arch}.attention.key_length") or \
        (field(reader, f"{arch}.embedding_length") or heads) // heads
    limit = field(reader, f"{arch}.context_length") or 2048
    size, notes = window_of(int(limit), window, int(layers) * 2 * int(kv) * int(head_dim),
                            memory)
    progress("build")
    import warnings

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        # Its GGUF loader draws a tqdm bar of its own on stderr (not transformers' switch).
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            inner = transformers.AutoModelForCausalLM.from_pretrained(
                str(path.parent), gguf_file=path.name, dtype=dtype,
                attn_implementation="eager", local_files_only=True, trust_remote_code=False)
    except Exception as exc:
        raise CheckpointError(f"transformers could not open this GGUF ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
    inner.eval()
    inner.hf_quantizer = None  # dequantized already: a plain float model from here on
    model = TransformersModel(inner, size)
    tensors = [(k, tuple(v.shape), str(v.dtype).removeprefix("torch."))
               for k, v in inner.state_dict().items()]
    config = inner.config.to_diff_dict()  # what this file sets, not every default
    return model, config, [*notes, "backend hf: transformers runs it (eager attention)"], tensors
