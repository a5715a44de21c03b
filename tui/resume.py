"""A reopened session (``--session FILE``): its last turn comes back steppable, with its
branch tree and its knobs; older turns show in the transcript.

The session file keeps token ids, not the engine's state, so the engine replays the turn
(``Replay``: each branch, then the current path, teacher-forced, nothing sampled). Its
records keep the turn's id: reopening and quitting adds no second record of it.
"""

from __future__ import annotations

from dataclasses import fields

from minigpt.errors import SettingsError
from minigpt.host import protocol as p
from minigpt.settings import SamplingSettings

from .chat import saved_messages

from .knobs import Sidebar


def saved_settings(record: dict) -> SamplingSettings | None:
    """The knobs a record was made with, if they are still valid ones."""
    saved = record.get("settings")
    if not isinstance(saved, dict):
        return None
    known = {f.name for f in fields(SamplingSettings)}
    try:
        return SamplingSettings().with_(**{k: v for k, v in saved.items() if k in known})
    except (SettingsError, TypeError, ValueError):
        return None


def token_ids(value) -> tuple[int, ...] | None:
    """A record's token ids, if it holds a list of them (files can hold anything)."""
    if isinstance(value, list) and all(isinstance(t, int) for t in value):
        return tuple(value)
    return None


def saved_branches(record: dict) -> tuple[tuple[int, ...], ...]:
    branches = [token_ids(b.get("tokens")) for b in record.get("branches") or ()
                if isinstance(b, dict)]
    return tuple(ids for ids in branches if ids is not None)


class ResumeMixin:
    """For ``MiniGPTApp``: replay the reopened session's last turn once the model is up."""

    replay_seq = 0  # the Replay op's seq: its TurnStarted keeps the saved turn's id
    replay_turn_id: str | None = None

    def resumable(self) -> dict | None:
        """The reopened session's last turn, if the engine can replay it."""
        last = self.resumed[-1] if self.resumed else None
        if last and last.get("prompt") and token_ids(last.get("tokens")) is not None:
            return last
        return None

    def replay_last_turn(self) -> None:
        """Once, at the first Ready: the knobs it was made with, then the turn itself
        (unless a turn was started meanwhile)."""
        record = self.resumable()
        if record is None or self.replay_seq or self.turn.prompt:
            return
        settings = saved_settings(record)
        if settings is not None and settings != self.settings:
            self.settings = settings
            self.query_one(Sidebar).set_value(settings)
        self.replay_turn_id = record.get("turn")
        self.submit(p.Replay, prompt=record["prompt"], tokens=tuple(record["tokens"]),
                    branches=saved_branches(record), messages=saved_messages(record))
        self.replay_seq = self.last_engine_seq
        self.set_status(f"reopening the session's last turn: replaying its "
                        f"{len(record['tokens'])} tokens …")

    def turn_id_for(self, reply: p.TurnStarted) -> str | None:
        return self.replay_turn_id if reply.seq == self.replay_seq else None

    def got_replayed(self, reply: p.RunFinished) -> None:
        if self.recorder is not None:
            self.recorder.saved()  # what is on screen is what the file holds
        prompt = self.query_one("#prompt")
        if self.turn.messages:  # a conversation: the next message is typed, not a prompt
            prompt.focus()
        else:
            if not prompt.value:  # the turn's prompt, as after enter
                prompt.value = self.turn.prompt
            if self.focused is prompt:  # the keys the status line names work in the table
                self.query_one("#candidates").focus()
        if self.skipped_lines:
            lines = "line" if self.skipped_lines == 1 else "lines"
            self.show_error(f"{self.skipped_lines} unreadable {lines} of the session file "
                            "skipped (a crash mid-write?); the last turn is back")
        elif self.turn.messages:
            self.set_status(f"reopened the conversation · its last reply has "
                            f"{len(self.history)} tokens · type the next message (esc: "
                            "the candidates)")
        else:
            self.set_status(f"reopened the last turn · {len(self.history)} tokens · space "
                            "steps, [ ] browse, t branches")
