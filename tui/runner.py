"""Drives the engine inside a thread worker and posts batched messages to the app.

Only this code touches the engine. Every operation holds ``lock`` so that a new
operation (which cancels the previous worker) waits at most one token.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from minigpt.engine import Engine, Step
from minigpt.errors import MiniGPTError
from minigpt.settings import SamplingSettings

from minigpt.session import SessionRecorder, export_markdown, read_session

from .messages import (Attended, Completed, Explained, Exported, RunFailed, RunFinished, StepsAdded, StepsUndone,
                       TurnStarted)

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


@dataclass(frozen=True)
class Switch:
    """Make a branch (or a prefix of one) the current path, exactly as it was."""

    path: tuple
    settings: SamplingSettings


@dataclass(frozen=True)
class Explain:
    """Why-this-token for a past step (1-based) or, with None, the next token."""

    request: int
    step_index: int | None
    settings: SamplingSettings


@dataclass(frozen=True)
class Complete:
    """Character completions of a past step's (or the next token's) partial candidates."""

    request: int
    step_index: int | None
    settings: SamplingSettings


@dataclass(frozen=True)
class Attend:
    """Attention rows of a past step (1-based) or the next token; ``capture`` keeps
    rows from each later step's own pass (the strip is open) or stops keeping them."""

    request: int
    step_index: int | None
    capture: bool


@dataclass(frozen=True)
class Export:
    """Write the session's transcript as Markdown and JSON into ``directory``."""

    directory: Path


class EngineRunner:
    def __init__(self, engine: Engine, recorder: SessionRecorder | None = None):
        self.engine = engine
        self.recorder = recorder
        self.lock = threading.Lock()

    def flush(self) -> None:
        """Save the current turn if it changed (called on quit, from any thread)."""
        if self.recorder is not None:
            with self.lock:
                self.recorder.flush(self.engine)

    def export(self, op: Export, post) -> None:
        with self.lock:
            try:
                if self.recorder is None:
                    raise OSError("no session file to export")
                self.recorder.flush(self.engine)
                turns = read_session(self.recorder.path)
                stem = op.directory / time.strftime("minigpt-transcript-%Y%m%d-%H%M%S")
                md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
                md.write_text(export_markdown(turns), encoding="utf-8")
                js.write_text(json.dumps(turns, ensure_ascii=False, indent=1), encoding="utf-8")
                post(Exported([md, js]))
            except OSError as exc:
                post(RunFailed(f"export failed: {exc}"))

    def explain(self, op: Explain, post) -> None:
        """Never cancels a run: waits for the lock (a run holds it until it ends)."""
        with self.lock:
            try:
                why = self.engine.explain(op.step_index, op.settings)
                post(Explained(op.request, op.step_index, why, op.settings))
            except MiniGPTError as exc:
                post(Explained(op.request, op.step_index, None, op.settings, str(exc)))

    def complete(self, op: Complete, post) -> None:
        with self.lock:
            try:
                completions = self.engine.complete_candidates(op.step_index, op.settings)
            except MiniGPTError:
                completions = []  # nothing to complete yet; the table says why elsewhere
            post(Completed(op.request, op.step_index, completions))

    def attend(self, op: Attend, post) -> None:
        with self.lock:
            self.engine.capture_attention = op.capture
            if not op.capture:
                return
            try:
                post(Attended(op.request, op.step_index, self.engine.attention(op.step_index)))
            except MiniGPTError as exc:
                post(Attended(op.request, op.step_index, None, str(exc)))

    def cancel(self) -> None:
        self.engine.cancel()

    def execute(self, op, post, is_cancelled) -> None:
        """Run ``op`` (in a worker thread); ``post`` sends a message to the app."""
        if isinstance(op, Export):
            self.export(op, post)
            return
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
                        if self.recorder is not None:
                            self.recorder.flush(engine)  # the previous turn, if it changed
                        engine.reset(op.prompt, op.settings)
                        if self.recorder is not None:
                            self.recorder.start_turn()
                        post(TurnStarted(op.prompt, len(engine.prompt_ids)))
                    produced, reason = self._generate(op.count, post, is_cancelled, started)
                elif isinstance(op, Take):
                    self._rewind(op.keep_steps, post)
                    post(StepsAdded([engine.step(op.token_id)], 0.0))
                    reason = "picked"
                elif isinstance(op, Switch):
                    undone, added = engine.switch_to(op.path)
                    if undone:
                        post(StepsUndone(undone))
                    if added:
                        post(StepsAdded(added, 0.0))
                    reason = "branch"
                elif isinstance(op, Undo):
                    self._rewind(len(engine.steps) - 1, post)
                    reason = "undo"
            except MiniGPTError as exc:
                post(RunFailed(str(exc)))
                reason = "error"
            except Exception as exc:  # a bug: report it, keep the app and the engine usable
                post(RunFailed(f"internal error: {type(exc).__name__}: {exc}"))
                reason = "error"
            if self.recorder is not None:
                try:
                    self.recorder.after_op(engine, reason)
                except OSError as exc:
                    post(RunFailed(f"could not write the session file: {exc}"))
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
