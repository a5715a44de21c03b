"""The footer: the keys that work where the focus is, fitted to the width.

It follows focus wherever focus goes (a modal closing, a click, tab), and the quit
key is always on it, however narrow the terminal.
"""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget
from textual.widgets import Static

QUIT = "ctrl+q quit"

HINTS = {
    "running": ("esc stop", "⌫ stop+undo", "space stop+step"),
    "running-prompt": ("esc stop", "enter new run", "f1 help"),  # space, ⌫ are text here
    "running-field": ("esc stop", "f1 help"),
    "stopped": ("r restart engine", "f1 help"),
    "unresponsive": ("esc stop waiting", "r restart engine", "f1 help"),
    "prompt": ("enter generate", "esc candidates", "f1 help", "ctrl+p commands"),
    "candidates": ("space step", "1-5 pick", "⌫ undo", "g go", "[ ] past", "w why",
                   "c chars", "a attention", "t tree", "i prompt"),
    "knob": ("type a value", "enter next", "esc candidates", "f1 help"),
    "transcript": ("↑ ↓ scroll", "esc candidates", "[ ] past", "w why", "f1 help"),
    "screen": ("esc close", "f1 help"),
}


def fit(items: tuple[str, ...], width: int) -> str:
    """As many hints as fit in ``width``, then the quit key."""
    shown: list[str] = []
    room = width - len(QUIT)
    for item in items:
        if sum(len(s) + 3 for s in shown) + len(item) + 3 > room:
            break
        shown.append(item)
    return " · ".join([*shown, QUIT])


def where(app, focused: Widget | None) -> str:
    """Which set of hints describes the focused widget."""
    if app.engine_state in ("stopped", "failed"):
        return "stopped"
    if getattr(app, "unresponsive", False):
        return "unresponsive"
    name = getattr(focused, "id", None) or ""
    if app.running:  # the stepping keys work in the candidates table alone
        if name == "prompt":
            return "running-prompt"
        return "running-field" if name.startswith("knob-") or name == "transcript" else \
            "running"
    if app.screen is not app.screen_stack[0]:
        return "screen"
    if name == "prompt":
        return "prompt"
    if name.startswith("knob-"):
        return "knob"
    if name == "transcript":
        return "transcript"
    return "candidates"


class KeyHints(Static):
    kind = "prompt"

    def show(self, kind: str) -> None:
        self.kind = kind
        self.refresh()

    def render(self) -> Text:
        return Text(fit(HINTS[self.kind], max(0, self.size.width - 2)), no_wrap=True,
                    overflow="crop")
