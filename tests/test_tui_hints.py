"""The footer offers only keys that work where the focus is; escape leaves any field for
the candidates; the prompt is reached with the cursor at its end."""

import pytest
from textual.widgets import Input

from conftest import ENDLESS, settle, until_streaming
from tui.hints import KeyHints
from tui.widgets import CandidatesTable


def footer(app) -> str:
    return str(app.query_one(KeyHints).render())


async def test_escape_leaves_a_knob_and_the_transcript_for_the_candidates(make_tui):
    app = make_tui(temperature=0.7)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        for field in ("#knob-temperature", "#transcript"):
            app.query_one(field).focus()
            await pilot.pause()
            assert "esc candidates" in footer(app)
            await pilot.press("escape")
            assert app.focused is app.query_one(CandidatesTable), field
            assert "space step" in footer(app)
        app.query_one("#knob-temperature").focus()
        await pilot.press("escape", "w")  # w is a key now, not a letter in the field
        assert app.query_one("#knob-temperature", Input).value == "0.7" and app.why_shown


async def test_during_a_run_the_footer_offers_what_works_where_focus_is(make_tui):
    app = make_tui(max_new_tokens=ENDLESS, temperature=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", Input)
        prompt.value = "德芙"
        await pilot.press("enter")
        await until_streaming(app, pilot)
        # In the prompt space and ⌫ are text: the footer must not promise stop+step.
        assert "esc stop" in footer(app) and "space" not in footer(app) \
            and "⌫" not in footer(app)
        app.query_one("#transcript").focus()
        await pilot.pause()
        assert "esc stop" in footer(app) and "space" not in footer(app)
        app.query_one(CandidatesTable).focus()
        await pilot.pause()
        assert "space stop+step" in footer(app) and "⌫ stop+undo" in footer(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert prompt.value == "德芙" and not app.running


async def test_i_puts_the_cursor_at_the_end_of_the_prompt(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        prompt = app.query_one("#prompt", Input)
        prompt.value = "农夫"
        await pilot.press("escape", "i")
        assert app.focused is prompt and prompt.selection.is_empty
        await pilot.press(*"山泉")
        assert prompt.value == "农夫山泉"


@pytest.mark.parametrize("size, to", [((100, 30), "knob-temperature"), ((60, 20), "transcript")])
async def test_tab_from_the_candidates_goes_on_to_the_sidebar(make_tui, size, to):
    """The real-model pass: tab from the candidates went to the prompt, where enter then
    started a new run. It goes on to the first knob (the transcript at 60 columns)."""
    app = make_tui()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        app.query_one("#candidates").focus()
        await pilot.press("tab")
        assert app.focused.id == to


def test_only_the_shipped_model_offers_a_chinese_example(tiny_ckpt):
    """The real-model pass: 'prompt, e.g. 农夫山泉' showed for an English model."""
    from minigpt.paths import shipped_checkpoints
    from tui.app import make_app

    assert "农夫山泉" in make_app(shipped_checkpoints()[0]).placeholder()
    assert make_app(tiny_ckpt).placeholder() == "a prompt to continue"
