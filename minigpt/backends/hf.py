"""The ``hf`` backend: any causal LM that transformers knows (Gemma 3, Qwen3, Mistral,
Phi-3, SmolLM3, OLMo 2, Granite, …), run by transformers itself, so its numbers are
transformers' by construction.

``TransformersModel`` gives the wrapped ``AutoModelForCausalLM`` the shape the rest of
the code asks of a model (``hparams``, ``forward``, ``last_logits``, ``make_decoder``);
``TransformersDecoder`` keeps a ``DynamicCache`` of the window and rewinds it by cropping,
as the native decoders reuse their cache's common prefix. Attention is transformers'
eager attention, so the strip can show its rows. Loaded from the directory's own files
only: no download, no remote code, safetensors (or a weights-only ``torch.load``).

transformers is an optional extra (``pip install -e ".[hf]"``).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from minigpt.decode.base import EagerDecoder
from minigpt.errors import CheckpointError
from minigpt.models.hparams import HParams

INSTALL = 'pip install -e ".[hf]"'


def transformers_module():
    try:
        import transformers
    except ImportError:
        return None
    return transformers


class TransformersModel(nn.Module):
    """A transformers causal LM behind the model interface the engine, score, compare and
    the lookahead use. ``hparams.context_length`` is the window (minigpt's, not the
    model's limit, which may be larger)."""

    def __init__(self, inner: nn.Module, window: int):
        super().__init__()
        self.inner = inner
        c = inner.config.get_text_config() if hasattr(inner.config, "get_text_config") \
            else inner.config
        vocab = inner.get_output_embeddings().weight.shape[0]
        self.hparams = HParams(c.hidden_size, window, c.num_hidden_layers,
                               c.num_attention_heads, vocab)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        logits = self.inner(input_ids=idx, use_cache=False).logits.float()
        loss = None
        if targets is not None:
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def last_logits(self, idx: torch.Tensor) -> torch.Tensor:
        """Logits [B, V] of the last position of each row (only it reaches the head)."""
        return self.inner(input_ids=idx, use_cache=False, logits_to_keep=1).logits[:, -1].float()

    def make_decoder(self) -> "TransformersDecoder":
        return TransformersDecoder(self)


class TransformersDecoder(EagerDecoder):
    """``last_logits(window_ids) -> [V]`` through transformers with a ``DynamicCache``:
    the window's common prefix is kept (the cache cropped to it), the rest run once.
    The cache is a plain one (no sliding layers): the model's own masks apply its
    sliding windows, and a plain cache can be cropped anywhere."""

    graphable = False  # CUDA graphs need the native decoders' fixed-shape step

    def __init__(self, model: TransformersModel):
        super().__init__(model.hparams.context_length)
        from transformers import DynamicCache

        self.inner = model.inner
        self.new_cache = DynamicCache
        self.cache = DynamicCache()
        # transformers 5.2x names the cache argument ``cache``; earlier ones
        # ``past_key_values`` (still accepted, with a deprecation warning).
        import inspect

        parameters = inspect.signature(self.inner.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"
        self._device = next(model.parameters()).device

    def cache_device(self) -> torch.device:
        return self._device

    def forget(self) -> None:
        super().forget()
        self.cache = self.new_cache()

    def forward_new(self, new_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Positions start..n-1 hold ``new_ids``; the cache is cropped to 0..start-1."""
        held = self.cache.get_seq_length()
        if start == 0:
            self.cache = self.new_cache()
        elif held > start:
            self.cache.crop(start - held)  # a negative count: tokens to remove
        out = self.inner(input_ids=new_ids[None], use_cache=True, logits_to_keep=1,
                         output_attentions=self.capture_attention,
                         **{self.cache_argument: self.cache})
        self.last_attention = None
        if self.capture_attention and out.attentions:
            # One row per layer and query head over the window (a sliding layer's row is
            # zero past its window, as the mask made it).
            self.last_attention = torch.stack([a[0, :, -1, :n].float() for a in out.attentions])
        return out.logits[0, -1].float()


def load_with_transformers(directory, config: dict, window: int, dtype: torch.dtype):
    """``AutoModelForCausalLM`` from the directory's files alone, float32 (or ``dtype``),
    eager attention; every failure one line."""
    transformers = transformers_module()
    if transformers is None:
        raise CheckpointError(f"this architecture opens through transformers: {INSTALL}")
    import warnings

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inner = transformers.AutoModelForCausalLM.from_pretrained(
                str(directory), dtype=dtype, attn_implementation="eager",
                local_files_only=True, trust_remote_code=False, use_safetensors=None)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, ImportError) as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"transformers could not open it ({type(exc).__name__}: "
                              f"{first[0][:200] if first else ''})") from None
    inner.eval()
    return TransformersModel(inner, window)
