"""The keys that move through generation: one token, go on, pick a candidate, undo,
and browse older and newer steps. Each becomes an op for the engine process (ops run
in order there), or only a change of the step on show — whose candidates the table
shows."""

from __future__ import annotations

from minigpt.host import protocol as p

from .lines import TitleLine
from .versus import divergence_text
from .widgets import CandidatesTable


class SteppingMixin:
    """Stepping actions for ``MiniGPTApp``."""

    def stepping_prompt(self) -> str | None:
        """What a stepping key (space, g) starts from: the prompt as shown when it differs
        from the current turn's (a new turn, as enter would start), else None (go on)."""
        text = self.prompt_text()
        if self.editing_last and text:  # the message undo gave back: a new turn from it
            return text
        current = self.turn.messages[-1]["content"] if self.turn.messages else self.turn.prompt
        if text != current and (text or not self.turn.prompt):
            return text
        return None

    def open_typed_prompt(self) -> None:
        """Escape from a prompt typed but not run: a turn with no token yet, so step 1's
        candidates show at once (it was an empty table until space, then undo)."""
        prompt = self.stepping_prompt()
        if prompt and self.engine_state not in ("stopped", "failed"):
            self.view_step = None
            self.new_turn_note = False
            self.submit(p.Generate, prompt=prompt, count=0)

    def action_step_one(self) -> None:
        self.step_or_go(1)

    def action_continue_generation(self) -> None:
        self.step_or_go(None)

    def step_or_go(self, count: int | None) -> None:
        prompt = self.stepping_prompt()
        limit = self.settings.max_new_tokens
        if count is None and prompt is None and len(self.history) >= limit and not self.running:
            where = "ctrl+p › Set max_new_tokens" if self.has_class("narrow") else \
                "raise max_new in the sidebar or with ctrl+p"  # narrow: no sidebar
            self.set_status(f"max_new_tokens ({limit}) reached · {where}")
            return
        self.view_step = None
        self.new_turn_note = prompt is not None and bool(self.turn.prompt)
        self.submit(p.Generate, prompt=prompt, count=count)

    def action_pick(self, rank: int) -> None:
        if self.other_top:  # the rows are the other model's: a pick would take another token
            self.set_status("b first: picks take the driving model's candidates")
            return
        if self.view_step is not None:  # rewind to that step and take its candidate
            candidates = self.history[self.view_step - 1].candidates
            keep = self.view_step - 1
        elif self.preview is not None or self.running:
            candidates, keep = self.preview.candidates if self.preview else (), None
        else:
            self.set_status("nothing to pick yet: press space to start from the prompt")
            return
        if candidates and rank > len(candidates):
            return
        self.view_step = None
        self.submit(p.Take, rank=rank, keep_steps=keep)

    def action_undo(self) -> None:
        if not self.history and not self.running:
            if not self.undo_into_prompt():  # a chat reply's start: back to its message
                self.set_status("nothing to undo")
            return
        self.view_step = None
        self.submit(p.Undo)

    def action_older_step(self) -> None:
        if not self.history:
            return
        current = len(self.history) + 1 if self.view_step is None else self.view_step
        self.view_step = max(1, current - 1)

    def action_newer_step(self) -> None:
        if self.view_step is None:
            return
        self.view_step = None if self.view_step >= len(self.history) else self.view_step + 1

    def show_candidates(self, title: str, candidates, chosen_id: int | None,
                        versus=None) -> None:
        if versus is not None:  # right after the step's number: 80 columns keep it
            head, _, rest = title.partition(" · ")
            title = " · ".join(part for part in (head, divergence_text(versus), rest) if part)
        if title and self.info is not None and self.info.capabilities.own_sampler:
            title += " · server's raw top-5"  # softmax of the raw logits: not what it draws from
        self.query_one("#candidates-title", TitleLine).update(title)
        step, completions = self.completions
        shown = completions if self.complete_shown and step == self.view_step else None
        self.query_one(CandidatesTable).show(
            *self.table_arguments(candidates, chosen_id, shown, versus))

    peek_request = 0  # the latest Peek: the next token's candidates under new knobs

    def knobs_changed(self) -> None:
        """New knobs: the table's next-token candidates are recomputed for them (the
        engine uses its cached logits), so that what it shows is what the next key
        samples from; the insight views follow."""
        self.set_status("settings applied: the candidates on show follow them")
        if self.engine_state == "ready" and self.preview is not None:
            self.peek_request = self.send(p.Peek, settings=self.settings) or 0
        self.request_insights()

    def got_peeked(self, reply: p.Peeked) -> None:
        if reply.seq != self.peek_request or reply.seq < self.last_engine_seq:
            return  # a newer op's RunFinished brings its own preview
        if reply.preview is not None:
            self.preview = reply.preview
            self.refresh_candidates()

    def refresh_candidates(self) -> None:
        # Compare mode adds KL/JS to the title: fewer words keep the chosen token in 80
        # columns.
        if self.view_step is not None:
            step = self.history[self.view_step - 1]
            keys = "([ ])" if self.comparing else "history ([ ])"
            self.show_candidates(f"step {step.index}/{len(self.history)} · chose "
                                 f"{step.chosen.text!r} · {keys}", step.candidates,
                                 step.chosen.id, step.versus)
        elif self.preview is not None:
            last = f" · last chose {self.history[-1].chosen.text!r}" if self.history else ""
            next_token = "" if self.comparing else " · next token"
            self.show_candidates(f"step {self.preview.index}{next_token}{last}",
                                 self.preview.candidates, None, self.preview.versus)
        else:
            self.show_candidates("", (), None)
