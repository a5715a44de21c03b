"""Score my text (f2): every token's probability, rank and surprisal, and the perplexity."""

from __future__ import annotations

import math
from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static, TextArea

from minigpt.steps import Score
from minigpt.text.tokenizer import StreamDecoder

from .widgets import prob_style


SMALL_BELOW_ROWS = 32
NARROW_COLUMNS = (("#", 5), ("token", 9), ("id", 6), ("prob", 6), ("rank", 5), ("bits", 5))
WIDE_COLUMNS = (("#", 6), ("token", 16), ("id", 6), ("prob", 6), ("rank", 6), ("bits", 5))


def significant(x: float, digits: int = 4) -> str:
    """``x`` to ``digits`` significant digits (479,600 · 12.35 · 0.001235): more would
    only show float noise that differs between machines."""
    if x == 0 or not math.isfinite(x):
        return str(x)
    decimals = digits - 1 - math.floor(math.log10(abs(x)))
    return f"{round(x, decimals):,.{max(0, decimals)}f}"


def tinted_text(score: Score, conversation: bool = False) -> Text:
    """The scored text with each token coloured by its probability (pieces buffered
    into whole characters, as in the transcript). A conversation's scored messages
    (``conversation``) each start a line; the text around them is not shown."""
    stream = StreamDecoder()
    text = Text("" if conversation else stream.feed(score.first_piece))
    previous = None
    for token in score.tokens:
        if conversation and previous is not None and token.index != previous + 1:
            text.append(stream.flush() + "\n")
        text.append(stream.feed(token.piece), style=prob_style(token.prob))
        previous = token.index
    return text


class ScoreScreen(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss", "close", id="close-score"),
                Binding("f2", "score", "score", priority=True, id="rescore"),
                Binding("f3", "toggle_exact", "exact windows", priority=True, id="exact")]

    def __init__(self, text: str, request: Callable[[str, bool], None],
                 conversation: bool = False):
        """``request(text, exact)`` asks the engine; the app hands the answer to
        ``show_score``. ``conversation``: ``text`` is the assistant's reply in a chat, and
        the assistant's messages are what is scored."""
        super().__init__()
        self.conversation = conversation
        self.request = request
        self.initial_text = text
        self.score: Score | None = None
        self.exact = False  # every token from its own window of the last context_length

    def compose(self) -> ComposeResult:
        with Vertical(id="score-body", classes="modal-body"):
            yield Static(self.title_text(), id="score-title", classes="modal-title")
            area = TextArea(self.initial_text, id="score-text", soft_wrap=True)
            area.cursor_blink = False  # nothing to repaint twice a second over SSH
            yield area
            yield Static("", id="score-summary", markup=False)
            yield Static("", id="score-tinted")
            yield DataTable(id="score-table", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        self.set_columns(self.app.size.width)
        self.query_one(TextArea).focus()
        self.action_score()

    def on_resize(self, event) -> None:
        self.set_class(event.size.height < SMALL_BELOW_ROWS, "small")
        self.set_columns(event.size.width)

    def set_columns(self, screen_width: int) -> None:
        """Below 70 columns the six columns take 48 cells with their padding (the table's
        room at 60); wider, tokens get room for a space and two byte pieces."""
        widths = NARROW_COLUMNS if screen_width < 70 else WIDE_COLUMNS
        table = self.query_one(DataTable)
        if [c.width for c in table.columns.values()] == [w for _, w in widths]:
            return
        table.clear(columns=True)
        for label, width in widths:
            table.add_column(label, width=width)
        if self.score is not None:
            self.show_score(self.score)

    def title_text(self) -> str:
        windows = "exact per token (f3: one pass each)" if self.exact else \
            "one pass each (f3: exact)"
        if self.conversation:
            return (f"[bold]Score the assistant's messages[/bold] (the last one below, as "
                    f"edited; as score --messages) · f2 scores · windows: {windows} · "
                    "escape closes")
        return f"[bold]Score my text[/bold] · f2 scores · windows: {windows} · escape closes"

    def action_toggle_exact(self) -> None:
        self.exact = not self.exact
        self.query_one("#score-title", Static).update(self.title_text())
        self.action_score()

    def action_score(self) -> None:
        self.query_one("#score-summary", Static).update("scoring…")
        self.request(self.query_one(TextArea).text, self.exact)

    def show_score(self, score: Score | None, error: str = "") -> None:
        summary = self.query_one("#score-summary", Static)
        table = self.query_one(DataTable)
        table.clear()
        self.score = score
        if score is None:
            summary.update(f"✗ {error}")
            self.query_one("#score-tinted", Static).update("")
            return
        scored = "assistant tokens scored (the rest of the conversation is context)" \
            if self.conversation else "scored (the first token is context)"
        summary.update(f"perplexity {significant(score.perplexity)} · "
                       f"{score.mean_surprisal_bits:.2f} bits/token · {len(score.tokens)} "
                       f"{scored} · "
                       f"{score.windows} pass{'es' if score.windows != 1 else ''}")
        self.query_one("#score-tinted", Static).update(tinted_text(score, self.conversation))
        for t in score.tokens:
            style = "dim" if t.rank > 5 else ""
            table.add_row(*(Text(cell, style=style, no_wrap=True, overflow="ellipsis") for cell in
                            (str(t.index), repr(t.text), str(t.id), f"{t.prob:.4f}",
                             t.rank_text, f"{t.surprisal_bits:.2f}")))
