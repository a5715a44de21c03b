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
