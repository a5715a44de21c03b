"""The why-this-token panel: key w, live knobs without a model run, past steps."""

import pytest
from textual.widgets import Input

from conftest import ENDLESS, assert_close, mirror_engine, settle, until_streaming
from minigpt.settings import SamplingSettings
from tui.why import WhyPanel


async def start(app, pilot, prompt="农夫山泉 "):
    app.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")
    await settle(app, pilot)


def panel_text(app) -> str:
    panel = app.query_one(WhyPanel)
    return "\n".join(strip.text for strip in panel.render_lines(panel.region.reset_offset))


async def test_w_toggles_the_panel_for_the_next_token(make_tui, tiny_loaded):
    app = make_tui(max_new_tokens=6, temperature=0.7, top_k=3)
    async with app.run_test(size=(120, 40)) as pilot:
        await start(app, pilot)
        panel = app.query_one(WhyPanel)
        assert not panel.display
        await pilot.press("escape", "w")
        await settle(app, pilot)
        assert panel.display
        title, why, settings = panel.shown
        expected = mirror_engine(tiny_loaded, app).why(
            None, SamplingSettings(temperature=0.7, top_k=3))
        assert_close(why, expected)
        assert title == "step 7 · next token"
        assert [r.id for r in why.rows] == [c.id for c in app.preview.candidates]
        text = panel_text(app)
        assert f"{why.rows[0].final:.4f}" in text and "k 3 · p –" in text
        assert f"exp(H) {why.effective_vocab:,.1f} · kept 3" in text
        assert sum(r.kept for r in why.rows) == 3 and "✗" in text  # 4th and 5th removed
        await pilot.press("w")
        assert not panel.display


async def test_sidebar_knobs_redraw_it_at_once(make_tui, tiny_loaded):
    """(That the engine redraws from cached logits, running no model, is tested on the
    engine itself in test_why.)"""
    app = make_tui(max_new_tokens=4, temperature=1.0)
    async with app.run_test(size=(120, 40)) as pilot:
        await start(app, pilot)
        await pilot.press("escape", "w")
        await settle(app, pilot)
        before = app.query_one(WhyPanel).shown[1]
        knob = app.query_one("#knob-temperature", Input)
        knob.value = "0.3"
        await settle(app, pilot)
        title, after, settings = app.query_one(WhyPanel).shown
        assert settings.temperature == 0.3
        assert [r.raw for r in after.rows] == [r.raw for r in before.rows]  # same logits
        assert after.rows[0].tempered > before.rows[0].tempered  # sharper at T 0.3
        assert_close(after, mirror_engine(tiny_loaded, app).why(
            None, SamplingSettings(temperature=0.3, max_new_tokens=4)))
        app.query_one("#knob-top_p", Input).value = "0.5"
        await settle(app, pilot)
        assert app.query_one(WhyPanel).shown[2].top_p == 0.5


async def test_browsing_past_steps_shows_why_for_that_step(make_tui):
    app = make_tui(max_new_tokens=5, temperature=0.8)
    async with app.run_test(size=(120, 40)) as pilot:
        await start(app, pilot)
        await pilot.press("escape", "w", "[", "[")
        await settle(app, pilot)
        title, why, _ = app.query_one(WhyPanel).shown
        step = app.history[3]
        assert title == "step 4/5"
        assert [r.id for r in why.rows] == [c.id for c in step.candidates]
        assert [r.tempered for r in why.rows] == pytest.approx([c.prob for c in step.candidates],
                                                               abs=1e-6)
        await pilot.press("]", "]")
        await settle(app, pilot)
        assert app.query_one(WhyPanel).shown[0] == "step 6 · next token"


async def test_opening_it_while_streaming_does_not_stop_the_run(make_tui):
    app = make_tui(max_new_tokens=ENDLESS)
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#prompt", Input).value = "hello"
        await pilot.press("enter")
        await until_streaming(app, pilot)
        app.query_one("#transcript").focus()  # keys off the prompt, the run going on
        await pilot.press("w")
        opened_at = len(app.history)
        await until_streaming(app, pilot, steps=opened_at + 1)  # the run goes on
        # Not an older step's breakdown while tokens stream (it showed step 201 of 935).
        assert app.query_one(WhyPanel).display and app.query_one(WhyPanel).shown[0] == "paused"
        assert "paused while tokens stream" in panel_text(app)
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.query_one(WhyPanel).shown[0] == f"step {len(app.history) + 1} · next token"


async def test_before_any_prompt_it_says_so(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#transcript").focus()
        await pilot.press("w")
        await settle(app, pilot)
        title, why, _ = app.query_one(WhyPanel).shown
        assert why is None and "give a prompt first" in panel_text(app)


async def test_an_open_panel_pauses_when_a_run_starts(make_tui):
    """Open on a finished turn, then a new run: not the old turn's step while it streams."""
    app = make_tui(max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await start(app, pilot)
        await pilot.press("escape", "w")
        await settle(app, pilot)
        assert app.query_one(WhyPanel).shown[0] == "step 4 · next token"
        app.settings = app.settings.with_(max_new_tokens=ENDLESS)
        await pilot.press("g")
        await until_streaming(app, pilot, steps=5)
        assert app.query_one(WhyPanel).shown[0] == "paused"
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.query_one(WhyPanel).shown[0] == f"step {len(app.history) + 1} · next token"
