"""Messages the generation worker posts to the app (small, immutable payloads)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from textual.message import Message

from minigpt.engine import Attention, Preview, Step
from minigpt.explain import Why
from minigpt.lookahead import Completion
from minigpt.settings import SamplingSettings


@dataclass
class TurnStarted(Message):
    """A new prompt was accepted: the transcript opens a new turn."""

    prompt: str
    prompt_tokens: int


@dataclass
class StepsAdded(Message):
    """Steps since the last frame (batched to about 30 per second)."""

    steps: list[Step]
    tokens_per_second: float


@dataclass
class StepsUndone(Message):
    """Tokens removed from the end, newest first."""

    steps: list[Step]


@dataclass
class RunFinished(Message):
    """The worker is idle again; ``preview`` holds the next token's candidates."""

    reason: str  # "max_new_tokens", "stopped", "step", "undo", "error", ...
    preview: Preview | None
    position: int  # tokens in the sequence
    tokens_per_second: float


@dataclass
class RunFailed(Message):
    """A user-facing problem (bad prompt, NaN logits) or an unexpected error."""

    message: str
    keep_prompt: bool = True


@dataclass
class Exported(Message):
    """The transcript was written to these files."""

    paths: list[Path]


@dataclass
class Explained(Message):
    """A why-this-token breakdown (or why there is none) for ``step_index``."""

    request: int  # the app shows only the answer to its latest request
    step_index: int | None  # None: the next token
    why: Why | None
    settings: SamplingSettings
    error: str = ""


@dataclass
class Completed(Message):
    """Character completions for the partial candidates of ``step_index``."""

    request: int
    step_index: int | None  # None: the next token
    completions: list[Completion]


@dataclass
class Attended(Message):
    """Attention rows for ``step_index`` (or why there are none)."""

    request: int
    step_index: int | None
    attention: Attention | None
    error: str = ""
