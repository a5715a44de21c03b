"""Session files: every finished or stopped generation, as JSON lines.

Each record is one complete line written with a single ``write`` and fsynced, so
a crash can at worst leave a torn last line, which readers skip; earlier entries
are never rewritten. A turn that changes again (undo, pick, continue) is
appended again under the same ``turn`` id; readers keep its last record.
"""

from __future__ import annotations

import errno
import fcntl
import json
import math
import os
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from minigpt.branches import StepPath
from minigpt.branches import common_steps, path_ids, path_log_prob, path_pieces, path_text
from minigpt.settings import SamplingSettings
from minigpt.steps import Candidate, Step

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
    from minigpt.cli.render import candidate_json  # one shape for session files, exports and --json

    return candidate_json(c)


def step_record(step: Step) -> dict:
    record = {"step": step.index, "chosen": candidate_record(step.chosen),
              "candidates": [candidate_record(c) for c in step.candidates],
              "forced": step.forced, "text": step.text}
    v = step.versus
    if v is not None:  # minigpt-tui --compare: the other model's view of this step
        record["versus"] = {"model": v.other, "chosen_prob": v.chosen_prob,
                            "candidate_probs": list(v.probs),
                            "top": [candidate_record(c) for c in v.top],
                            "kl": finite(v.kl), "js": finite(v.js)}
    return record


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None  # JSON has no infinities


def branch_records(current: StepPath, alternatives: list[StepPath]) -> list[dict]:
    """The paths this turn abandoned, with where they leave the current one."""
    records = []
    for p in alternatives:
        shared = common_steps(current, p)
        records.append({"tokens": path_ids(p), "text": path_text(p),
                        "log_prob": finite(path_log_prob(p)), "diverges_at_step": shared + 1,
                        "adds": path_pieces(p[shared:])})
    return records


@dataclass
class TurnState:
    """What a session record keeps of the turn being explored. The explorer holds it
    (not the engine process), so a crashed or killed engine loses nothing on screen."""

    prompt: str = ""
    prompt_ids: tuple[int, ...] = ()
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    steps: list[Step] = field(default_factory=list)
    branches: list[dict] = field(default_factory=list)  # ``branch_records`` of the turn
    messages: tuple[dict, ...] | None = None  # a chat turn: the conversation, user last

    @property
    def completion(self) -> str:
        return "".join(step.text for step in self.steps)


def turn_record(turn_id: str, turn: TurnState, model: str, reason: str) -> dict:
    return {
        "version": FORMAT_VERSION,
        "turn": turn_id,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "model": model,
        "prompt": turn.prompt,
        "settings": asdict(turn.settings),
        "prompt_ids": list(turn.prompt_ids),
        "tokens": [s.chosen.id for s in turn.steps],
        "completion": turn.completion,
        "reason": reason,
        "steps": [step_record(s) for s in turn.steps],
        "log_prob": finite(path_log_prob(tuple(turn.steps))),
        "branches": list(turn.branches),
        **({"messages": [dict(m) for m in turn.messages]} if turn.messages else {}),
    }


def append_record(path: Path, record: dict) -> None:
    """Append one record as one line, completely or not at all, fsynced.

    A torn last line (a crash mid-write) is ended first, so this record starts a
    line of its own; a short or failed write (disk full) is cut back off, so the
    file never holds half a record and a later append cannot glue onto one."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    # O_NOFOLLOW: a session path swapped for a symlink is refused, never written through.
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                 0o644)
    try:
        # Two explorers may share a session: the lock makes each append whole, and the
        # cut-back after a failed write can only remove this writer's own bytes.
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        try:
            written = 0
            while written < len(line):
                n = os.write(fd, line[written:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, "no space left on the device")
                written += n
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)  # all or nothing
            raise
    finally:
        os.close(fd)


def read_session(path: Path) -> list[dict]:
    """The last record of each turn, in first-seen order; torn or foreign lines are
    skipped (``read_session_counting`` says how many)."""
    return read_session_counting(path)[0]


REOPEN_TAIL_BYTES = 8 << 20  # what the explorer reads of a session it reopens


def read_session_tail(path: Path, limit: int = REOPEN_TAIL_BYTES
                      ) -> tuple[list[dict], int, bool]:
    """(turns, lines skipped, whether older records were left unread): at most the last
    ``limit`` bytes, so a session of any size opens in bounded time and memory (1 GB of
    97k turns took minutes and 7.6 GB before the first frame)."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - limit)
        f.seek(start)
        data = f.read(limit)
    if start:
        data = data[data.find(b"\n") + 1:]  # the first line is cut: not a record
    turns, skipped = parse_records(data.decode("utf-8", "replace").splitlines())
    return turns, skipped, start > 0


