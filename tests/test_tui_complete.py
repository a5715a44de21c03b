"""Character-complete candidates (key c): filled in by the worker, the table stays live."""

from textual.widgets import Input

from conftest import settle
from minigpt.settings import SamplingSettings
from tui.widgets import CandidatesTable, completion_text


def last_cells(app):
    table = app.query_one(CandidatesTable)
    return [str(table.get_row_at(r)[4]) for r in range(table.row_count)]


async def test_c_fills_in_completions_for_partial_candidates(make_tui):
    app = make_tui(temperature=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        # On the seeded tiny model, the first candidates after this prompt hold a byte piece.
        app.query_one("#prompt", Input).value = "蒙牛"
        await pilot.press("escape", "space", "backspace")  # one step and back: the preview
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.pause()
        expected = {c.id: c for c in app.engine.complete_candidates(
            None, SamplingSettings(temperature=1.0))}
        cells = last_cells(app)
        assert any(c.partial for c in app.preview.candidates)
        for cell, candidate in zip(cells, app.preview.candidates):
            if candidate.partial:
                assert cell == completion_text(expected[candidate.id])
            else:
                assert cell.startswith(("█", "▏"))  # complete pieces keep their bar
        await pilot.press("c")
        await pilot.pause()
        assert all(cell.startswith(("█", "▏")) for cell in last_cells(app))


async def test_browsing_a_step_completes_that_steps_candidates(make_tui, monkeypatch):
    app = make_tui(temperature=1.0, max_new_tokens=4)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = "农夫山泉"
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("escape", "c", "[", "[")
        await settle(app, pilot)
        await pilot.pause()
        step = app.history[2]
        assert app.completions[0] == 3
        expected = {c.id for c in step.candidates if c.partial}
        assert set(app.completions[1]) == expected


def test_completion_cell_text():
    from minigpt.lookahead import Completion
    assert completion_text(None) == "…"
    assert completion_text(Completion(1, None, 0.1, (2, 3, 4))) == "→?"
    assert completion_text(Completion(1, "\ufffd", 0.1, ())) == "→✗"
    assert completion_text(Completion(1, " 农", 0.0512, (7,))) == "→农 .0512"


async def test_the_table_stays_responsive_while_completions_compute(make_tui, monkeypatch):
    import threading
    import time
    app = make_tui(temperature=1.0)
    release = threading.Event()
    real = app.engine.complete_candidates

    def slow(*args):
        release.wait(5)
        return real(*args)

    monkeypatch.setattr(app.engine, "complete_candidates", slow)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = "蒙牛"
        await pilot.press("escape", "space", "backspace")
        await settle(app, pilot)
        started = time.perf_counter()
        await pilot.press("c", "p", "down")
        await pilot.pause()
        assert time.perf_counter() - started < 1 and app.tint  # keys handled meanwhile
        partial = [i for i, c in enumerate(app.preview.candidates) if c.partial]
        assert partial and all(last_cells(app)[i] == "…" for i in partial)
        release.set()
        await settle(app, pilot)
        await pilot.pause()
        assert all(last_cells(app)[i] != "…" for i in partial)
