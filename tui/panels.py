"""The explorer's panels over the candidates — why this token, the attention strip — and
character completions, as requested from the engine.

Each is an op to the engine process for the step the candidates table shows
(``view_step``; None is the next token), answered by a reply; an answer to an
older request (the knobs or the step changed since) is dropped. None cancels a
running generation: the engine answers when the run ends.
"""

from __future__ import annotations

from textual.reactive import reactive

from minigpt.host.protocol import Attend, Attended, Complete, Completed, AskWhy, WhyAnswered

from .attention import AttentionStrip
from .why import WhyPanel

# Below this many rows the why panel and the attention strip take turns, so the
# transcript, the table and the status line keep their rows (80×24 included).
ONE_PANEL_BELOW_ROWS = 34
# Rows the main column always keeps: the transcript's, and the candidates' (five, or
# three on a small screen, plus their header). Panels get what is left, or fold.
MIN_TRANSCRIPT_ROWS = 3
FULL_TABLE_BELOW_ROWS = 23  # screens shorter than this show three candidates
WHY_ROWS, ATTENTION_ROWS = 10, 7  # natural heights, top border included
MIN_PANEL_ROWS = 4


class PanelsMixin:
    """Mixed into the app, which provides ``view_step``, ``settings``, ``history``
    and ``send`` (an op to the engine)."""

    # init=False: nothing to ask the engine for at start (an op sent before the model's
    # Open was answered with "no model is loaded").
    why_shown: reactive[bool] = reactive(False, init=False)
    """The why-this-token panel is open."""
    complete_shown: reactive[bool] = reactive(False, init=False)
    """Partial-UTF-8 candidates show the character they most likely complete to."""
    attention_shown: reactive[bool] = reactive(False, init=False)
    """The attention strip is open."""

    why_request = 0  # the latest request of each kind; older answers are dropped
    complete_request = 0
    attention_request = 0
    panels_folded = False  # panels are open but the window has no room for them
    completions: tuple = (None, {})  # (step shown, id -> Completion)

    def request_insights(self) -> None:
        self.request_why()
        self.request_completions()
        self.request_attention()

    def step_title(self, index: int | None) -> str:
        return f"step {index}/{len(self.history)}" if index is not None else \
            f"step {len(self.history) + 1} · next token"

    # --- attention strip ---------------------------------------------------------

    screen_rows = 0  # the terminal's height, as the last resize said

    def one_panel_at_a_time(self) -> bool:
        return (self.screen_rows or self.size.height) < ONE_PANEL_BELOW_ROWS

    def fit_panels(self) -> None:
        """Share the main column's rows (on every resize and panel toggle): the status
        line and at least three candidates always stay; panels shrink, then fold."""
        if not self.is_mounted:
            return
        height = self.screen_rows or self.size.height
        if self.why_shown and self.attention_shown and self.one_panel_at_a_time():
            self.attention_shown = False  # calls back here
            return
        table_rows = 5 if height >= FULL_TABLE_BELOW_ROWS else 3
        self.query_one("#candidates").styles.height = table_rows + 1
        body = height - 3  # header, prompt, key hints
        room = body - (1 + table_rows + 1 + 1) - MIN_TRANSCRIPT_ROWS  # title, table, status
        why, strip = self.query_one(WhyPanel), self.query_one(AttentionStrip)
        wanted = [(panel, rows) for panel, rows, shown in
                  ((why, WHY_ROWS, self.why_shown), (strip, ATTENTION_ROWS, self.attention_shown))
                  if shown]
        folded = bool(wanted) and room < MIN_PANEL_ROWS * len(wanted)
        for panel, shown in ((why, self.why_shown), (strip, self.attention_shown)):
            panel.display = shown and not folded
        for panel, rows in wanted:
            rows = min(rows, room // len(wanted))
            if panel is strip:
                panel.styles.height = rows  # its tokens scroll inside
            else:
                panel.styles.max_height = rows
        self.panels_folded = folded
        self.keep_in_view()

    def watch_attention_shown(self, shown: bool) -> None:
        if shown and self.one_panel_at_a_time():
            self.why_shown = False
        self.fit_panels()
        self.request_attention(capture=shown)

    def request_attention(self, capture: bool | None = None) -> None:
        """Rows for the shown step; ``capture`` False only tells the worker to stop
        keeping rows (the strip closed)."""
        if capture is None and not (self.attention_shown and self.is_mounted):
            return
        self.attention_request = self.send(Attend, step_index=self.view_step,
                                           capture=capture is not False) or 0

    @property
    def attention(self) -> tuple:
        """(title, AttentionRows, error): the strip's rows, which it keeps itself."""
        return self.query_one(AttentionStrip).rows

    def got_attended(self, message: Attended) -> None:
        if message.seq == self.attention_request:
            self.query_one(AttentionStrip).show_rows(self.step_title(message.step_index),
                                                     message.attention, message.error)

    def cannot_show(self, what: str) -> bool:
        """The model's backend cannot give ``what``: said in one line (True)."""
        missing = self.info.capabilities.missing(what) if self.info else None
        if missing:
            self.set_status(missing)
        return bool(missing)

    def action_toggle_attention(self) -> None:
        if self.attention_shown or not self.cannot_show("attention"):
            self.attention_shown = not self.attention_shown

    def action_attention_head(self, delta: int) -> None:
        self.query_one(AttentionStrip).head_index += delta  # it wraps (heads, then the mean)

    def action_attention_layer(self, delta: int) -> None:
        self.query_one(AttentionStrip).layer_index += delta

    def got_why(self, message: WhyAnswered) -> None:
        if message.seq != self.why_request:
            return  # the knobs or the step changed since
        self.query_one(WhyPanel).show(self.step_title(message.step_index), message.why,
                                      message.settings, message.error)

    def watch_why_shown(self, shown: bool) -> None:
        if shown and self.one_panel_at_a_time():
            self.attention_shown = False
        self.fit_panels()
        if shown and self.running:
            self.query_one(WhyPanel).pause()
        self.request_why()

    def watch_complete_shown(self, shown: bool) -> None:
        self.refresh_candidates()
        self.request_completions()

    def request_completions(self) -> None:
        """Ask the worker to complete the shown step's partial candidates (a short
        lookahead); the table shows at once and fills the completions in when they come."""
        if not self.complete_shown or not self.is_mounted:
            return
        self.complete_request = self.send(Complete, step_index=self.view_step,
                                          settings=self.settings) or 0

    def got_completed(self, message: Completed) -> None:
        if message.seq == self.complete_request:
            self.completions = (message.step_index, {c.id: c for c in message.completions})
            self.refresh_candidates()

    def request_why(self) -> None:
        """Ask the worker for the shown step's breakdown (cached logits: no model run)."""
        if not self.why_shown:
            return
        self.why_request = self.send(AskWhy, step_index=self.view_step,
                                     settings=self.settings) or 0

    def action_toggle_complete(self) -> None:
        if self.complete_shown or not self.cannot_show("full_logits"):
            self.complete_shown = not self.complete_shown

    def action_toggle_why(self) -> None:
        if self.why_shown or not self.cannot_show("why"):
            self.why_shown = not self.why_shown
