"""The explorer's widgets: transcript, candidates table, status line, key hints."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from minigpt.engine import Candidate, Step

BAR_WIDTH = 10


def prob_style(prob: float) -> str:
    """Tint for a token's probability; named ANSI colours so 16-colour terminals work."""
    if prob >= 0.5:
        return "green"
    if prob >= 0.2:
        return "yellow"
    if prob >= 0.05:
        return "magenta"
    return "red"


class Turn(Static):
    """One prompt and its continuation; only this widget re-renders while it streams."""

    def __init__(self, prompt: str):
        super().__init__(classes="turn")
        self.prompt = prompt
        self.segments: list[tuple[str, float]] = []  # (completed text, chosen prob) per step
        self.pending = ""
        self.highlight: int | None = None  # 0-based step index
        self.tint = False

    def render(self) -> Text:
        text = Text()
        text.append("› ", style="bold cyan")
        text.append(self.prompt, style="bold")
        for index, (piece, prob) in enumerate(self.segments):
            style = prob_style(prob) if self.tint else ""
            if index == self.highlight:
                style = f"{style} reverse".strip()
                piece = piece or "▯"  # a byte piece that completes nothing yet
            text.append(piece, style=style)
        if self.pending:
            text.append(self.pending, style="dim")
        return text

    @property
    def plain(self) -> str:
        return self.prompt + "".join(piece for piece, _ in self.segments)


class Transcript(VerticalScroll):
    """Chat-style turns; follows the tail unless the user scrolled up."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tint = False

    @property
    def current(self) -> Turn | None:
        turns = self.query(Turn)
        return turns.last() if turns else None

    def _following(self) -> bool:
        return self.scroll_y >= self.max_scroll_y - 1

    def _refresh_turn(self, follow: bool) -> None:
        turn = self.current
        if turn is not None:
            turn.refresh(layout=True)
        if follow:
            self.call_after_refresh(self.scroll_end, animate=False)

    def start_turn(self, prompt: str) -> None:
        turn = Turn(prompt)
        turn.tint = self.tint
        self.mount(turn)
        self.call_after_refresh(self.scroll_end, animate=False)

    def add_past_turn(self, record: dict) -> None:
        """A turn read back from a session file."""
        turn = Turn(record["prompt"])
        turn.tint = self.tint
        turn.segments = [(s.get("text", ""), s["chosen"]["prob"]) for s in record.get("steps", [])]
        if not turn.segments and record.get("completion"):
            turn.segments = [(record["completion"], 1.0)]
        turn.add_class("past")
        self.mount(turn)

    def add_steps(self, steps: list[Step], pending: str) -> None:
        turn = self.current
        if turn is None:
            return
        follow = self._following()
        turn.segments.extend((s.text, s.chosen.prob) for s in steps)
        turn.pending = pending
        self._refresh_turn(follow)

    def remove_steps(self, count: int, pending: str) -> None:
        turn = self.current
        if turn is None:
            return
        del turn.segments[len(turn.segments) - count:]
        turn.pending = pending
        self._refresh_turn(self._following())

    def set_highlight(self, index: int | None) -> None:
        turn = self.current
        if turn is not None and turn.highlight != index:
            turn.highlight = index
            turn.refresh()

    def set_tint(self, tint: bool) -> None:
        self.tint = tint
        for turn in self.query(Turn):
            turn.tint = tint
            turn.refresh()

    @property
    def plain(self) -> str:
        return "\n".join(turn.plain for turn in self.query(Turn))


class CandidatesTable(DataTable):
    """Top-5 candidates; the keys that explore generation live here."""

    BINDINGS = [
        Binding("space,n,right", "app.step_one", "step", id="step"),
        Binding("1", "app.pick(1)", "pick 1", show=False, id="pick1"),
        Binding("2", "app.pick(2)", "pick 2", show=False, id="pick2"),
        Binding("3", "app.pick(3)", "pick 3", show=False, id="pick3"),
        Binding("4", "app.pick(4)", "pick 4", show=False, id="pick4"),
        Binding("5", "app.pick(5)", "pick 5", show=False, id="pick5"),
        Binding("enter", "pick_highlighted", "pick highlighted", show=False, id="pick-row"),
        Binding("backspace,u,left", "app.undo", "undo", id="undo"),
        Binding("g", "app.continue_generation", "continue", id="continue"),
        Binding("i", "app.focus_prompt", "prompt", id="focus-prompt"),
    ]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        for label, key, width in (("#", "rank", 3), ("token", "token", 16), ("id", "id", 7),
                                  ("prob", "prob", 7), ("", "bar", BAR_WIDTH)):
            self.add_column(label, key=key, width=width)

    def action_pick_highlighted(self) -> None:
        self.app.action_pick(self.cursor_row + 1)

    def show(self, candidates: tuple[Candidate, ...], chosen_id: int | None) -> None:
        cursor = self.cursor_row
        self.clear()
        for rank, c in enumerate(candidates, 1):
            marker = "▶" if c.id == chosen_id else " "
            style = "bold" if marker == "▶" else ("dim" if not c.kept else "")
            cells = (f"{rank}{marker}", repr(c.text), str(c.id), f"{c.prob:.4f}",
                     "█" * max(0, round(c.prob * BAR_WIDTH)) or "▏")
            self.add_row(*(Text(cell, style=style, no_wrap=True, overflow="ellipsis")
                           for cell in cells), key=str(rank))
        if candidates:
            self.move_cursor(row=min(cursor, len(candidates) - 1), animate=False)


class StatusLine(Static):
    """Tokens generated, speed, position in the context window, why it stopped."""


class KeyHints(Static):
    """The footer: the keys that matter where the focus is."""

    PROMPT = "enter generate · esc explore · f1 help · ctrl+p commands · ctrl+q quit"
    RUNNING = "esc stop · ⌫ stop+undo · ctrl+q quit"
    TABLE = "space step · 1-5 pick · ⌫ undo · g go · [ ] past · p tint · m model · i prompt"
