"""Sampling settings with validation shared by the CLI and the TUI."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from minigpt.errors import SettingsError

MAX_NEW_TOKENS_LIMIT = 1_000_000
MAX_TEMPERATURE = 1_000.0
# Below this a temperature only overflows float32 logits (1e-40 made every probability
# NaN); 0 is greedy, which is what such a temperature means anyway.
MIN_TEMPERATURE = 1e-4
PENALTY_RANGE = (0.01, 100.0)  # beyond, penalised logits overflow just the same


@dataclass(frozen=True)
class SamplingSettings:
    """Defaults follow the book's inference.py: T 0.5, no top-k, 200 tokens, seed 1337."""

    temperature: float = 0.5
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0
    max_new_tokens: int = 200
    seed: int | None = 1337
    ignore_eos: bool = False  # a run goes on past the model's end-of-sequence token

    def __post_init__(self) -> None:
        validate(self)

    def with_(self, **changes) -> "SamplingSettings":
        return replace(self, **changes)


def _finite(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {value!r}")


def validate(s: SamplingSettings) -> None:
    if not isinstance(s.ignore_eos, bool):
        raise SettingsError(f"ignore_eos must be true or false, got {s.ignore_eos!r}")
    _finite("temperature", s.temperature)
    if s.temperature < 0:
        raise SettingsError(f"temperature must be ≥ 0 (0 means greedy), got {s.temperature}")
    if s.temperature > MAX_TEMPERATURE:
        raise SettingsError(f"temperature must be ≤ {MAX_TEMPERATURE:g}, got {s.temperature}")
    if 0 < s.temperature < MIN_TEMPERATURE:
        raise SettingsError(f"temperature must be 0 (greedy) or ≥ {MIN_TEMPERATURE:g}, "
                            f"got {s.temperature:g}")
    if s.top_k is not None and (not isinstance(s.top_k, int) or s.top_k < 1):
        raise SettingsError(f"top_k must be an integer ≥ 1 (or unset), got {s.top_k!r}")
    if s.top_p is not None:
        _finite("top_p", s.top_p)
        if not 0 < s.top_p <= 1:
            raise SettingsError(f"top_p must be in (0, 1], got {s.top_p}")
    _finite("repetition_penalty", s.repetition_penalty)
    low, high = PENALTY_RANGE
    if not low <= s.repetition_penalty <= high:
        raise SettingsError(f"repetition_penalty must be in [{low:g}, {high:g}] (1 = off), "
                            f"got {s.repetition_penalty:g}")
    if not isinstance(s.max_new_tokens, int) or s.max_new_tokens < 0:
        raise SettingsError(f"max_new_tokens must be an integer ≥ 0, got {s.max_new_tokens!r}")
    if s.max_new_tokens > MAX_NEW_TOKENS_LIMIT:
        raise SettingsError(f"max_new_tokens must be ≤ {MAX_NEW_TOKENS_LIMIT}, got {s.max_new_tokens}")
    if s.seed is not None and (not isinstance(s.seed, int) or not 0 <= s.seed < 2**63):
        raise SettingsError(f"seed must be an integer in [0, 2^63), got {s.seed!r}")


def check_slide(slide, size: int) -> int:
    """``--slide``: how many tokens leave a full window at once (``minigpt.engine.window``),
    1 to the window's size."""
    if isinstance(slide, bool) or not isinstance(slide, int) or not 1 <= slide <= size:
        raise SettingsError(f"--slide must be 1…{size:,} (the window), got {slide!r}")
    return slide
