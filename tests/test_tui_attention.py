"""The attention strip (a; , . heads; < > layers): rows from the worker, redrawn locally."""

import pytest
from textual.widgets import Input

from conftest import mirror_engine, settle
from tui.attention import AttentionStrip, head_weights


async def open_strip(app, pilot, prompt="农夫山泉 天然水"):
    app.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")
    await settle(app, pilot)
    await pilot.press("escape", "a")
    await settle(app, pilot)


async def test_a_shows_the_next_tokens_attention(make_tui, tiny_loaded):
    app = make_tui(max_new_tokens=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_strip(app, pilot)
        strip = app.query_one(AttentionStrip)
        assert strip.display
        title, layer, head, weights = strip.shown
        expected = mirror_engine(tiny_loaded, app).attention(None)
        assert title == "step 6 · next token" and (layer, head) == (0, 0)
        assert weights == pytest.approx(list(expected.weights[0][0]), abs=1e-6)
        assert len(weights) == len(expected.window_ids) == app.info.context_length
        await pilot.press("a")
        assert not strip.display


async def test_heads_and_layers_change_without_the_engine(make_tui):
    app = make_tui(max_new_tokens=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await open_strip(app, pilot)
        ops_sent = app.client.seq
        attention = app.attention[1]
        heads = len(attention.weights[0])
        strip = app.query_one(AttentionStrip)
        await pilot.press("full_stop")
        assert strip.shown[1:3] == (0, 1)
        assert strip.shown[3] == pytest.approx(list(attention.weights[0][1]))
        await pilot.press(*["full_stop"] * (heads - 1))  # past the last head: the mean
        assert strip.shown[2] == heads
        mean = [sum(col) / heads for col in zip(*attention.weights[0])]
        assert strip.shown[3] == pytest.approx(mean) == head_weights(attention, 0, heads)
        await pilot.press("full_stop")  # and round to head 1
        assert strip.shown[2] == 0
        await pilot.press("greater_than_sign")
        assert strip.shown[1] == 1
        assert strip.shown[3] == pytest.approx(list(attention.weights[1][0]))
        await pilot.press("less_than_sign", "less_than_sign")  # wraps to the last layer
        assert strip.shown[1] == len(attention.weights) - 1
        await pilot.press("comma")
        assert strip.shown[2] == heads
        assert app.client.seq == ops_sent  # redrawn from the rows already here


async def test_browsed_steps_show_that_steps_rows(make_tui, tiny_loaded):
    """(That the rows come from each step's own pass, with no model run when browsing,
    is tested on the engine itself in test_attention.)"""
    app = make_tui(max_new_tokens=6)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#transcript").focus()
        await pilot.press("a")  # open before generating: each step keeps its rows
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "hello there"
        app.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await settle(app, pilot)
        await pilot.press("escape", "[", "[", "[")
        await settle(app, pilot)
        title, _, _, weights = app.query_one(AttentionStrip).shown
        assert title == "step 4/6"
        expected = mirror_engine(tiny_loaded, app).attention(4)
        assert weights == pytest.approx(list(expected.weights[0][0]), abs=1e-6)
        assert len(weights) == app.history[3].context


async def test_before_a_prompt_the_strip_says_so(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#transcript").focus()
        await pilot.press("a")
        await settle(app, pilot)
        assert app.query_one(AttentionStrip).shown[3] is None
        assert "give a prompt first" in app.query_one(AttentionStrip).text


@pytest.mark.parametrize("size,both", [((80, 24), False), ((120, 40), True)])
async def test_small_screens_show_one_panel_at_a_time(make_tui, size, both):
    app = make_tui(max_new_tokens=4)
    async with app.run_test(size=size) as pilot:
        await open_strip(app, pilot)
        await pilot.press("w")
        await settle(app, pilot)
        assert app.why_shown and app.attention_shown == both
        status = app.query_one("#status").region
        assert status.bottom <= size[1] - 2  # above the prompt row and the key hints
        assert app.query_one("#transcript").region.height >= 1
        await pilot.press("a")  # small: opens the strip, closes the panel; large: closes it
        assert app.attention_shown == (not both) and app.why_shown == both


async def test_a_narrow_strip_wraps_between_phrases_and_never_inside_an_escape(make_tui):
    """At 60 columns the heading wrapped 'mean of 4' / 'heads', and byte escapes split
    across lines ('‹e5' / 'a4›')."""
    import re

    from conftest import screen_text

    app = make_tui(max_new_tokens=5)
    async with app.run_test(size=(60, 24)) as pilot:
        await open_strip(app, pilot, prompt="农夫山泉 天然水 蒙牛 纯牛奶 可口可乐")
        await pilot.press(*["full_stop"] * 4)  # past head 4/4: the mean of the heads
        await settle(app, pilot)
        text = screen_text(app)
        assert "mean of 4 heads" in text, text
        for line in text.splitlines():
            assert not re.search(r"‹[0-9a-f ]*$", line), line  # an escape cut at its end
            assert not re.match(r"^[0-9a-f]{2}[0-9a-f ]*›", line), line  # or its rest
        assert re.search(r"‹[0-9a-f]{2} [0-9a-f]{2}›", text), "no escape to check on screen"
