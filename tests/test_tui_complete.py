"""Character-complete candidates (key c): filled in by the worker, the table stays live."""

import pytest
from textual.widgets import Input

from conftest import mirror_engine, settle
from minigpt.settings import SamplingSettings
from tui.widgets import CandidatesTable, completion_text


def last_cells(app):
    table = app.query_one(CandidatesTable)
    return [str(table.get_row_at(r)[4]) for r in range(table.row_count)]


async def test_c_fills_in_completions_for_partial_candidates(make_tui, tiny_loaded):
    app = make_tui(temperature=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        # On the seeded tiny model, the first candidates after this prompt hold a byte piece.
        app.query_one("#prompt", Input).value = "蒙牛"
        await pilot.press("escape", "space", "backspace")  # one step and back: the preview
        await settle(app, pilot)
        await pilot.press("c")
        await settle(app, pilot)
        await pilot.pause()
        expected = {c.id: c for c in mirror_engine(tiny_loaded, app).complete_candidates(
            None, SamplingSettings(temperature=1.0))}
        cells = last_cells(app)
        assert any(c.partial for c in app.preview.candidates)
        for cell, candidate in zip(cells, app.preview.candidates):
            if candidate.partial:  # the joint probability up to float noise in its last digit
                want = completion_text(expected[candidate.id])
                assert cell.split(" ")[0] == want.split(" ")[0]
                if " " in want:
                    assert float(cell.split(" ")[1]) == pytest.approx(float(want.split(" ")[1]),
                                                                       abs=2e-4)
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
    from minigpt.engine.lookahead import Completion
    assert completion_text(None) == "…"
    assert completion_text(Completion(1, None, 0.1, (2, 3, 4))) == "→?"
    assert completion_text(Completion(1, "\ufffd", 0.1, ())) == "→✗"
    assert completion_text(Completion(1, " 农", 0.0512, (7,))) == "→农 .0512"


async def test_the_table_stays_responsive_while_completions_wait(make_tui):
    """Completions asked for during a long run wait for the engine; keys do not."""
    app = make_tui(temperature=1.0, max_new_tokens=100_000)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = "蒙牛"
        await pilot.press("escape", "space", "backspace")
        await settle(app, pilot)
        await pilot.press("g")  # the engine is busy from now on
        await pilot.pause()
        await pilot.press("c", "p")
        await pilot.pause()
        assert app.tint and app.complete_shown  # keys handled while the engine is busy
        assert app.running and app.completions == (None, {})  # the answer waits for the run
        await pilot.press("escape")  # the run stops; the completions come
        await settle(app, pilot)
        await pilot.pause()
        partial = [i for i, c in enumerate(app.preview.candidates) if c.partial]
        assert all(last_cells(app)[i] != "…" for i in partial)
        assert app.completions[0] is None and app.completions[1].keys() == \
            {app.preview.candidates[i].id for i in partial}
