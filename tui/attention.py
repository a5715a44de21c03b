"""The attention strip (key a): where the last position looked, over the window's tokens."""

from __future__ import annotations

from rich.cells import cell_len, chop_cells
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.reactive import reactive
from textual.widgets import Static

from minigpt.steps import AttentionRows


# Background by weight, in named ANSI colours so a 16-colour terminal shows it too.
LEVELS = ((0.3, "black on bright_white"), (0.1, "white on red"), (0.03, "white on magenta"),
          (0.01, "white on blue"))


def weight_style(weight: float) -> str:
    return next((style for floor, style in LEVELS if weight >= floor), "")


def head_weights(attention: AttentionRows, layer: int, head: int) -> list[float]:
    """One head's row, or (``head`` = number of heads) the mean over heads."""
    rows = attention.weights[layer]
    if head >= len(rows):
        return [sum(column) / len(rows) for column in zip(*rows)]
    return list(rows[head])


def wrap_units(units: list[tuple[str, str]], width: int) -> Text:
    """``units`` (text, style) in lines of ``width`` cells, broken only between units:
    a phrase ('mean of 4 heads') or a byte escape ('‹e5 a4›') stays on one line, where
    wrapping at any space split them. A unit wider than a line is folded."""
    text, x = Text(no_wrap=True, overflow="crop"), 0
    width = max(width, 1)
    for unit, style in units:
        for n, segment in enumerate(unit.split("\n")):
            if n:  # a newline inside the unit (a token piece)
                text.append("\n")
                x = 0
            cells = cell_len(segment)
            if x and x + cells > width:
                text.append("\n")
                x = 0
            chunks = chop_cells(segment, width) if cells > width else [segment]
            for i, chunk in enumerate(chunks):
                if i:
                    text.append("\n")
                text.append(chunk, style=style)
            x = cell_len(chunks[-1]) if cells > width else x + cells
    return text


class UnitLines(Static):
    """Text wrapped between its units only (``wrap_units``), at whatever width it has."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.units: list[tuple[str, str]] = []

    def show(self, units: list[tuple[str, str]]) -> None:
        self.units = units
        self._content_height_cache = (None, 0)
        self.refresh(layout=True)

    def render(self) -> Text:
        return wrap_units(self.units, self.content_region.width or self.size.width)

    def get_content_height(self, container, viewport, width: int) -> int:
        return len(wrap_units(self.units, width).plain.split("\n")) if self.units else 0

    @property
    def plain(self) -> str:
        return "".join(unit for unit, _ in self.units)


class AttentionStrip(Vertical):
    """A heading that always shows (layer, head and the three most-attended tokens) over
    the window's tokens coloured by weight; those scroll, ending at the most recent."""

    # Not "layer": Textual's widgets have one (the compositing layer).
    layer_index: reactive[int] = reactive(0, init=False)
    head_index: reactive[int] = reactive(0, init=False)
    """A head index, or the number of heads for the mean over heads."""
    rows: tuple = ("", None, "")  # (title, AttentionRows, error): the engine's last answer
    shown: tuple | None = None  # (title, layer, head, weights) on screen, for tests

    def show_rows(self, title: str, attention: AttentionRows | None, error: str = "") -> None:
        """The engine's answer for a step; layer and head then change without it."""
        self.rows = (title, attention, error)
        self.draw()

    def draw(self) -> None:
        """From the rows already here: changing layer or head runs nothing."""
        title, attention, error = self.rows
        if attention is not None:  # wrap: layers, and heads plus the mean
            layers, heads = len(attention.weights), len(attention.weights[0])
            self.set_reactive(AttentionStrip.layer_index, self.layer_index % layers)
            self.set_reactive(AttentionStrip.head_index, self.head_index % (heads + 1))
        self.show(title, attention, self.layer_index, self.head_index, error)

    def watch_layer_index(self) -> None:
        self.draw()

    def watch_head_index(self) -> None:
        self.draw()

    def compose(self) -> ComposeResult:
        yield UnitLines(id="attention-heading")
        with VerticalScroll(id="attention-scroll"):
            yield UnitLines(id="attention-tokens")

    def show(self, title: str, attention: AttentionRows | None, layer: int, head: int,
             error: str = "") -> None:
        heading = self.query_one("#attention-heading", UnitLines)
        tokens = self.query_one("#attention-tokens", UnitLines)
        if attention is None:
            self.shown = (title, layer, head, None)
            heading.show([(f"attention · {title} · {error or 'nothing yet'}", "dim")])
            tokens.show([])
            return
        layers, heads = len(attention.weights), len(attention.weights[0])
        weights = head_weights(attention, layer, head)
        self.shown = (title, layer, head, weights)
        pieces = list(attention.window_text)
        which = f"mean of {heads} heads" if head >= heads else f"head {head + 1}/{heads}"
        phrases = ["attention", title, f"layer {layer + 1}/{layers}", which]
        top = sorted(range(len(weights)), key=weights.__getitem__, reverse=True)[:3]
        last = len(phrases) - 1
        heading.show([*((phrase + ("" if i == last else " · "), "bold")
                        for i, phrase in enumerate(phrases)),
                      ("\n", ""), ("top", "dim"),
                      *(((" " if n == 0 else "  ") + f"{pieces[i]!r} {weights[i]:.2f}", "dim")
                        for n, i in enumerate(top))])
        tokens.show([(piece or "▯", weight_style(weight))
                     for piece, weight in zip(pieces, weights)])
        scroll = self.query_one("#attention-scroll", VerticalScroll)
        scroll.call_after_refresh(scroll.scroll_end, animate=False)  # the latest tokens

    @property
    def text(self) -> str:
        """What the strip says (heading and tokens), for tests."""
        return "\n".join(self.query_one(f"#attention-{part}", UnitLines).plain
                         for part in ("heading", "tokens"))
