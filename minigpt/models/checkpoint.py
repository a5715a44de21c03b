"""The one loading function: path + device -> model in eval mode, h_params, tokenizer.

Always ``torch.load(..., weights_only=True, map_location="cpu")``, then move:
a checkpoint saved on cuda or mps opens on a CPU-only machine, and a file that
needs arbitrary pickled objects is refused rather than executed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from minigpt.models.devices import kv_cache_budget, resolve_device, resolve_dtype
from minigpt.models.hparams import HParams
from minigpt.errors import CheckpointError, MiniGPTError, SettingsError, TokenizerError, clip
from minigpt.settings import check_slide
from minigpt.models.formats import Layout, detect_format
from minigpt.models.gguf import is_gguf, load_gguf
from minigpt.models.hf import Memory, find_model_dir, load_hf_model
from minigpt.models.safe_load import check_torch_version, read_checkpoint  # noqa: F401 (public)
from minigpt.text.tokenizer import Tokenizer
from minigpt.text.vocab import MissingTokenizer, resolve_tokenizer

@dataclass
class LoadedModel:
    """What ``load`` returns; everything the engine, CLI and TUI need."""

    model: torch.nn.Module
    h_params: dict  # as the file holds them (inspect shows them so)
    tokenizer: Tokenizer
    format: str  # human name of the detected layout
    device: torch.device
    path: Path
    dtype: torch.dtype = torch.float32  # the weights' precision on the device (--dtype)
    inferred: list[str] = field(default_factory=list)  # what was inferred from shapes
    tensors: list[tuple[str, tuple[int, ...], str]] = field(default_factory=list)  # as stored
    eos_ids: tuple[int, ...] = ()  # tokens that end a run (Hugging Face models)
    chat: object = None  # minigpt.text.chat.ChatTemplate of an instruct tune, or None
    chat_error: str = ""  # why the directory's chat template cannot be used
    slide: int = 1  # past the window, tokens that leave it at once (minigpt.engine.window)
    backend: str = "native"  # "hf": transformers runs the model

    @property
    def hparams(self) -> HParams:
        return self.model.hparams

    @property
    def capabilities(self):
        """What this model's backend can give the views (``minigpt.steps.Capabilities``):
        everything, for our decoders and transformers alike."""
        from minigpt.steps import Capabilities

        return Capabilities()

    @property
    def vocab_size(self) -> int:
        return self.hparams.vocab_size

    @property
    def context_length(self) -> int:
        return self.hparams.context_length

    @property
    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def check_fits(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """float16 holds magnitudes up to 65,504: a larger weight would become Inf, and every
    step NaN. Refuse instead, naming the alternative (bfloat16 has float32's range)."""
    if dtype != torch.float16:
        return
    largest = max((p.detach().abs().max().item() for p in model.parameters() if p.numel()),
                  default=0.0)
    if largest > torch.finfo(torch.float16).max:
        raise SettingsError(f"a weight of magnitude {largest:.4g} does not fit float16 "
                            f"(largest 65,504): use --dtype bfloat16 or float32")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return clip(text[0] if text else type(exc).__name__)


def load(path: str | os.PathLike, device: str = "auto",
         tokenizer: Tokenizer | str | None = None, progress=None,
         need_tokenizer: bool = True, dtype: str = "float32",
         window: int | None = None, slide: int | None = None,
         backend: str = "auto", served: dict | None = None) -> LoadedModel:
    """Load any supported checkpoint onto ``device`` (auto = cuda, mps, cpu), its weights
    in ``dtype`` (float32, bfloat16, float16; the file's own precision does not matter).

    ``tokenizer``: a Tokenizer, or --tokenizer's NAME|FILE, or None for the layout's own.
    ``progress``: called with each stage's name ("read", "build", "to device").
    ``need_tokenizer`` False (``inspect``): a missing vocabulary is no error.
    ``window``: a Hugging Face model's KV-cache window (``--window``; by default all its
    positions, or as many as a quarter of the free memory holds).
    ``slide``: past the window, tokens that leave it at once (``--slide``; by default 1,
    the book's crop, for checkpoint files, and half the window for Hugging Face models,
    whose cost per token then stays flat: ``minigpt.engine.window``).
    ``backend``: for a Hugging Face directory, ``native`` (our decoders), ``hf``
    (transformers runs it) or ``auto`` (native where we have it).
    A server's address (``http://HOST:PORT``) connects to the model it holds
    (``minigpt.backends.served``; ``served``: its ``api``, ``model`` and ``timeouts``)."""
    from minigpt.backends.served import connect, is_server_url

    if is_server_url(path):
        return connect(str(path), tokenizer=tokenizer if isinstance(tokenizer, str) else None,
                       slide=slide, progress=progress, **(served or {}))
    progress = progress or (lambda stage: None)
    target, precision = resolve_device(device), resolve_dtype(dtype)
    try:
        directory = find_model_dir(Path(path))
        gguf = directory is None and is_gguf(Path(path))
        weights = weights_estimate(directory, precision) if directory is not None else \
            Path(path).stat().st_size * 8 if gguf else 0  # a 4-bit file's float32: about 8×
        memory = Memory(kv_cache_budget(target, weights) if directory is not None or gguf
                        else None, precision.itemsize)
        if gguf:
            found = read_gguf_file(Path(path), window, progress, memory, backend, precision)
        elif directory is not None:
            found = read_directory(directory, window, progress, memory, backend)
        else:
            found = read_file(Path(path), progress)
        size = found.hparams.context_length
        slide = check_slide(max(1, size // 2) if directory is not None or gguf else 1,
                            size) if slide is None else check_slide(slide, size)
        if tokenizer is None and found.ready_tokenizer is not None:
            tokenizer = found.ready_tokenizer  # a GGUF file's own
        if tokenizer is None or isinstance(tokenizer, str):
            try:
                tokenizer = resolve_tokenizer(tokenizer, found.tokenizer,
                                              found.hparams.vocab_size, directory or Path(path),
                                              found.dataset)
            except TokenizerError as exc:
                if need_tokenizer:
                    raise
                tokenizer = MissingTokenizer(str(exc))
        model = found.build_model()
        progress("to device")
        check_fits(model, precision)
        try:
            model.to(target, precision).eval()
        except (RuntimeError, TypeError) as exc:  # e.g. a dtype this device lacks
            raise SettingsError(f"cannot put the weights on {target} as "
                                f"{str(precision).removeprefix('torch.')}: "
                                f"{_first_line(exc)}") from exc
    except CheckpointError as exc:
        message = str(exc)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}")
    except MiniGPTError:
        raise
    except Exception as exc:  # a damaged file can fail in ways no list anticipates
        raise CheckpointError(f"{path}: cannot use this checkpoint ({type(exc).__name__}: "
                              f"{_first_line(exc)})") from exc
    return LoadedModel(
        model=model,
        h_params=found.h_params,
        tokenizer=tokenizer,
        format=found.name,
        device=target,
        path=Path(path),
        dtype=precision,
        inferred=found.inferred,
        tensors=found.tensors,
        eos_ids=found.eos_ids,
        chat=found.chat,
        chat_error=found.chat_error,
        slide=slide,
        backend=found.backend,
    )


def weights_estimate(directory: Path, precision: torch.dtype) -> int:
    """About the bytes a directory's weights take loaded (before they are read): its
    weight files' size, doubled where 16-bit files may load as float32."""
    files = [*directory.glob("*.safetensors"), *directory.glob("pytorch_model*.bin")]
    stored = sum(f.stat().st_size for f in files if f.is_file())
    return int(stored * max(1.0, precision.itemsize / 2))


# Files a Hugging Face model directory holds beside config.json: passed alone, they are
# the directory's, not a checkpoint (they were read as one: "unknown checkpoint layout").
DIRECTORY_FILES = (".safetensors", ".json", ".jinja", ".txt", ".model", ".bin")


def refuse_directory_file(path: Path) -> None:
    if path.suffix not in DIRECTORY_FILES:
        return
    if (path.parent / "config.json").is_file():
        raise CheckpointError(f"{path}: this file belongs to a Hugging Face model directory: "
                              f"pass the directory ({path.parent})")
    if path.suffix == ".safetensors":
        raise CheckpointError(f"{path}: a safetensors file holds weights only: pass the "
                              "model directory (config.json, tokenizer.json beside it)")


def read_file(path: Path, progress) -> Layout:
    """A checkpoint file: read safely, its layout detected (the model built later)."""
    refuse_directory_file(path)
    progress("read")
    obj = read_checkpoint(path)
    progress("build")
    return detect_format(obj, path)


def read_gguf_file(path: Path, window: int | None, progress, memory: Memory, backend: str,
                   precision: torch.dtype) -> Layout:
    """A GGUF file, as a ``Layout`` whose model is already built and which brings its own
    tokenizer (from the file's metadata)."""
    hf, tokenizer = load_gguf(path, window, progress, memory, backend, precision)
    return Layout(hf.format, hf.config, {}, lambda: hf.model, hf.notes, hf.tensors,
                  tokenizer="hf", hparams_of=hf.model.hparams, eos_ids=hf.eos_ids,
                  chat=hf.chat, chat_error=hf.chat_error, backend=hf.backend,
                  ready_tokenizer=tokenizer)


def read_directory(directory: Path, window: int | None, progress, memory: Memory,
                   backend: str = "auto") -> Layout:
    """A Hugging Face directory, as a ``Layout`` whose model is already built."""
    hf = load_hf_model(directory, window, progress, memory, backend)
    return Layout(hf.format, hf.config, {}, lambda: hf.model, hf.notes, hf.tensors,
                  tokenizer="hf", hparams_of=hf.model.hparams, eos_ids=hf.eos_ids,
                  chat=hf.chat, chat_error=hf.chat_error, backend=hf.backend)
