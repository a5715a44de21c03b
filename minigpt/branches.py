"""Branches: the paths a turn abandoned through undo or take-candidate.

A path is the tuple of ``Step``s generated after the prompt. Keeping whole steps
(candidates included) lets a switch restore a branch exactly, without running or
sampling anything. A path that is a prefix of one already kept adds nothing, so
undoing five tokens one at a time keeps one branch, not five.
"""

from __future__ import annotations

import math
from typing import Sequence

from minigpt.steps import Step
from minigpt.text.tokenizer import StreamDecoder, display_piece

StepPath = tuple[Step, ...]


def path_ids(path: StepPath) -> list[int]:
    return [s.chosen.id for s in path]


def path_log_prob(path: StepPath) -> float:
    """Σ log P(chosen) as each step reported it (its temperature's distribution)."""
    return sum(math.log(s.chosen.prob) if s.chosen.prob > 0 else -math.inf for s in path)


def path_text(path: StepPath) -> str:
    return "".join(s.text for s in path)


def path_pieces(path: StepPath) -> str:
    """The path's token bytes as text, incomplete characters as ``‹e5 a4›`` escapes: a
    branch that differs only by byte pieces still shows what it adds (``path_text``
    holds complete characters only, so it can read the same as its parent)."""
    return display_piece(b"".join(s.token_bytes for s in path))


def is_prefix(short: StepPath, long: StepPath) -> bool:
    return len(short) <= len(long) and path_ids(long[:len(short)]) == path_ids(short)


def common_length(a: Sequence, b: Sequence) -> int:
    """How many items (token ids, characters) ``a`` and ``b`` share from the start."""
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def common_steps(a: StepPath, b: StepPath) -> int:
    return common_length(path_ids(a), path_ids(b))


def pending_display(path: StepPath) -> str:
    """The bytes at the end of ``path`` still waiting for their character, as the
    engine shows them (``‹e5 86›``), or "": what a switched-to path leaves pending."""
    stream = StreamDecoder()
    for step in path:
        stream.feed(step.token_bytes)
    return display_piece(stream.pending) if stream.pending else ""


class BranchBook:
    """The abandoned paths of one turn, kept by the explorer, which sees every step,
    undo and sampler state: the engine only computes the sequence it is given."""

    def __init__(self) -> None:
        self.paths: list[StepPath] = []
        # The sampler's state when a path was left, by its token ids: going back to the
        # whole path resumes sampling exactly where it stopped.
        self.sampler_states: dict[tuple[int, ...], object] = {}
        self.current_kept = False  # the current path is kept already (or a prefix of one)

    def leave(self, current: Sequence[Step], sampler_state: object = None) -> None:
        """The current path is being left (undo, a pick, a switch): keep it, once, so a
        rewind of n steps one at a time costs O(n), not n copies of the path."""
        if not self.current_kept:
            self.keep(current, sampler_state)
            self.current_kept = True

    def grew(self) -> None:
        """A step was added: the current path is longer than anything kept."""
        self.current_kept = False

    def arrived(self, path: StepPath) -> None:
        """``path`` (a kept path, or a prefix of one) is now the current path."""
        self.current_kept = self.contains(path)

    def keep(self, path: Sequence[Step], sampler_state: object = None) -> None:
        path = tuple(path)
        if not path or self.contains(path):
            return
        dropped = [kept for kept in self.paths if is_prefix(kept, path)]
        for kept in dropped:
            self.sampler_states.pop(tuple(path_ids(kept)), None)
        self.paths = [kept for kept in self.paths if kept not in dropped] + [path]
        if sampler_state is not None:
            self.sampler_states[tuple(path_ids(path))] = sampler_state

    def sampler_state(self, path: StepPath) -> object:
        return self.sampler_states.get(tuple(path_ids(path)))

    def contains(self, path: StepPath) -> bool:
        """``path`` is a kept path or a prefix of one."""
        return any(is_prefix(path, kept) for kept in self.paths)

    def alternatives(self, current: StepPath) -> list[StepPath]:
        """Kept paths that are not already contained in ``current``."""
        return [p for p in self.paths if not is_prefix(p, current)]

    def clear(self) -> None:
        self.paths = []
        self.sampler_states = {}
        self.current_kept = False
