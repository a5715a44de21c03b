"""What the engine asks of a decoder (``make_decoder`` returns one), declared once.

The engine and the explorer's views call these and nothing else: no probing with
``getattr``. ``EagerDecoder`` holds what every eager decoder shares; ``GraphedDecoder``
wraps one and reaches its cache through ``forget``/``holds``, never its fields.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import time

import torch

# A long prefill runs in chunks of about this long, so that escape stops it within a
# second and the status line can count it; the chunk adapts to the machine and model.
PREFILL_SECONDS = 0.4
FIRST_CHUNK, MIN_CHUNK, MAX_CHUNK = 256, 32, 2048


@runtime_checkable
class Decoder(Protocol):
    context_length: int
    capture_attention: bool  # each pass also keeps the last row's attention weights
    last_attention: torch.Tensor | None  # [layers, heads, window] of the last pass
    notice: str  # why a faster path is off ("" while none is)
    graphable: bool  # CUDA graphs can replay its steps (the native decoders' step_at)

    def reset(self) -> None:
        """Forget the cache: the next call recomputes its whole window."""

    def last_logits(self, window_ids: list[int], progress=None) -> torch.Tensor:
        """[V] logits of the position after ``window_ids`` (≤ context_length ids). A long
        run of new ids is encoded in chunks, ``progress(done, total)`` called after each:
        it may raise to stop, and the cache keeps the chunks done."""

    def greedy_rows(self, window_ids: list[int], n: int,
                    ahead: bool = False) -> list[list[float]] | None:
        """A greedy step's top-``n`` rows computed on the device, or None where this
        decoder has no such path (the engine then goes the long way)."""


class EagerDecoder:
    """The state every eager decoder keeps: which window its KV cache holds, and the
    attention capture."""

    def __init__(self, context_length: int):
        self.context_length = context_length
        self.cached_ids: list[int] = []  # the window the KV cache holds
        self.chunk = FIRST_CHUNK  # new ids encoded in one pass (fitted as they run)
        self.capture_attention = False
        self.last_attention: torch.Tensor | None = None
        self.notice = ""

    graphable = True  # it has a fixed-shape ``step_at`` that CUDA graphs can replay

    def reset(self) -> None:
        self.forget()

    def cache_device(self) -> torch.device:
        return self.kv_cache.device

    def forget(self) -> None:
        """The cache holds nothing usable (a failed capture may have written to it)."""
        self.cached_ids = []

    def holds(self, window_ids: list[int]) -> None:
        """The cache now holds ``window_ids`` (written by someone else: a graph)."""
        self.cached_ids = list(window_ids)

    def greedy_rows(self, window_ids: list[int], n: int,
                    ahead: bool = False) -> list[list[float]] | None:
        return None  # eager decoders leave greedy steps to the engine

    def last_logits(self, window_ids: list[int], progress=None) -> torch.Tensor:
        """Logits [V] for the next token after ``window_ids`` (1..C ids at positions 0..):
        the cached keys/values of the identical leading tokens are reused, the last token
        always recomputed (``forward_new`` of the model's decoder).

        Many new ids (a long prompt, a slid window) go in chunks of about
        ``PREFILL_SECONDS`` each: ``progress(done, total)`` after each can show it or
        stop it (by raising), and activations stay bounded by the chunk."""
        n = len(window_ids)
        if not 1 <= n <= self.context_length:
            raise ValueError(f"window of {n} tokens; expected 1..{self.context_length}")
        start = min(common_prefix_length(self.cached_ids, window_ids), n - 1)
        device = self.cache_device()
        self.cached_ids = list(window_ids[:start])
        while n - start > self.chunk:
            began = time.perf_counter()
            end = start + self.chunk
            self.forward_new(torch.tensor(window_ids[start:end], device=device), start, end)
            self.cached_ids = list(window_ids[:end])
            start = end
            self.fit_chunk(time.perf_counter() - began)
            if progress is not None:  # tokens of the window encoded: a stopped prefill
                progress(start, n)  # resumed goes on counting where it stopped
        logits = self.forward_new(torch.tensor(window_ids[start:], device=device), start, n)
        self.cached_ids = list(window_ids)
        return logits

    def fit_chunk(self, seconds: float) -> None:
        """The next chunk sized to take about PREFILL_SECONDS (a whole multiple of 32)."""
        if seconds > 0:
            wanted = int(self.chunk * PREFILL_SECONDS / seconds)
            self.chunk = max(MIN_CHUNK, min(MAX_CHUNK, wanted // 32 * 32))

    def forward_new(self, new_ids: torch.Tensor, start: int, n: int) -> torch.Tensor:
        """Logits [V] with positions start..n-1 holding ``new_ids``, the cache 0..start-1."""
        raise NotImplementedError


def common_prefix_length(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:  # the usual step (one token more): compared in C, not a loop
        return n
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
