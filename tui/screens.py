"""Modal screens: key help (f1) and model information (m)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from minigpt.cli.render import inspect_renderables

KEYS = [
    ("prompt", "enter", "generate from the prompt text, streaming"),
    ("anywhere", "escape", "stop a run; idle: from the prompt, a knob or the transcript "
                           "to the candidates"),
    ("anywhere", "tab  shift+tab", "on to the sidebar's knobs and the transcript, and back"),
    ("knob", "enter", "take the value, on to the next knob (escape leaves)"),
    ("candidates", "space  n  →", "generate exactly one token"),
    ("candidates", "1 … 5", "append that candidate instead of sampling"),
    ("candidates", "↑ ↓ then enter", "append the highlighted candidate"),
    ("candidates", "⌫  u  ←", "undo the last token (its candidates show again)"),
    ("candidates", "g", "continue generating"),
    ("candidates", "i", "back to the prompt, the cursor at its end"),
    ("not typing", "[  ]", "older / newer step in the table (token highlighted)"),
    ("not typing", "p", "tint the transcript: probability, divergence (--compare), off"),
    ("not typing", "b", "--compare: the other model's own top-5 in the table (b again: back)"),
    ("not typing", "x", "--compare: the other model drives from the next token (a run goes on)"),
    ("not typing", "w", "why this token: raw / ÷T / kept / final probabilities, entropy"),
    ("not typing", "c", "complete characters: what a byte-piece candidate becomes, joint prob"),
    ("not typing", "a", "attention strip: the window's tokens coloured by attention weight"),
    ("not typing", ",  .  <  >", "attention: previous / next head (and the mean), layer"),
    ("not typing", "t", "branch tree: every path undo and picks left; enter switches to one"),
    ("anywhere", "f2", "score text: every token's probability, rank, surprisal; perplexity"),
    ("score", "f3", "exact windows: every token scored on its own window (slower)"),
    ("not typing", "m", "model: format, h_params, tensors"),
    ("candidates", "r", "restart the engine after it stopped (the turn comes back as it was)"),
    ("anywhere", "ctrl+s", "export the transcript: Markdown + JSON in the current directory"),
    ("anywhere", "f1", "this help"),
    ("anywhere", "ctrl+p", "command palette"),
    ("anywhere", "ctrl+q", "quit, even mid-generation"),
]


def session_line(session: str | None) -> Static:
    text = f"session file: {session} (every turn is appended; ctrl+s exports it)" \
        if session else "no session file"
    return Static(text, classes="session-path", markup=False)


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "close", id="close-help")]

    def __init__(self, session: str | None = None):
        super().__init__()
        self.session = session

    def compose(self) -> ComposeResult:
        table = Table("where", "key", "does", box=None, pad_edge=False, expand=True)
        for where, key, does in KEYS:
            table.add_row(where, f"[bold]{key}[/bold]", does)
        with VerticalScroll(id="help-body", classes="modal-body"):
            yield Static("[bold]Keys[/bold] · escape closes", classes="modal-title")
            yield session_line(self.session)
            yield Static(table)


class ModelScreen(ModalScreen):
    BINDINGS = [Binding("escape,m,q", "dismiss", "close", id="close-model")]

    def __init__(self, reports: list[dict], session: str | None = None):
        """``reports``: ``minigpt.cli.render.inspect_report`` of each model (with --compare:
        A, then B), from the engine."""
        super().__init__()
        self.reports = reports
        self.session = session

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="model-body", classes="modal-body"):
            title = "Models · A, then B" if len(self.reports) > 1 else "Model"
            yield Static(f"[bold]{title}[/bold] · escape closes", classes="modal-title")
            yield session_line(self.session)
            for label, report in zip("AB", self.reports):
                if len(self.reports) > 1:
                    yield Static(f"[bold]{label}[/bold]", classes="model-label")
                for renderable in inspect_renderables(report):
                    yield Static(renderable)


class KnobScreen(ModalScreen):
    """Set one sampling knob from the command palette (the sidebar folds away on
    narrow screens). Enter applies a valid value; escape leaves the knob as it was."""

    BINDINGS = [Binding("escape", "dismiss(None)", "close", id="close-knob")]

    def __init__(self, knob, settings):
        super().__init__()
        self.knob = knob
        self.settings = settings

    def compose(self) -> ComposeResult:
        from textual.widgets import Input

        from .knobs import show

        with Vertical(id="knob-body", classes="modal-body"):
            yield Static(f"[bold]Set {self.knob.label}[/bold] · {self.knob.expects} · enter "
                         "applies · escape closes", classes="modal-title")
            field = Input(show(getattr(self.settings, self.knob.field)), id="knob-value",
                          select_on_focus=True)
            field.cursor_blink = False
            yield field
            yield Static("", id="knob-error", markup=False)

    def on_input_submitted(self, event) -> None:
        from minigpt.errors import SettingsError

        from .knobs import parse_knob

        event.stop()
        try:
            self.dismiss(parse_knob(self.knob, event.value, self.settings))
        except SettingsError as exc:
            self.query_one("#knob-error", Static).update(f"✗ {exc}")

    def on_input_changed(self, event) -> None:
        """A value that is valid again takes the ✗ away (it stayed after a fix)."""
        from minigpt.errors import SettingsError

        from .knobs import parse_knob

        event.stop()
        try:
            parse_knob(self.knob, event.value, self.settings)
        except SettingsError:
            return  # said on enter, not at every key of a value being typed
        self.query_one("#knob-error", Static).update("")
