"""The views that open over the explorer — branch tree, score, a knob, help, the model —
and the transcript's export: each asks the engine or the session, then shows a screen."""

from __future__ import annotations

from pathlib import Path

from minigpt.branches import common_steps, pending_display
from minigpt.host import protocol as p
from minigpt.host.session import export_transcript
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import printable

from .branches import BranchScreen
from .knobs import Sidebar
from .scoring import ScoreScreen
from .screens import HelpScreen, KnobScreen, ModelScreen
from .widgets import Transcript


class ModalsMixin:
    """Screen-opening actions for ``MiniGPTApp``."""

    def action_branches(self) -> None:
        if self.running:  # the stream rewrites the status line: say it in a toast
            self.notify("stop the run first (escape), then browse branches", markup=False)
            return
        if not self.turn.prompt:
            self.set_status("no turn yet: branches appear when you undo or pick")
            return
        current = tuple(self.history)
        if not isinstance(self.screen, BranchScreen):
            shown = self.turn.messages[-1]["content"] if self.turn.messages else self.turn.prompt
            screen = BranchScreen(shown, current, self.branch_book.alternatives(current))
            self.push_screen(screen, self.switch_branch)

    def switch_branch(self, path) -> None:
        """Show ``path`` (a kept branch or a prefix of one) and have the engine restore it:
        the steps are the ones already computed, nothing runs again."""
        current = tuple(self.history)
        if path is None or path == current or self.running:
            return
        book = self.branch_book
        state = book.sampler_state(path) or self.sampler_state
        book.leave(current, self.sampler_state)
        shared = common_steps(current, path)
        transcript = self.query_one(Transcript)
        if shared < len(current):
            del self.history[shared:]
            transcript.remove_steps(len(current) - shared, pending_display(path[:shared]))
        if shared < len(path):
            self.history.extend(path[shared:])
            transcript.add_steps(path[shared:], pending_display(path))
        book.arrived(path)
        self.pending = pending_display(path)
        self.view_step = None
        self.submit(p.Restore, prompt=self.turn.prompt, steps=path, sampler_state=state,
                    reason="branch", messages=self.turn.messages)

    score_conversation: tuple | None = None  # chat: the messages before the scored reply

    def action_score(self) -> None:
        """Score the prompt's text, or the current turn's when the prompt is empty. In a
        conversation, that is its assistant messages, as ``minigpt score --messages``
        scores them (the whole rendered turn, system prompt and all, was scored here)."""
        if self.cannot_show("scoring"):
            return
        text = self.prompt_text()
        self.score_conversation = None
        if not text and self.turn.messages and self.chat_mode:
            self.score_conversation = tuple(self.turn.messages)
            self.push_screen(ScoreScreen(self.reply_text(), self.request_score,
                                         conversation=True))
            return
        if not text:
            turn = self.query_one(Transcript).current
            text = turn.plain if turn is not None else ""
        self.push_screen(ScoreScreen(text, self.request_score))

    def request_score(self, text: str, exact: bool) -> None:
        messages = None
        if self.score_conversation is not None:  # the text is the reply, as edited
            messages = (*self.score_conversation, {"role": "assistant", "content": text})
        self.score_request = self.send(p.ScoreText, text=text, exact=exact,
                                       messages=messages) or 0

    def got_scored(self, reply: p.Scored) -> None:
        if reply.seq == self.score_request and isinstance(self.screen, ScoreScreen):
            self.screen.show_score(reply.score, reply.error)

    def action_set_knob(self, field: str) -> None:
        from .knobs import KNOBS

        knob = next(k for k in KNOBS if k.field == field)
        self.push_screen(KnobScreen(knob, self.settings), self.knob_set)

    def knob_set(self, settings: SamplingSettings | None) -> None:
        if settings is not None and settings != self.settings:
            self.query_one(Sidebar).set_value(settings)
            self.settings = settings
            self.knobs_changed()

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.session_path()))

    def action_model(self) -> None:
        if self.info is None:
            self.set_status("the model is still loading")
            return
        reports = [{**self.info.report, "path": printable(self.checkpoint)}]
        if self.other_info is not None:  # compare: A, then B (as the header names them)
            reports.append({**self.other_info.report, "path": printable(self.compare)})
        self.push_screen(ModelScreen(reports, self.session_path()))

    def session_path(self) -> str | None:
        return printable(str(self.recorder.path)) if self.recorder is not None else None

    def action_export(self) -> None:
        if self.recorder is None:
            self.show_error("export failed: no session file to export")
            return
        try:
            self.remember_turn()
            paths = export_transcript(self.recorder.path, Path.cwd())
        except OSError as exc:
            self.show_error(f"export failed: {exc}")
            return
        names = " and ".join(str(path) for path in paths)
        self.set_status(f"exported {names}")
        self.notify(f"transcript written to {names}", markup=False)
