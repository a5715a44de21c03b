"""Long runs and small terminals: the transcript re-renders only its live part,
and resizing mid-generation neither crashes nor loses text."""

import tracemalloc

from conftest import ENDLESS, settle, until_streaming
from textual.app import App

from tui.widgets import PART_STEPS, Transcript, Turn


class TranscriptApp(App):
    def compose(self):
        yield Transcript()


def catalog_like_segments(count: int) -> list[tuple[str, float]]:
    """Short lines, as the shipped model writes: a line break every 12 steps."""
    return [("\n" if i % 12 == 11 else f"w{i}", 0.5) for i in range(count)]


async def open_turn(app: App, pilot, prompt: str) -> Turn:
    transcript = app.query_one(Transcript)
    transcript.start_turn(prompt)
    await pilot.pause()
    return transcript.current


def rendered_text(turn: Turn) -> str:
    """What the parts show, joined the way they stack on screen."""
    return "\n".join(part.render().plain for part in turn.parts)


async def test_long_turn_is_split_into_parts_with_identical_text():
    app = TranscriptApp()
    async with app.run_test() as pilot:
        turn = await open_turn(app, pilot, "prompt ")
        segments = catalog_like_segments(10_000)
        for start in range(0, len(segments), 37):  # frames of 37 steps
            turn.extend(segments[start:start + 37], "")
        await pilot.pause()
        assert len(turn.parts) >= 10_000 // (PART_STEPS + 12)
        assert all(part.is_mounted for part in turn.parts)
        assert rendered_text(turn) == "› " + turn.plain
        assert all(p.end - p.start <= PART_STEPS + 12 for p in turn.parts)


async def test_streaming_renders_only_the_live_part(monkeypatch):
    app = TranscriptApp()
    async with app.run_test() as pilot:
        turn = await open_turn(app, pilot, "p")
        turn.extend(catalog_like_segments(3 * PART_STEPS), "")
        await pilot.pause()
        sealed = turn.parts[:-1]
        assert sealed
        rendered = []
        original = Turn.render_steps
        monkeypatch.setattr(Turn, "render_steps",
                            lambda self, part: rendered.append(part) or original(self, part))
        for _ in range(20):
            turn.extend([("x", 0.5)], "")
            await pilot.pause()
        assert rendered and not any(part in sealed for part in rendered)


async def test_undo_across_a_part_boundary_restores_the_text():
    app = TranscriptApp()
    async with app.run_test() as pilot:
        turn = await open_turn(app, pilot, "p")
        segments = catalog_like_segments(PART_STEPS + 40)
        turn.extend(segments, "")
        await pilot.pause()
        assert len(turn.parts) == 2
        turn.truncate(PART_STEPS - 5, "")
        await pilot.pause()
        assert len(turn.parts) == 1 and turn.live.end == PART_STEPS - 5
        assert rendered_text(turn) == "› p" + "".join(s for s, _ in segments[:PART_STEPS - 5])
        turn.extend(segments[PART_STEPS - 5:], "")
        await pilot.pause()
        assert len(turn.parts) == 2 and rendered_text(turn) == "› " + turn.plain


async def test_long_turn_memory_grows_with_text_not_with_frames():
    """Per-frame work must not accumulate: 3,000 more frames on a long turn add
    little beyond the steps' own text."""
    app = TranscriptApp()
    async with app.run_test() as pilot:
        turn = await open_turn(app, pilot, "p")
        turn.extend(catalog_like_segments(5_000), "")
        await pilot.pause()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for i in range(3_000):
            turn.extend([("\n" if i % 12 == 11 else "y", 0.5)], "")
            if i % 100 == 0:
                await pilot.pause()
        await pilot.pause()
        grown = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        assert grown < 8_000_000, f"{grown / 1e6:.1f} MB for 3,000 steps"


async def test_resize_down_to_40x12_mid_generation_keeps_text(make_tui):
    app = make_tui(max_new_tokens=ENDLESS, temperature=1.0, seed=3)
    async with app.run_test(size=(100, 32)) as pilot:
        await pilot.press(*"hello", "enter")
        for size in ((60, 20), (40, 12), (80, 24), (40, 12)):
            await until_streaming(app, pilot)
            before = len(app.history)
            await pilot.resize_terminal(*size)
            await until_streaming(app, pilot, steps=before + 1)  # still going after it
        await pilot.press("escape")
        await settle(app, pilot)
        turn = app.query_one(Transcript).current
        assert 0 < len(app.history) < ENDLESS and len(turn.segments) == len(app.history)
        assert turn.plain == "hello" + app.turn.completion
        assert app.screen.size == (40, 12)
