"""The model's window over a sequence longer than it can attend to (torch-free).

A model attends to at most ``size`` tokens (the book's ``context_length``, a Hugging
Face model's window). Past that, the oldest tokens leave the window ``slide`` at a
time: the window starts at the smallest multiple of ``slide`` that leaves at most
``size`` tokens. ``slide`` 1 is the book's crop, the last ``size`` tokens at every step
(each step then re-encodes the whole window: positions are baked into cached keys).
A larger slide re-encodes once per ``slide`` tokens and keeps the cache in between, so
the cost per token stays flat on average; the model then sees between ``size - slide +
1`` and ``size`` tokens.
"""

from __future__ import annotations


def window_start(length: int, size: int, slide: int = 1) -> int:
    """Index of the first token the model sees of a sequence of ``length`` tokens."""
    if length <= size:
        return 0
    return -(-(length - size) // slide) * slide  # rounded up to a multiple of slide


def window_of(tokens: list[int], size: int, slide: int = 1) -> list[int]:
    """The tokens the model sees of ``tokens``."""
    return tokens[window_start(len(tokens), size, slide):]


def slide_note(size: int, slide: int) -> str:
    """What happens past the window, in a line (inspect, the model screen)."""
    if slide == 1:
        return (f"past the window the model sees the last {size:,} tokens, re-encoded every "
                "token (--slide 1, the book's crop)")
    return (f"past the window the oldest {slide:,} tokens leave at once and the rest is "
            f"re-encoded, once per {slide:,} tokens (--slide {slide}; --slide 1: the exact "
            "last window at every token)")
