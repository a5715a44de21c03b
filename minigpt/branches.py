"""Branches: the paths a turn abandoned through undo or take-candidate.

A path is the tuple of ``Step``s generated after the prompt. Keeping whole steps
(candidates included) lets a switch restore a branch exactly, without running or
sampling anything. A path that is a prefix of one already kept adds nothing, so
undoing five tokens one at a time keeps one branch, not five.
"""

from __future__ import annotations

import math

from minigpt.steps import Step
from minigpt.text.tokenizer import display_piece

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


def common_steps(a: StepPath, b: StepPath) -> int:
    n = 0
    for x, y in zip(a, b):
        if x.chosen.id != y.chosen.id:
            break
        n += 1
    return n


class BranchBook:
    """The abandoned paths of one turn."""

    def __init__(self) -> None:
        self.paths: list[StepPath] = []
        # The sampler's state when a path was left, by its token ids: going back to the
        # whole path resumes sampling exactly where it stopped.
        self.sampler_states: dict[tuple[int, ...], object] = {}

    def keep(self, path: StepPath, sampler_state: object = None) -> None:
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
