"""Drives the engine inside a thread worker and posts batched messages to the app.

Only this code touches the engine. Every operation holds ``lock`` so that a new
operation (which cancels the previous worker) waits at most one token.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from minigpt.engine import Engine, Step
from minigpt.errors import MiniGPTError
from minigpt.settings import SamplingSettings

from .messages import RunFailed, RunFinished, StepsAdded, StepsUndone, TurnStarted

FRAME_SECONDS = 1 / 30


@dataclass(frozen=True)
class Generate:
    """Start a new turn from ``prompt`` (when given), then sample ``count`` tokens
    (None: until max_new_tokens)."""

    prompt: str | None
    count: int | None
    settings: SamplingSettings
    only_if_fresh: bool = False  # use the prompt only when nothing is generated yet


@dataclass(frozen=True)
class Take:
    """Rewind to ``keep_steps`` generated tokens, then append ``token_id``."""

    token_id: int
    keep_steps: int
    settings: SamplingSettings


@dataclass(frozen=True)
class Undo:
    settings: SamplingSettings


class EngineRunner:
    def __init__(self, engine: Engine):
        self.engine = engine
        self.lock = threading.Lock()

    def cancel(self) -> None:
        self.engine.cancel()

    def execute(self, op, post, is_cancelled) -> None:
        """Run ``op`` (in a worker thread); ``post`` sends a message to the app."""
        with self.lock:
            engine = self.engine
            started = time.perf_counter()
            produced = 0
            reason = "stopped"
            try:
                engine.set_settings(op.settings)
                if isinstance(op, Generate):
                    fresh = not engine.steps
                    if op.prompt is not None and (fresh or not op.only_if_fresh):
                        engine.reset(op.prompt, op.settings)
                        post(TurnStarted(op.prompt, len(engine.prompt_ids)))
                    produced, reason = self._generate(op.count, post, is_cancelled, started)
                elif isinstance(op, Take):
                    self._rewind(op.keep_steps, post)
                    post(StepsAdded([engine.step(op.token_id)], 0.0))
                    reason = "picked"
                elif isinstance(op, Undo):
                    self._rewind(len(engine.steps) - 1, post)
                    reason = "undo"
            except MiniGPTError as exc:
                post(RunFailed(str(exc)))
                reason = "error"
            except Exception as exc:  # a bug: report it, keep the app and the engine usable
                post(RunFailed(f"internal error: {type(exc).__name__}: {exc}"))
                reason = "error"
            preview = self._preview()
            elapsed = time.perf_counter() - started
            rate = produced / elapsed if produced and elapsed > 0 else 0.0
            post(RunFinished(reason, preview, len(engine.tokens), rate))

    def _preview(self):
        try:
            return self.engine.peek() if self.engine.started else None
        except MiniGPTError:  # e.g. NaN logits: already reported
            return None

    def _rewind(self, keep_steps: int, post) -> None:
        undone: list[Step] = []
        while len(self.engine.steps) > max(0, keep_steps):
            undone.append(self.engine.undo())
        if undone:
            post(StepsUndone(undone))

    def _generate(self, count, post, is_cancelled, started) -> tuple[int, str]:
        engine = self.engine
        batch: list[Step] = []
        last_post = time.perf_counter()
        produced = 0
        total = engine.remaining if count is None else count
        for step in engine.run(total):
            produced += 1
            batch.append(step)
            now = time.perf_counter()
            if now - last_post >= FRAME_SECONDS:
                post(StepsAdded(batch, produced / (now - started)))
                batch, last_post = [], now
            if is_cancelled():
                break
        if batch:
            post(StepsAdded(batch, produced / max(time.perf_counter() - started, 1e-9)))
        if produced < total:
            return produced, "stopped"
        if count is None:
            return produced, "max_new_tokens"
        return produced, "step" if count == 1 else "done"
