"""Session files: every finished or stopped generation, as JSON lines.

Each record is one complete line written with a single ``write`` and fsynced, so
a crash can at worst leave a torn last line, which readers skip; earlier entries
are never rewritten. A turn that changes again (undo, pick, continue) is
appended again under the same ``turn`` id; readers keep its last record.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path

from .branches import common_steps, path_ids, path_log_prob, path_text
from .engine import Candidate, Engine, Step

FORMAT_VERSION = 1


def data_dir() -> Path:
    """Per-user data directory (MINIGPT_TUI_DATA_DIR overrides)."""
    override = os.environ.get("MINIGPT_TUI_DATA_DIR")
    if override:
        return Path(override)
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "minigpt-tui"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", Path.home())) / "minigpt-tui"
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "minigpt-tui"


def new_session_path() -> Path:
    return data_dir() / "sessions" / time.strftime("session-%Y%m%d-%H%M%S.jsonl")


def new_turn_id() -> str:
    return uuid.uuid4().hex[:12]


def candidate_record(c: Candidate) -> dict:
    return {"id": c.id, "text": c.text, "prob": c.prob, "kept": c.kept}


def step_record(step: Step) -> dict:
    return {"step": step.index, "chosen": candidate_record(step.chosen),
            "candidates": [candidate_record(c) for c in step.candidates],
            "forced": step.forced, "text": step.text}


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinities


def branch_records(engine: Engine) -> list[dict]:
    """The paths this turn abandoned, with where they leave the current one."""
    current = tuple(engine.steps)
    return [{"tokens": path_ids(p), "text": path_text(p), "log_prob": finite(path_log_prob(p)),
             "diverges_at_step": common_steps(current, p) + 1}
            for p in engine.branches.alternatives(current)]


def turn_record(turn_id: str, engine: Engine, model: str, reason: str) -> dict:
    return {
        "version": FORMAT_VERSION,
        "turn": turn_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "prompt": engine.prompt,
        "settings": asdict(engine.settings),
        "prompt_ids": list(engine.prompt_ids),
        "tokens": [s.chosen.id for s in engine.steps],
        "completion": engine.completion,
        "reason": reason,
        "steps": [step_record(s) for s in engine.steps],
        "log_prob": finite(path_log_prob(tuple(engine.steps))),
        "branches": branch_records(engine),
    }


def append_record(path: Path, record: dict) -> None:
    """One line, one write, fsynced: a crash cannot corrupt earlier entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_session(path: Path) -> list[dict]:
    """The last record of each turn, in first-seen order; torn or foreign lines are skipped."""
    turns: dict[str, dict] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and isinstance(record.get("turn"), str) \
                    and isinstance(record.get("prompt"), str):
                turns[record["turn"]] = record
    return list(turns.values())


def export_markdown(turns: list[dict]) -> str:
    out = ["# minigpt-tui transcript", ""]
    for n, turn in enumerate(turns, 1):
        s = turn.get("settings", {})
        knobs = ", ".join(f"{k} {v}" for k, v in s.items() if v is not None)
        out += [f"## Turn {n}", "", f"*model* `{turn.get('model', '')}` · {knobs}", "",
                f"**Prompt:** {turn['prompt']}", "", "```text",
                turn["prompt"] + turn.get("completion", ""), "```", "",
                "| step | chosen | prob | top candidates |", "| --- | --- | --- | --- |"]
        for step in turn.get("steps", []):
            cell = lambda text: f"`{text}`".replace("|", "&#124;")  # noqa: E731
            tops = " · ".join(f"{cell(c['text'])} {c['prob']:.3f}" for c in step["candidates"])
            chosen = step["chosen"]
            out.append(f"| {step['step']} | {cell(chosen['text'])} | {chosen['prob']:.4f} | "
                       f"{tops} |")
        out.append("")
        branches = turn.get("branches", [])
        if branches:
            out += ["**Branches** (abandoned paths; Σ log p of their chosen tokens):", ""]
            for b in branches:
                log_p = "–" if b.get("log_prob") is None else f"{b['log_prob']:.2f}"
                out.append(f"- from step {b['diverges_at_step']}, Σ log p {log_p}, "
                           f"{len(b['tokens'])} tokens: `{b['text']}`")
            out.append("")
    return "\n".join(out)


class SessionRecorder:
    """Appends the current turn when it finishes, stops, or is left with changes."""

    CONTINUOUS = ("max_new_tokens", "stopped", "done")

    def __init__(self, path: Path, model: str):
        self.path = path
        self.model = model
        self.turn_id: str | None = None
        self.dirty = False
        self.last_reason = ""

    def start_turn(self) -> None:
        self.turn_id, self.dirty = new_turn_id(), False

    def after_op(self, engine: Engine, reason: str) -> None:
        if self.turn_id is None or reason == "error":
            return
        self.last_reason = reason
        self.dirty = True
        if reason in self.CONTINUOUS:
            self.flush(engine)

    def flush(self, engine: Engine) -> None:
        if self.dirty and self.turn_id is not None:
            append_record(self.path, turn_record(self.turn_id, engine, self.model,
                                                 self.last_reason))
            self.dirty = False
