"""One-row lines: the header, the candidates' title and the status line. Their size
never depends on their text, and the fitted ones give up their least needed parts before
their end is cut."""

from __future__ import annotations

from rich.cells import cell_len
from rich.text import Text
from textual.widgets import Static


class OneLine(Static):
    """A one-row line of text. Its size never depends on its text (the CSS fixes it), so
    an update repaints it without a layout pass over the whole screen, which streaming
    would otherwise pay on every frame."""

    def update(self, content="", *, layout: bool = False) -> None:
        super().update(content, layout=layout)


# What the status line gives up, in order, before its end is cut: the speed, notes about
# the turn (said again by what the screen shows), then the last step's divergence (the
# candidates' title shows it too). Why it stopped, the count and the position stay.
NOTES = ("new turn from the edited prompt", "same prompt and seed", "space steps")
DROPPABLE = (lambda part: part.endswith("tok/s"), lambda part: part.startswith(NOTES),
             lambda part: part.startswith("last step "),
             lambda part: part.startswith("window slid"))  # "sees N" on the position says it
# The candidates' title gives up the browsing keys' reminder first (f1 lists them).
TITLE_DROPPABLE = (lambda part: part.endswith("([ ])"),)


def fit_status(text: str, width: int, droppable=DROPPABLE) -> str:
    """``text`` in ``width`` cells: " · " parts go in ``droppable``'s order, then the
    end is cut with an ellipsis."""
    if width <= 0 or cell_len(text) <= width:
        return text
    parts = text.split(" · ")
    for drop in droppable:
        parts = [part for part in parts if not drop(part)]
        text = " · ".join(parts)
        if cell_len(text) <= width:
            return text
    cut = Text(text)
    cut.truncate(width, overflow="ellipsis")
    return cut.plain


class FittedLine(OneLine):
    """A line fitted to its width (``fit_status``) rather than cut, again on resize."""

    droppable = DROPPABLE

    def update(self, content="", *, layout: bool = False) -> None:
        self.full_text = str(content)
        super().update(self.fitted(), layout=layout)

    def fitted(self) -> str:
        return fit_status(getattr(self, "full_text", ""), self.content_region.width,
                          self.droppable)

    def on_resize(self) -> None:
        super().update(self.fitted())


class StatusLine(FittedLine):
    """Tokens generated, speed, position in the context window, why it stopped."""


class TitleLine(FittedLine):
    """The candidates' title: which step, what was chosen, KL/JS when comparing."""

    droppable = TITLE_DROPPABLE
