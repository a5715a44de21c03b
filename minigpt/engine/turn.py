"""What every engine keeps of a turn, whatever computes its steps (our decoders,
transformers, a server): the token sequence, the steps, the streamed text's pending bytes,
and the ops on them that need no model — undo, restore, replay, run. Torch-free.

An engine mixing this in has ``tokens``, ``steps``, ``settings``, ``context_length``,
``slide``, ``eos_ids`` and ``_cancel`` (a ``threading.Event``), and gives ``reset``,
``step`` and ``restore_sampler``; ``_after_undo`` drops what it cached past the new end.
"""

from __future__ import annotations

from typing import Iterator

from minigpt.engine.window import window_of
from minigpt.steps import Step
from minigpt.text.tokenizer import StreamDecoder, display_piece


class TurnMixin:
    def _start_stream(self) -> None:
        self._stream = StreamDecoder()
        self._stream_states: list[tuple[bytes, int]] = []

    def _feed(self, piece: bytes) -> str:
        """The characters ``piece`` completes (the stream's state kept for undo)."""
        self._stream_states.append(self._stream.state())
        return self._stream.feed(piece)

    def window(self, tokens: list[int] | None = None) -> list[int]:
        """The tokens the model sees of ``tokens`` (default: the sequence so far)."""
        return window_of(self.tokens if tokens is None else tokens, self.context_length,
                         self.slide)

    @property
    def started(self) -> bool:
        return bool(self.tokens)

    @property
    def completion(self) -> str:
        """Generated text so far, complete characters only."""
        return "".join(step.text for step in self.steps)

    @property
    def pending_bytes(self) -> bytes:
        """Bytes of a character still waiting for its next piece."""
        return self._stream.pending

    @property
    def pending_display(self) -> str:
        """Pending bytes as a readable escape (``‹e5 86›``), or ""."""
        pending = self._stream.pending
        return display_piece(pending) if pending else ""

    @property
    def remaining(self) -> int:
        return max(0, self.settings.max_new_tokens - len(self.steps))

    def _after_undo(self) -> None:
        """What the engine cached for positions past the new end is stale."""

    def undo(self) -> Step | None:
        """Remove the last generated token; its step's candidates become the next ones."""
        if not self.steps:
            return None
        step = self.steps.pop()
        self.tokens.pop()
        self._stream.restore(self._stream_states.pop())
        self._after_undo()
        return step

    def replay(self, prompt: str, tokens: list[int],
               branches: tuple[tuple[int, ...], ...] = (),
               messages: list[dict] | None = None) -> list[tuple[Step, ...]]:
        """A saved turn again from its token ids (a reopened session): each branch, then
        the current path, taken token by token (nothing sampled), so their steps and
        candidates are what the model computes now. Returns the branches' steps."""
        self.reset(prompt, messages=messages)
        replayed = []
        for path in (*branches, tuple(tokens)):
            shared = 0
            while shared < min(len(path), len(self.steps)) and \
                    self.steps[shared].chosen.id == path[shared]:
                shared += 1
            while len(self.steps) > shared:
                self.undo()
            for token_id in path[shared:]:
                self.step(int(token_id))
            replayed.append(tuple(self.steps))
        return replayed[:-1]

    def restore(self, prompt: str, path: tuple[Step, ...], sampler_state: bytes | None = None,
                settings=None, messages: list[dict] | None = None) -> None:
        """Make ``prompt`` + ``path`` (steps this engine or an earlier one reported) the
        sequence, exactly: the steps come back as they were, nothing is run or sampled.
        With ``sampler_state``, sampling resumes where that path left it."""
        self.reset(prompt, settings, messages)
        for step in path:
            self._feed(step.token_bytes)
            self.tokens.append(step.chosen.id)
            self.steps.append(step)
        if sampler_state is not None:
            self.restore_sampler(sampler_state)

    def cancel(self) -> None:
        """Ask a running ``run`` to stop before its next token (thread-safe)."""
        self._cancel.set()

    def ends_run(self, step: Step) -> bool:
        """``step`` chose an end-of-sequence token, and the settings stop there (as
        transformers' generate does)."""
        return step.chosen.id in self.eos_ids and not self.settings.ignore_eos

    @property
    def ended(self) -> bool:
        """The last step ended the text (a run stops there; a single step may go on)."""
        return bool(self.steps) and self.ends_run(self.steps[-1])

    def run(self, n: int | None = None) -> Iterator[Step]:
        """Yield up to ``n`` steps (default: what max_new_tokens leaves), until cancelled
        or the end-of-sequence token."""
        self._cancel.clear()
        count = self.remaining if n is None else n
        for left in range(count - 1, -1, -1):
            if self._cancel.is_set():
                break
            step = self.step(ahead=left > 0 and not self.eos_ids)
            yield step
            if self.ends_run(step):
                break
        self._cancel.clear()

    def __iter__(self) -> Iterator[Step]:
        return self.run()
