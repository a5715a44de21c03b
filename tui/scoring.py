"""Score my text (f2): every token's probability, rank and surprisal, and the perplexity."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static, TextArea

from minigpt.errors import MiniGPTError
from minigpt.score import Score, score_text
from minigpt.tokenizer import StreamDecoder

from .widgets import prob_style


@dataclass
class Scored(Message):
    """The scoring worker's answer: a result, or the one-line reason there is none."""

    score: Score | None
    error: str = ""


def tinted_text(score: Score, tokenizer) -> Text:
    """The scored text with each token coloured by its probability (pieces buffered
    into whole characters, as in the transcript)."""
    stream = StreamDecoder()
    text = Text(stream.feed(tokenizer.token_bytes(score.first_id)))
    for token in score.tokens:
        text.append(stream.feed(tokenizer.token_bytes(token.id)), style=prob_style(token.prob))
    return text


class ScoreScreen(ModalScreen):
    BINDINGS = [Binding("escape", "dismiss", "close", id="close-score"),
                Binding("f2", "score", "score", priority=True, id="rescore"),
                Binding("f3", "toggle_exact", "exact windows", priority=True, id="exact")]

    def __init__(self, loaded, text: str):
        super().__init__()
        self.loaded = loaded
        self.initial_text = text
        self.score: Score | None = None
        self.exact = False  # every token from its own window of the last context_length

    def compose(self) -> ComposeResult:
        with Vertical(id="score-body", classes="modal-body"):
            yield Static(self.title_text(), id="score-title", classes="modal-title")
            yield TextArea(self.initial_text, id="score-text", soft_wrap=True)
            yield Static("", id="score-summary", markup=False)
            yield Static("", id="score-tinted")
            yield DataTable(id="score-table", cursor_type="row", zebra_stripes=False)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for label, width in (("#", 5), ("token", 14), ("id", 7), ("prob", 7), ("rank", 7),
                             ("bits", 6)):
            table.add_column(label, width=width)
        self.query_one(TextArea).focus()
        self.action_score()

    def title_text(self) -> str:
        windows = "exact per token (f3: one pass each)" if self.exact else \
            "one pass each (f3: exact)"
        return f"[bold]Score my text[/bold] · f2 scores · windows: {windows} · escape closes"

    def action_toggle_exact(self) -> None:
        self.exact = not self.exact
        self.query_one("#score-title", Static).update(self.title_text())
        self.action_score()

    def action_score(self) -> None:
        self.query_one("#score-summary", Static).update("scoring…")
        self.run_score(self.query_one(TextArea).text, self.exact)

    @work(thread=True, exclusive=True, group="score", exit_on_error=False)
    def run_score(self, text: str, exact: bool) -> None:
        loaded = self.loaded
        try:
            score = score_text(loaded.model, loaded.tokenizer, text, loaded.vocab_size,
                               loaded.context_length, exact=exact)
            self.post_message(Scored(score))
        except MiniGPTError as exc:
            self.post_message(Scored(None, str(exc)))

    def on_scored(self, message: Scored) -> None:
        summary = self.query_one("#score-summary", Static)
        table = self.query_one(DataTable)
        table.clear()
        self.score = message.score
        if message.score is None:
            summary.update(f"✗ {message.error}")
            self.query_one("#score-tinted", Static).update("")
            return
        score = message.score
        summary.update(f"perplexity {score.perplexity:,.2f} · {score.mean_surprisal_bits:.2f} "
                       f"bits/token · {len(score.tokens)} tokens scored (the first is context "
                       f"only) · {score.windows} forward pass(es)")
        self.query_one("#score-tinted", Static).update(tinted_text(score, self.loaded.tokenizer))
        for t in score.tokens:
            style = "dim" if t.rank > 5 else ""
            table.add_row(*(Text(cell, style=style, no_wrap=True, overflow="ellipsis") for cell in
                            (str(t.index), repr(t.text), str(t.id), f"{t.prob:.4f}",
                             str(t.rank), f"{t.surprisal_bits:.2f}")))
