"""The attention strip (key a): where the last position looked, over the window's tokens."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from minigpt.steps import Attention

# Background by weight, in named ANSI colours so a 16-colour terminal shows it too.
LEVELS = ((0.3, "black on bright_white"), (0.1, "white on red"), (0.03, "white on magenta"),
          (0.01, "white on blue"))


def weight_style(weight: float) -> str:
    return next((style for floor, style in LEVELS if weight >= floor), "")


def head_weights(attention: Attention, layer: int, head: int) -> list[float]:
    """One head's row, or (``head`` = number of heads) the mean over heads."""
    rows = attention.weights[layer]
    if head >= len(rows):
        return [sum(column) / len(rows) for column in zip(*rows)]
    return list(rows[head])


class AttentionStrip(Vertical):
    """A heading that always shows (layer, head and the three most-attended tokens) over
    the window's tokens coloured by weight; those scroll, ending at the most recent."""

    shown: tuple | None = None  # (title, layer, head, weights) on screen, for tests

    def compose(self) -> ComposeResult:
        yield Static("", id="attention-heading")
        with VerticalScroll(id="attention-scroll"):
            yield Static("", id="attention-tokens")

    def show(self, title: str, attention: Attention | None, layer: int, head: int,
             error: str = "") -> None:
        heading = self.query_one("#attention-heading", Static)
        tokens = self.query_one("#attention-tokens", Static)
        if attention is None:
            self.shown = (title, layer, head, None)
            heading.update(Text(f"attention · {title} · {error or 'nothing yet'}", style="dim"))
            tokens.update("")
            return
        layers, heads = len(attention.weights), len(attention.weights[0])
        weights = head_weights(attention, layer, head)
        self.shown = (title, layer, head, weights)
        pieces = list(attention.window_text)
        which = f"mean of {heads} heads" if head >= heads else f"head {head + 1}/{heads}"
        top = sorted(range(len(weights)), key=weights.__getitem__, reverse=True)[:3]
        heading.update(Text.assemble(
            (f"attention · {title} · layer {layer + 1}/{layers} · {which}", "bold"),
            ("\ntop " + "  ".join(f"{pieces[i]!r} {weights[i]:.2f}" for i in top), "dim")))
        strip = Text()
        for piece, weight in zip(pieces, weights):
            strip.append(piece or "▯", style=weight_style(weight))
        tokens.update(strip)
        scroll = self.query_one("#attention-scroll", VerticalScroll)
        scroll.call_after_refresh(scroll.scroll_end, animate=False)  # the latest tokens

    @property
    def text(self) -> str:
        """What the strip says (heading and tokens), for tests."""
        return "\n".join(str(self.query_one(f"#attention-{part}", Static).render())
                         for part in ("heading", "tokens"))
