"""The why-this-token panel (key ``w``): one step's distribution, stage by stage."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

from minigpt.settings import SamplingSettings
from minigpt.steps import Why


def knobs_text(s: SamplingSettings) -> str:
    top_k = "–" if s.top_k is None else str(s.top_k)
    top_p = "–" if s.top_p is None else f"{s.top_p:g}"
    return f"T {s.temperature:g} · k {top_k} · p {top_p} · rep {s.repetition_penalty:g}"


MAX_ROWS = 10  # a server's top-20 would push the summary off an 80×24 screen


def span(low: float, high: float) -> str:
    return f"{low:.2f}" if high - low < 0.005 else f"{low:.2f}–{high:.2f}"


def bounded_summary(why: Why) -> Text:
    """A server's: bounds from its top-N and the rest, said to be bounds."""
    raw = (f"raw, T 1  H {span(why.raw_entropy, why.raw_entropy_high)} nats, exp(H) "
           f"{span(math.exp(why.raw_entropy), math.exp(why.raw_entropy_high))} (bounds: "
           f"top-{len(why.rows)} + the rest {why.rest:.3f}) · of {why.vocab_size:,}")
    if why.entropy != why.entropy:
        sampling = "sampling  the server does not report its sampler's distribution"
    else:
        kept = f"kept {why.kept_count:,}" if why.kept_count else f"kept > {len(why.rows)}"
        sampling = (f"sampling  H {span(why.entropy, why.entropy_high)} nats, exp(H) "
                    f"{span(math.exp(why.entropy), math.exp(why.entropy_high))} · {kept} "
                    "(the server's sampler)")
    return Text(f"{sampling}\n{raw}", style="dim")


class WhyPanel(Static):
    """Raw probability (T = 1), after penalty and temperature, kept by top-k/top-p,
    renormalised; the entropy and exp(H). The app routes the engine's answers here; the
    panel keeps what it shows and draws it."""

    # (title, breakdown, the knobs it was computed with); title "paused" while streaming
    shown: reactive[tuple[str, Why | None, SamplingSettings] | None] = \
        reactive(None, init=False, always_update=True)
    error = ""  # why there is no breakdown (with ``shown[1]`` None)

    def show(self, title: str, why: Why | None, settings: SamplingSettings,
             error: str = "") -> None:
        self.error = error
        self.shown = (title, why, settings)

    def pause(self) -> None:
        """Tokens are streaming: a breakdown on show would be an older step's."""
        self.error = ""
        self.shown = ("paused", None, self.shown[2] if self.shown else SamplingSettings())

    def watch_shown(self, shown) -> None:
        title, why, settings = shown
        if title == "paused":
            self.update(Group(Text("why · paused while tokens stream", style="bold"),
                              Text("it shows the next token when the run stops (esc stops it)",
                                   style="dim")))
            return
        error = self.error
        heading = Text.assemble((f"why {title}", "bold"), (f" · {knobs_text(settings)}", "dim"))
        if why is None:
            self.update(Group(heading, Text(error or "nothing to show yet", style="dim")))
            return
        table = Table(box=None, pad_edge=False, show_edge=False, expand=False)
        for name in ("#", "token", "id", "raw", "÷T", "kept", "final"):
            table.add_column(name, justify="left" if name == "token" else "right",
                             no_wrap=True, max_width=14 if name == "token" else None)
        shown = lambda v: "—" if v != v else f"{v:.4f}"  # noqa: E731  NaN: not reported
        for rank, row in enumerate(why.rows[:MAX_ROWS], 1):
            piece = repr(row.text)
            table.add_row(str(rank), piece, str(row.id), f"{row.raw:.4f}", shown(row.tempered),
                          "✓" if row.kept else "✗", shown(row.final),
                          style="" if row.kept else "dim")
        if why.bounded:  # the bounds first: a short panel shows them, the rows after
            self.update(Group(heading, bounded_summary(why), table))
            return
        self.update(Group(heading, table,
                          Text(f"sampling  H {why.entropy:.2f} nats, exp(H) "
                               f"{why.effective_vocab:,.1f} · kept {why.kept_count:,}\n"
                               f"raw, T 1  H {why.raw_entropy:.2f} nats, exp(H) "
                               f"{why.raw_effective_vocab:,.1f} · of {why.vocab_size:,}",
                               style="dim")))
