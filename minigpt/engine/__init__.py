"""Stepping through generation (``Engine``) and the read-only views of a step: why this token, character completions, attention, score, the compared model, sampling's functions.

Imports torch (``minigpt.engine`` itself loads ``Engine`` only when asked for it)."""


def __getattr__(name: str):
    if name == "Engine":  # the public ``from minigpt.engine import Engine``
        from minigpt.engine.engine import Engine

        return Engine
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
