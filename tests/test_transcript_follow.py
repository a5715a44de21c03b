"""The transcript keeps a pinned reader at the end however the stream is cut into
frames: CI once stopped one line short (at 80×24) when a layout pass between two frames
had cached the streaming part's height, so the next frame's wrap went unnoticed."""

from pathlib import Path
from types import SimpleNamespace

from textual.app import App
from textual.widgets import Static

import tui
from conftest import eventually
from tui.widgets import Transcript


def steps(words):
    return [SimpleNamespace(text=w, chosen=SimpleNamespace(prob=0.5), versus=None) for w in words]


class TranscriptApp(App):
    CSS_PATH = Path(tui.__file__).parent / "minigpt.tcss"

    def compose(self):
        yield Transcript(id="transcript")
        yield Static("", id="status")


async def test_a_frame_that_wraps_after_a_layout_pass_is_followed():
    app = TranscriptApp()
    async with app.run_test(size=(57, 13)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.start_turn("hello\n" * 30)
        transcript.add_steps(steps([" Stop"] * 20), "")
        await pilot.pause()
        app.query_one("#status", Static).update("20 tokens")  # a layout pass measures all
        await pilot.pause()  # ... and runs before the frame below (what the test is about)
        assert await eventually(pilot, lambda: transcript.max_scroll_y > 0
                                and transcript.scroll_y == transcript.max_scroll_y)
        end = transcript.max_scroll_y
        # Two lines taller: extend must say so (its caller scrolls), and the transcript
        # follows once laid out, whoever added the lines.
        assert transcript.current.extend([("\n\nend", 0.5)], "")
        assert await eventually(pilot, lambda: transcript.max_scroll_y == end + 2
                                and transcript.scroll_y == end + 2)


async def test_the_last_frame_that_wraps_is_measured_on_its_own_text():
    """Real model, 80×24, chat: a reply whose last frame wrapped onto a new line ('Berlin.'
    then its end-of-turn token) kept that line hidden until a resize. Each frame was
    measured on the text the frame before had painted (Textual keeps it until a
    refresh), so the last one's new line went unnoticed: nothing came after it."""
    app = TranscriptApp()
    async with app.run_test(size=(40, 13)) as pilot:
        transcript = app.query_one(Transcript)
        transcript.start_turn("hello\n" * 20)
        transcript.add_steps(steps(["x" * 30]), "")
        part = transcript.current.live
        assert await eventually(pilot, lambda: part.size.height == 21)
        transcript.add_steps(steps([" ab"]), "")  # same height: painted, not laid out
        await pilot.pause()
        transcript.add_steps(steps([" and the rest wraps"]), "")  # the run's last frame
        assert await eventually(pilot, lambda: part.size.height == 22
                                and transcript.scroll_y == transcript.max_scroll_y)


async def test_a_browsed_step_of_a_later_turn_is_scrolled_into_view():
    """Real model, chat, third turn: browsing with [ showed turn 1 while the why panel
    said step 22/24. The step's line was taken relative to its turn, not the transcript."""
    app = TranscriptApp()
    async with app.run_test(size=(40, 13)) as pilot:
        transcript = app.query_one(Transcript)
        for turn in range(3):
            transcript.start_turn(f"turn {turn}")
            transcript.add_steps(steps([f"\nline {i}" for i in range(12)]), "")
        await pilot.pause()
        transcript.pinned = False
        transcript.scroll_home(animate=False, immediate=True)
        transcript.set_highlight(2)
        transcript.keep_in_view(2)  # "line 2" of the third turn
        await pilot.pause()
        turn = transcript.current
        y = turn.virtual_region.y + 3  # its prompt's line, then lines 0, 1, 2
        rows = transcript.scrollable_content_region.height
        assert transcript.scroll_y <= y < transcript.scroll_y + rows
