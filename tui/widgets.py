"""The explorer's widgets: transcript, candidates table, status line, key hints."""

from __future__ import annotations

from rich.text import Text
from textual.geometry import Region, Size
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual import events
from textual.widgets import DataTable, Input, Static

from minigpt.steps import Candidate, Step
from minigpt.text.tokenizer import printable

BAR_WIDTH = 10


# Tints by level, in named ANSI colours so 16-colour terminals work: (floor, colour).
PROB_LEVELS = ((0.5, "green"), (0.2, "yellow"), (0.05, "magenta"), (0.0, "red"))
JS_LEVELS = ((0.4, "red"), (0.2, "magenta"), (0.05, "yellow"), (0.0, "green"))


def prob_style(prob: float) -> str:
    """Tint for a token's probability."""
    return next(colour for floor, colour in PROB_LEVELS if prob >= floor)


def tint_legend(tint: str) -> str:
    """What the colours mean, short enough for 60 columns:
    'tint p: green ≥.5 yellow ≥.2 magenta ≥.05 red <.05'."""
    levels, name = (PROB_LEVELS, "p") if tint == "probability" else (JS_LEVELS, "JS")
    *higher, (_, lowest) = levels
    short = lambda x: f"{x:g}".removeprefix("0")  # noqa: E731
    return " ".join([f"tint {name}:", *(f"{colour} ≥{short(floor)}" for floor, colour in higher),
                     f"{lowest} <{short(higher[-1][0])}"])


def short_prob(prob: float) -> str:
    """Seven characters: 0.0123, or 3.9e-08 where four decimals would read 0.0000 (the
    other model may give a token almost nothing)."""
    return f"{prob:.4f}" if prob >= 0.001 or prob == 0 else f"{prob:.1e}"


def divergence_style(js: float | None) -> str:
    """Tint for how far the two compared models were apart at a step (Jensen–Shannon, in
    nats, at most ln 2): green where they agree, red where they part."""
    if js is None:
        return ""
    return next(colour for floor, colour in JS_LEVELS if js >= floor)


PART_STEPS = 200  # a turn part is sealed after this many steps, at the next line break


class TurnPart(Static):
    """A run of one turn's steps. Only the live (last) part re-renders while the
    turn streams, so a 10,000-token run costs the same per frame as a short one."""

    def __init__(self, turn: "Turn", start: int):
        super().__init__(classes="turn-part")
        self.turn = turn
        self.start = start
        self.end = start  # exclusive; follows the turn's length while this part is live

    def render(self) -> Text:
        return self.turn.render_steps(self)

    def grown(self) -> bool:
        """Repaint after steps were added; True when the height changed. Only then is a
        layout pass needed (it costs a streaming frame more than everything else); most
        frames add text within the last line."""
        width = self.content_region.width
        # Textual caches the rendered text until a refresh, and the height per width: both
        # still hold the text before these steps (measured on them, a run's last frame
        # that wrapped kept its last line hidden at 80×24). Refresh first, then measure.
        self.refresh()
        self.clear_cached_dimensions()
        if width and self.get_content_height(self.size, self.size, width) == self.size.height:
            return False
        self.refresh(layout=True)
        return True


