"""Textual messages that carry the engine process's replies onto the UI thread."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from minigpt.host.protocol import Reply


@dataclass
class EngineReplies(Message):
    """Replies read from the engine's pipe since the last batch, in order."""

    replies: list[Reply]


@dataclass
class EngineExited(Message):
    """The engine process ended without being asked to (killed, crashed)."""

    description: str  # "killed by signal 9"
    detail: str = ""  # the last line the engine wrote (a CUDA error, say), or ""