def read_session_counting(path: Path) -> tuple[list[dict], int]:
    """(turns, lines skipped as unreadable or foreign)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_records(f)


def parse_records(lines) -> tuple[list[dict], int]:
    """The last record of each turn, in first-seen order, and how many lines were not
    records (torn or foreign): one reader for a whole file and for its tail."""
    turns: dict[str, dict] = {}
    skipped = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            skipped += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("turn"), str) \
                and isinstance(record.get("prompt"), str):
            if record.get("withdrawn") is True:  # undone into the prompt and replaced
                turns.pop(record["turn"], None)
            else:
                turns[record["turn"]] = record
        else:
            skipped += 1
    return list(turns.values()), skipped


def cell(text: str) -> str:
    """``text`` as a code span in a Markdown table cell. A pipe is escaped as ``\\|``, the
    one escape GitHub's tables honour inside code (``&#124;`` showed literally there,
    as ``‹<&#124;im_end&#124;>›``); the fence outgrows any backticks in the text."""
    text = str(text).replace("\n", "↵").replace("|", "\\|")
    longest = max((len(part) for part in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


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
                adds = f" (from there: `{b['adds']!r}`)" if "adds" in b else ""
                out.append(f"- from step {b['diverges_at_step']}, Σ log p {log_p}, "
                           f"{len(b['tokens'])} tokens: `{b['text']}`{adds}")
            out.append("")
    return "\n".join(out)


class SessionRecorder:
    """Appends the current turn when it finishes, stops, or is left with changes."""

    # A turn that ends one of these ways is written at once, whatever follows (a kill -9);
    # single steps, picks and undos in between are written once the keys pause.
    ENDS = ("max_new_tokens", "stopped", "done", "end of text", "error")

    def __init__(self, path: Path, model: str):
        self.path = path
        self.model = model
        self.turn_id: str | None = None
        self.dirty = False
        self.last_reason = ""
        self.unsaved: list[dict] = []  # records a failed write left, oldest first

    @property
    def behind(self) -> bool:
        """Some turn's latest state is not in the file yet."""
        return self.dirty or bool(self.unsaved)

    def start_turn(self, turn_id: str | None = None) -> None:
        """A new turn, or (``turn_id``) a reopened one: its records keep their id."""
        self.turn_id, self.dirty = turn_id or new_turn_id(), False

    def saved(self) -> None:
        """The turn on screen is the one the file holds (a reopened turn, replayed)."""
        self.dirty = False

    def changed(self, reason: str) -> None:
        """The turn changed (tokens streamed in, say) and is not saved yet."""
        if self.turn_id is not None:
            self.dirty, self.last_reason = True, reason

    def after_op(self, turn: TurnState, reason: str) -> None:
        """An op ended with ``reason``: a turn that ended is written now; any other
        change waits (``behind``) for the caller's next ``flush``."""
        if self.turn_id is None or reason == "resumed":
            return
        if reason != "error" or self.dirty:  # a failed op that changed nothing: nothing new
            self.changed(reason)
        if reason in self.ENDS:
            self.flush(turn)

    def flush(self, turn: TurnState | None) -> None:
        """Write the turn if it changed, after any records an earlier failure left.
        Raises ``OSError`` when the disk refuses; what was not written stays queued (in
        memory) for the next flush, so a later turn never pushes an unsaved one out."""
        if self.dirty and self.turn_id is not None and turn is not None:
            self.queue(turn_record(self.turn_id, turn, self.model, self.last_reason))
        while self.unsaved:
            append_record(self.path, self.unsaved[0])
            self.unsaved.pop(0)

    def queue(self, record: dict) -> None:
        """A newer record of the same turn replaces a queued one: readers keep the last."""
        self.unsaved = [r for r in self.unsaved if r["turn"] != record["turn"]] + [record]
        self.dirty = False

    def withdraw(self, prompt: str) -> None:
        """The current turn was undone back into the prompt and replaced by the next: a
        reopened session must not show it (the model no longer sees it). Raises
        ``OSError`` as ``flush`` does."""
        if self.turn_id is None:
            return
        self.queue({"version": FORMAT_VERSION, "turn": self.turn_id, "prompt": prompt,
                    "withdrawn": True, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self.flush(None)


def rescue_unsaved(recorder: SessionRecorder) -> Path:
    """Write the records the session file refused to a new file in the temporary
    directory (never over another); raises ``OSError`` when that fails too."""
    import tempfile

    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in recorder.unsaved)
    stem = Path(tempfile.gettempdir()) / f"minigpt-tui-unsaved-{os.getpid()}"
    for n in range(100):
        path = Path(f"{stem}-{n}.jsonl" if n else f"{stem}.jsonl")
        try:
            create_exclusive(path, text)
        except FileExistsError:
            continue
        recorder.unsaved = []
        return path
    raise OSError(errno.EEXIST, "no free name for the rescued turns")


def create_exclusive(path: Path, text: str) -> None:
    """Write a new file; never follow a planted symlink, never overwrite."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def export_transcript(session: Path, directory: Path) -> list[Path]:
    """The session's turns as Markdown and JSON in ``directory``, under new names."""
    turns = read_session(session)
    stem = time.strftime("minigpt-transcript-%Y%m%d-%H%M%S")
    for n in range(1000):
        name = stem if n == 0 else f"{stem}-{n + 1}"
        md, js = directory / f"{name}.md", directory / f"{name}.json"
        try:
            create_exclusive(md, export_markdown(turns))
        except FileExistsError:
            continue
        try:
            create_exclusive(js, json.dumps(turns, ensure_ascii=False, indent=1))
        except FileExistsError:
            md.unlink()
            continue
        return [md, js]
    raise OSError(f"no free file name for {stem} in {directory}")