class Turn(Vertical):
    """One prompt and its continuation, held as parts that each hold whole lines."""

    def __init__(self, prompt: str, tint: str = "", header: Text | None = None):
        super().__init__(classes="turn")
        self.prompt = prompt
        self.header = header  # a chat turn: the conversation's new part (tui.chat)
        # (completed text, chosen prob, Jensen–Shannon to the compared model or None)
        self.segments: list[tuple[str, float, float | None]] = []
        self.pending = ""
        self.highlight: int | None = None  # 0-based step index
        self.tint = tint
        self.parts = [TurnPart(self, 0)]
        self.searched = 0  # steps before this were searched for a line break to seal at

    def compose(self):
        yield from self.parts

    @property
    def live(self) -> TurnPart:
        return self.parts[-1]

    def render_steps(self, part: TurnPart, until: int | None = None) -> Text:
        """The part's text (``until``: only the steps before that index)."""
        text = Text()
        if part.start == 0 and self.header is not None:
            text.append_text(self.header)
        elif part.start == 0:
            text.append("› ", style="bold cyan")
            text.append(self.prompt, style="bold")
        end = part.end if until is None else min(part.end, until)
        for index in range(part.start, end):
            piece, prob, js = self.segments[index]
            style = divergence_style(js) if self.tint == "divergence" else \
                prob_style(prob) if self.tint else ""
            if index == self.highlight:
                style = f"{style} reverse".strip()
                piece = piece or "▯"  # a byte piece that completes nothing yet
            text.append(printable(piece, keep="\n\t"), style=style)
        if until is not None:
            return text
        if part is self.live:
            if self.pending:
                text.append(self.pending, style="dim")
        elif text.plain.endswith("\n"):
            text.right_crop(1)  # the next part starts on the next line
        return text

    def extend(self, segments: list[tuple], pending: str) -> bool:
        """Add steps ((text, prob) or (text, prob, js)); True when the turn grew taller
        (so a follower must scroll)."""
        self.segments.extend((*segment, None)[:3] for segment in segments)
        self.pending = pending
        live = self.live
        live.end = len(self.segments)
        taller = live.grown()
        # Seal the live part at the first line break after PART_STEPS steps. Steps already
        # searched are not searched again, so a long line without breaks stays O(1) a frame.
        while live.end - live.start >= PART_STEPS:
            first = max(live.start + PART_STEPS - 1, self.searched)
            cut = next((i for i in range(first, live.end)
                        if self.segments[i][0].endswith("\n")), None)
            self.searched = live.end if cut is None else cut + 1
            if cut is None:
                break
            live.end = cut + 1
            live = TurnPart(self, cut + 1)
            live.end = len(self.segments)
            self.parts.append(live)
            if self.is_mounted:
                self.mount(live)
            taller = True
        return taller

    def truncate(self, length: int, pending: str) -> None:
        del self.segments[length:]
        self.searched = min(self.searched, length)
        self.pending = pending
        while len(self.parts) > 1 and self.parts[-1].start > length:
            self.parts.pop().remove()
        self.live.end = length
        self.live.refresh(layout=True)

    def set_highlight(self, index: int | None) -> None:
        for part in self.parts:
            if any(i is not None and part.start <= i < max(part.end, part.start + 1)
                   for i in (self.highlight, index)):
                part.refresh()
        self.highlight = index

    def set_tint(self, tint: str) -> None:
        self.tint = tint
        for part in self.parts:
            part.refresh()

    @property
    def plain(self) -> str:
        return self.prompt + "".join(segment[0] for segment in self.segments)

    @property
    def shown_plain(self) -> str:
        """The turn as on screen (a chat turn's header instead of its raw prompt)."""
        head = self.header.plain if self.header is not None else self.prompt
        return head + "".join(segment[0] for segment in self.segments)


