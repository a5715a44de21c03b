"""What the engine asks of a decoder (``make_decoder`` returns one), declared once.

The engine and the explorer's views call these and nothing else: no probing with
``getattr``. ``EagerDecoder`` holds what every eager decoder shares; ``GraphedDecoder``
wraps one and reaches its cache through ``forget``/``holds``, never its fields.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Decoder(Protocol):
    context_length: int
    capture_attention: bool  # each pass also keeps the last row's attention weights
    last_attention: torch.Tensor | None  # [layers, heads, window] of the last pass
    notice: str  # why a faster path is off ("" while none is)

    def reset(self) -> None:
        """Forget the cache: the next call recomputes its whole window."""

    def last_logits(self, window_ids: list[int]) -> torch.Tensor:
        """[V] logits of the position after ``window_ids`` (≤ context_length ids)."""

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
        self.capture_attention = False
        self.last_attention: torch.Tensor | None = None
        self.notice = ""

    def reset(self) -> None:
        self.forget()

    def forget(self) -> None:
        """The cache holds nothing usable (a failed capture may have written to it)."""
        self.cached_ids = []

    def holds(self, window_ids: list[int]) -> None:
        """The cache now holds ``window_ids`` (written by someone else: a graph)."""
        self.cached_ids = list(window_ids)

    def greedy_rows(self, window_ids: list[int], n: int,
                    ahead: bool = False) -> list[list[float]] | None:
        return None  # eager decoders leave greedy steps to the engine
