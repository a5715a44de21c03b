"""What the engine yields and keeps: candidates, previews, steps, attention rows."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str  # display string: partial UTF-8 shown as ‹e5 86›
    prob: float  # under softmax(logits / T) over the whole vocabulary (T = 0: softmax(logits))
    kept: bool  # survived top-k / top-p
    partial: bool  # the piece is an incomplete UTF-8 sequence


@dataclass(frozen=True)
class Preview:
    """The distribution for the next position, before a token is chosen."""

    index: int  # 1-based number this step will have
    position: int  # index in the whole sequence of the token to be chosen
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class Attention:
    """The last position's attention when predicting ``position``: weights[layer][head]
    over the window's tokens (``window_ids``, ≤ context_length, oldest first)."""

    position: int
    window_ids: tuple[int, ...]
    weights: tuple[tuple[tuple[float, ...], ...], ...]


@dataclass(frozen=True)
class Step:
    index: int  # 1-based: generated tokens after this step
    position: int  # index of the chosen token in the whole sequence
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    chosen_rank: int | None  # 1..5 when among the candidates
    token_bytes: bytes
    text: str  # characters this token completes in the stream (may be "")
    forced: bool  # taken instead of sampled
    seconds: float
    context: int  # tokens the model conditioned on (≤ context_length)
