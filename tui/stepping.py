"""The keys that move through generation: one token, go on, pick a candidate, undo,
and browse older and newer steps. Each becomes an op for the engine process (ops run
in order there), or only a change of the step on show."""

from __future__ import annotations

from minigpt import protocol as p


class SteppingMixin:
    """Stepping actions for ``MiniGPTApp``."""

    def stepping_prompt(self) -> str | None:
        """What a stepping key (space, g) starts from: the prompt as shown when it differs
        from the current turn's (a new turn, as enter would start), else None (go on)."""
        text = self.prompt_text()
        if text != self.turn.prompt and (text or not self.turn.prompt):
            return text
        return None

    def action_step_one(self) -> None:
        self.step_or_go(1)

    def action_continue_generation(self) -> None:
        self.step_or_go(None)

    def step_or_go(self, count: int | None) -> None:
        prompt = self.stepping_prompt()
        limit = self.settings.max_new_tokens
        if count is None and prompt is None and len(self.history) >= limit and not self.running:
            self.set_status(f"max_new_tokens ({limit}) reached: raise max_new in the sidebar "
                            "or with ctrl+p › Set max_new_tokens")
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
