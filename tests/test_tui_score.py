"""Score mode (f2): the prompt's text scored in a worker, shown as a table and a summary."""

import pytest
from textual.widgets import DataTable, Input, Static, TextArea

from conftest import screen_text, settle
from minigpt.engine.score import score_text
from tui.scoring import ScoreScreen, significant

TEXT = "农夫山泉 天然水 550ml 瓶装"


def summary(screen) -> str:
    return str(screen.query_one("#score-summary", Static).render())


async def wait_scored(app, pilot):
    await settle(app, pilot)
    for _ in range(50):
        if "scoring" not in summary(app.screen):
            return
        await pilot.pause(0.02)


def assert_same_score(got, expected):
    """Equal up to float noise (the engine process may use another thread count)."""
    assert (got.first_id, got.windows, got.exact) == (expected.first_id, expected.windows,
                                                      expected.exact)
    assert [(t.index, t.id, t.text, t.context) for t in got.tokens] == \
        [(t.index, t.id, t.text, t.context) for t in expected.tokens]
    assert [t.log_prob for t in got.tokens] == \
        pytest.approx([t.log_prob for t in expected.tokens], abs=1e-5)


async def test_f2_scores_the_prompt_text(make_tui, tiny_loaded):
    app = make_tui()
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = TEXT
        await pilot.press("f2")
        await wait_scored(app, pilot)
        screen = app.screen
        assert isinstance(screen, ScoreScreen)
        loaded = tiny_loaded
        expected = score_text(loaded.model, loaded.tokenizer, TEXT, loaded.vocab_size,
                              loaded.context_length)
        assert_same_score(screen.score, expected)
        assert f"perplexity {significant(expected.perplexity)} ·" in summary(screen)
        table = screen.query_one(DataTable)
        assert table.row_count == len(expected.tokens)
        first = [str(cell) for cell in table.get_row_at(0)]
        t = expected.tokens[0]
        assert first[:3] == [str(t.index), repr(t.text), str(t.id)]
        assert float(first[3]) == pytest.approx(t.prob, abs=2e-4)
        tinted = str(screen.query_one("#score-tinted", Static).render())
        assert tinted == TEXT and "\ufffd" not in tinted  # whole characters, no U+FFFD
        await pilot.press("escape")
        assert not isinstance(app.screen, ScoreScreen)
        assert app.query_one("#prompt", Input).value == TEXT  # nothing lost


async def test_edit_and_rescore_and_bad_text_keeps_the_screen(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt", Input).value = "hello world"
        await pilot.press("f2")
        await wait_scored(app, pilot)
        screen = app.screen
        assert len(screen.score.tokens) == 1
        area = screen.query_one(TextArea)
        area.text = ""
        await pilot.press("f2")
        await wait_scored(app, pilot)
        assert screen.score is None and "nothing to score" in summary(screen)
        area.text = "a"
        await pilot.press("f2")
        await wait_scored(app, pilot)
        assert "at least two tokens" in summary(screen) and app.screen is screen
        await pilot.press(*" b c d")  # typed into the text area, then scored
        await pilot.press("f2")
        await wait_scored(app, pilot)
        assert " b c d" in area.text and screen.score is not None
        assert screen.query_one(DataTable).row_count == len(screen.score.tokens) == 2


async def test_empty_prompt_scores_the_current_turn(make_tui):
    app = make_tui(max_new_tokens=8)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = "hello"
        await pilot.press("enter")
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = ""
        await pilot.press("f2")
        await wait_scored(app, pilot)
        assert app.screen.query_one(TextArea).text == "hello" + app.turn.completion
        assert len(app.screen.score.tokens) >= 8


async def test_f3_switches_to_exact_windows(make_tui, tiny_loaded):
    long_text = "one two three four five six seven eight nine ten eleven twelve thirteen"
    app = make_tui()
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = long_text
        await pilot.press("f2")
        await wait_scored(app, pilot)
        plain = app.screen.score
        await pilot.press("f3")
        await wait_scored(app, pilot)
        loaded = tiny_loaded
        exact = score_text(loaded.model, loaded.tokenizer, long_text, loaded.vocab_size,
                           loaded.context_length, exact=True)
        assert_same_score(app.screen.score, exact)
        assert exact != plain and exact.exact
        assert "windows: exact per token" in str(
            app.screen.query_one("#score-title", Static).render())


def test_significant_digits():
    assert significant(479_628.32) == "479,600"
    assert significant(12.3456) == "12.35"
    assert significant(0.00123456) == "0.001235"
    assert significant(1.0) == "1.000"


async def test_every_column_shows_at_60_columns(make_tui):
    """The narrowest screen kept: the bits column (surprisal) was cut off at 60×20; a
    wider screen gives the tokens their room back, without scoring again."""
    app = make_tui()
    async with app.run_test(size=(60, 20)) as pilot:
        app.query_one("#prompt", Input).value = TEXT
        await pilot.press("f2")
        await wait_scored(app, pilot)
        rows = [line.split() for line in screen_text(app).splitlines()]
        assert ["│", "#", "token", "id", "prob", "rank", "bits", "│"] in rows, \
            screen_text(app)
        assert "' ‹e5 a4…" in screen_text(app)  # a space and a byte pair: cut, but marked
        await pilot.resize_terminal(100, 30)  # wider: the token column grows, rows stay
        await settle(app, pilot)
        assert "' ‹e5 a4›'" in screen_text(app)
        assert app.screen.query_one(DataTable).row_count == len(app.screen.score.tokens)