class Transcript(VerticalScroll):
    """Chat-style turns; follows the tail unless the user scrolled up."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tint = ""  # "", "probability" or "divergence"
        self.pinned = True  # follows the tail; scrolling up unpins, reaching the end pins
        self.in_view: int | None = None  # the step kept in view (None: the live end)

    @property
    def current(self) -> Turn | None:
        last = self.children[-1] if self.children else None
        return last if isinstance(last, Turn) else None

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        if new_value >= self.max_scroll_y - 1:
            self.pinned = True
        elif new_value < old_value:  # only a reader scrolls up; we only scroll down
            self.pinned = False

    def watch_virtual_size(self, old: Size, new: Size) -> None:
        # Whatever made the content taller (a step, a highlighted empty piece drawn as ▯
        # that wraps, a part sealed), a pinned reader keeps seeing the end.
        if new.height > old.height and self.pinned and self.in_view is None:
            self.scroll_end(animate=False, immediate=True)

    def on_resize(self) -> None:
        # Text re-wraps at the new width after this layout: find the step again then.
        self.call_after_refresh(self.keep_in_view, self.in_view)

    def _follow(self, grew: bool) -> None:
        """Scroll to the end (after the layout) when pinned and the end moved, or is not
        reached yet; a frame that added no line scrolls nothing."""
        if self.pinned and (grew or self.scroll_y < self.max_scroll_y):
            self.scroll_end(animate=False)

    def start_turn(self, prompt: str, header: Text | None = None) -> None:
        self.mount(Turn(prompt, tint=self.tint, header=header))
        self.pinned = True  # a new prompt follows its answer
        self._follow(True)

    def add_note(self, text: str) -> None:
        self.mount(Static(text, classes="past note", markup=False))

    def add_past_turn(self, record: dict, header: Text | None = None) -> None:
        """A turn read back from a session file (``header``: a chat turn's, tui.chat)."""
        turn = Turn(record["prompt"], tint=self.tint, header=header)
        segments = [(s.get("text", ""), s["chosen"]["prob"]) for s in record.get("steps", [])]
        if not segments and record.get("completion"):
            segments = [(record["completion"], 1.0)]
        turn.extend(segments, "")
        turn.add_class("past")
        self.mount(turn)

    def add_steps(self, steps: list[Step], pending: str) -> None:
        turn = self.current
        if turn is not None:
            self._follow(turn.extend([(s.text, s.chosen.prob, s.versus and s.versus.js)
                                      for s in steps], pending))

    def remove_steps(self, count: int, pending: str) -> None:
        turn = self.current
        if turn is not None:
            turn.truncate(len(turn.segments) - count, pending)
            self._follow(True)

    def set_highlight(self, index: int | None) -> None:
        turn = self.current
        if turn is not None and turn.highlight != index:
            turn.set_highlight(index)

    def keep_in_view(self, index: int | None) -> None:
        """Show step ``index`` of the current turn (0-based), or with None the live end
        if the reader has not scrolled away from it. Called after anything that changes
        the transcript's height: panels opening or closing, a resize, a reopen."""
        self.in_view = index
        turn = self.current
        if index is None or turn is None:
            if self.pinned:
                self.scroll_end(animate=False, immediate=True)
            return
        part = next((p for p in turn.parts if p.start <= index < max(p.end, p.start + 1)),
                    turn.live)
        width = part.content_region.width
        if not width:
            return
        # Lines of the part up to the step, wrapped as the part wraps them.
        head = turn.render_steps(part, until=index + 1)
        line = max(0, len(head.wrap(self.app.console, width)) - 1)
        # The part's region is relative to its turn, the turn's to the transcript.
        y = turn.virtual_region.y + part.virtual_region.y + line
        self.scroll_to_region(Region(0, y, 1, 1), animate=False, immediate=True)

    def set_tint(self, tint: str) -> None:
        self.tint = tint
        for turn in self.query(Turn):
            turn.set_tint(tint)

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
        # On to the knobs, as from the prompt (after the table in the layout came the
        # prompt, where enter then started a new run).
        Binding("tab", "app.focus_sidebar", "sidebar", show=False, id="to-sidebar"),
    ]

    def on_mount(self) -> None:
        self.cursor_type = "row"
        self.zebra_stripes = False
        self.set_columns("prob", "")

    def set_columns(self, prob: str, last: str) -> None:
        """``prob``: whose probabilities; ``last``: "" for the bar, or the compared
        model's label for its probabilities (in place of the bar, so 80 columns fit)."""
        if getattr(self, "labels", None) == (prob, last):
            return
        self.labels = (prob, last)
        self.clear(columns=True)
        for label, key, width in (("#", "rank", 3), ("token", "token", 16), ("id", "id", 7),
                                  (prob, "prob", 7), (last, "bar", 7 if last else BAR_WIDTH)):
            self.add_column(label, key=key, width=width)

    def action_pick_highlighted(self) -> None:
        self.app.action_pick(self.cursor_row + 1)

    def show(self, candidates: tuple[Candidate, ...], chosen_id: int | None,
             completions: dict | None = None, others: tuple[float, ...] | None = None,
             labels: tuple[str, str] = ("prob", "")) -> None:
        """``completions``: id -> Completion; a partial candidate's bar then shows the
        character it most likely completes to and the joint probability. ``others``:
        the compared model's probability of each candidate, shown in place of the bar
        under ``labels`` (whose probabilities, whose in the last column)."""
        self.set_columns(*labels)
        cursor = self.cursor_row
        self.clear()
        for rank, c in enumerate(candidates, 1):
            marker = "▶" if c.id == chosen_id else " "
            style = "bold" if marker == "▶" else ("dim" if not c.kept else "")
            if c.special:  # an end-of-text or chat-turn token: not text, and marked so
                style += " italic"
            last = "█" * max(0, round(c.prob * BAR_WIDTH)) or "▏"
            if others is not None:
                last = short_prob(others[rank - 1])
            elif completions is not None and c.partial:
                last = completion_text(completions.get(c.id))
            prob = f"{c.prob:.4f}" if others is None else short_prob(c.prob)  # as its neighbour
            cells = (f"{rank}{marker}", repr(c.text), str(c.id), prob, last)
            self.add_row(*(Text(cell, style=style, no_wrap=True, overflow="ellipsis")
                           for cell in cells), key=str(rank))
        if candidates:
            self.move_cursor(row=min(cursor, len(candidates) - 1), animate=False)


def completion_text(completion) -> str:
    """'→农 .0512': the completed text and its joint probability; '…' while it is computed,
    '→?' when three tokens did not finish it, '→✗' when the bytes cannot form a character."""
    if completion is None:
        return "…"
    if completion.text is None:
        return "→?"
    if "\ufffd" in completion.text:
        return "→✗"
    return f"→{completion.text.strip() or completion.text} {completion.joint:.4f}".replace(" 0.", " .")


class PromptInput(Input):
    """The prompt: one line, so a pasted text's lines are joined with spaces (Textual's
    Input would keep only the first)."""

    def _on_paste(self, event: events.Paste) -> None:
        # Textual calls every class's _on_paste along the MRO; without prevent_default
        # Input's own handler inserts the paste's first line a second time.
        event.stop()
        event.prevent_default()
        self.paste(event.text)

    def paste(self, text: str) -> None:
        text = " ".join(line for line in text.splitlines() if line)
        if text:
            selection = self.selection
            if selection.is_empty:
                self.insert_text_at_cursor(text)
            else:
                self.replace(text, *selection)
