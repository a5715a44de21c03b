"""Modal screens: key help (f1) and model information (m)."""

from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS = [
    ("prompt", "enter", "generate from the prompt text, streaming"),
    ("anywhere", "escape", "stop a running generation; idle in the prompt: go to the candidates"),
    ("candidates", "space  n  →", "generate exactly one token"),
    ("candidates", "1 … 5", "append that candidate instead of sampling"),
    ("candidates", "↑ ↓ then enter", "append the highlighted candidate"),
    ("candidates", "⌫  u  ←", "undo the last token (its candidates show again)"),
    ("candidates", "g", "continue generating"),
    ("candidates", "i", "back to the prompt"),
    ("anywhere", "[  ]", "older / newer step in the table (token highlighted)"),
    ("anywhere", "p", "tint the transcript by probability"),
    ("anywhere", "w", "why this token: raw / ÷T / kept / final probabilities, entropy"),
    ("anywhere", "c", "complete characters: what a byte-piece candidate becomes, joint prob"),
    ("anywhere", "a", "attention strip: the window's tokens coloured by attention weight"),
    ("anywhere", ",  .  <  >", "attention: previous / next head (and the mean), layer"),
    ("anywhere", "t", "branch tree: every path undo and picks left; enter switches to one"),
    ("anywhere", "f2", "score text: every token's probability, rank, surprisal; perplexity"),
    ("anywhere", "m", "model: format, h_params, tensors"),
    ("candidates", "r", "restart the engine after it stopped (the turn comes back as it was)"),
    ("anywhere", "ctrl+s", "export the transcript: Markdown + JSON in the current directory"),
    ("anywhere", "f1", "this help"),
    ("anywhere", "ctrl+p", "command palette"),
    ("anywhere", "ctrl+q", "quit, even mid-generation"),
]


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,f1,q", "dismiss", "close", id="close-help")]

    def compose(self) -> ComposeResult:
        table = Table("where", "key", "does", box=None, pad_edge=False, expand=True)
        for where, key, does in KEYS:
            table.add_row(where, f"[bold]{key}[/bold]", does)
        with VerticalScroll(id="help-body", classes="modal-body"):
            yield Static("[bold]Keys[/bold] · escape closes", classes="modal-title")
            yield Static(table)


class ModelScreen(ModalScreen):
    BINDINGS = [Binding("escape,m,q", "dismiss", "close", id="close-model")]

    def __init__(self, report: dict):
        """``report``: ``minigpt.render.inspect_report`` of the model, from the engine."""
        super().__init__()
        self.report = report

    def compose(self) -> ComposeResult:
        r = self.report
        hp = Table("h_param", "value", box=None, pad_edge=False)
        for key, value in r["h_params"].items():
            hp.add_row(key, str(value))
        tensors = Table("tensor", "shape", "dtype", box=None, pad_edge=False)
        for t in r["tensors"]:
            tensors.add_row(t["name"], str(t["shape"]), t["dtype"])
        with VerticalScroll(id="model-body", classes="modal-body"):
            yield Static(f"[bold]{r['path']}[/bold] · escape closes", classes="modal-title")
            yield Static(f"format: {r['format']}\n{r['parameters']:,} trainable parameters · "
                         f"tokenizer {r['tokenizer']} · device {r['device']}")
            for note in r["inferred"]:
                yield Static(f"[dim]inferred: {note}[/dim]")
            yield Static(hp)
            yield Static(tensors)
