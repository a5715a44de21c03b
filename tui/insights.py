"""Why-this-token and character completions, as requested by the explorer.

Both are asked of the engine worker for the step the candidates table shows
(``view_step``; None is the next token) and come back as messages; an answer to
an older request (the knobs or the step changed since) is dropped. Neither
cancels a running generation: the worker answers when the run ends.
"""

from __future__ import annotations

from functools import partial

from .messages import Completed, Explained
from .runner import Complete, Explain
from .why import WhyPanel


class InsightsMixin:
    """Mixed into the app, which provides the reactives ``why_shown``,
    ``complete_shown``, ``view_step``, ``settings`` and the ``runner``."""

    why_request = 0  # the latest request of each kind; older answers are dropped
    complete_request = 0
    completions: tuple = (None, {})  # (step shown, id -> Completion)

    def request_insights(self) -> None:
        self.request_why()
        self.request_completions()

    def on_explained(self, message: Explained) -> None:
        if message.request != self.why_request:
            return  # the knobs or the step changed since
        index = message.step_index
        title = f"step {index}/{len(self.history)}" if index is not None else \
            f"step {len(self.history) + 1} · next token"
        self.query_one(WhyPanel).show(title, message.why, message.settings,
                                      self.engine.tokenizer, message.error)

    def watch_why_shown(self, shown: bool) -> None:
        self.query_one(WhyPanel).display = shown
        self.request_why()

    def watch_complete_shown(self, shown: bool) -> None:
        self.refresh_candidates()
        self.request_completions()

    def request_completions(self) -> None:
        """Ask the worker to complete the shown step's partial candidates (a short
        lookahead); the table shows at once and fills the completions in when they come."""
        if not self.complete_shown or not self.is_mounted:
            return
        self.complete_request += 1
        op = Complete(self.complete_request, self.view_step, self.settings)
        self.run_worker(partial(self.runner.complete, op, self.post_message), thread=True,
                        group="complete", exit_on_error=False)

    def on_completed(self, message: Completed) -> None:
        if message.request == self.complete_request:
            self.completions = (message.step_index, {c.id: c for c in message.completions})
            self.refresh_candidates()

    def request_why(self) -> None:
        """Ask the worker for the shown step's breakdown (cached logits: no model run)."""
        if not self.why_shown:
            return
        self.why_request += 1
        op = Explain(self.why_request, self.view_step, self.settings)
        self.run_worker(partial(self.runner.explain, op, self.post_message), thread=True,
                        group="why", exit_on_error=False)

    def action_toggle_complete(self) -> None:
        self.complete_shown = not self.complete_shown

    def action_toggle_why(self) -> None:
        self.why_shown = not self.why_shown
