"""Pilot tests: every key of the explorer, driven as a user would."""

import asyncio

import pytest
from textual.widgets import Input

from conftest import ENDLESS, eventually, screen_text, settle, until_streaming
from minigpt.engine.engine import Engine
from tui.screens import HelpScreen, ModelScreen
from tui.lines import StatusLine
from tui.widgets import CandidatesTable, Transcript


def table_ids(app):
    table = app.query_one(CandidatesTable)
    return [int(str(table.get_row_at(r)[2])) for r in range(table.row_count)]


def status(app):
    return str(app.query_one(StatusLine).render())


async def start(app, pilot, prompt="农夫山泉 "):
    app.query_one("#prompt", Input).value = prompt
    await pilot.press("enter")
    await settle(app, pilot)


async def test_enter_generates_from_prompt(make_tui, tiny_loaded):
    app = make_tui(max_new_tokens=9)
    async with app.run_test() as pilot:
        await pilot.press(*"hello", "enter")
        await settle(app, pilot)
        assert len(app.history) == 9 and app.turn.prompt == "hello"
        # the engine process's tokens are the ones an engine in this process produces
        engine = Engine.from_loaded(tiny_loaded, app.settings)
        engine.reset("hello")
        assert [s.chosen.id for s in engine.run()] == [s.chosen.id for s in app.history]
        assert app.query_one(Transcript).plain == "hello" + engine.completion
        assert "max_new_tokens · 9 tokens" in status(app)
        assert table_ids(app) == [c.id for c in app.preview.candidates]
        assert app.query_one("#prompt", Input).value == "hello"  # the text stays


async def test_escape_idle_moves_to_candidates_and_i_returns(make_tui):
    app = make_tui()
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape")
        assert isinstance(app.focused, CandidatesTable)
        await pilot.press("i")
        assert app.focused.id == "prompt"


@pytest.mark.parametrize("key", ["space", "n", "right"])
async def test_step_keys_generate_exactly_one_token(make_tui, key):
    app = make_tui()
    async with app.run_test() as pilot:
        app.query_one("#prompt", Input).value = "abc"
        await pilot.press("escape")  # nothing generated yet: starts from the prompt text
        await pilot.press(key)
        await settle(app, pilot)
        assert len(app.history) == 1 and app.turn.prompt == "abc"
        await pilot.press(key, key)
        await settle(app, pilot)
        assert len(app.history) == 3


@pytest.mark.parametrize("rank", [1, 2, 3, 4, 5])
async def test_number_keys_append_that_candidate(make_tui, rank):
    app = make_tui(max_new_tokens=3)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape")
        expected = app.preview.candidates[rank - 1]
        await pilot.press(str(rank))
        await settle(app, pilot)
        assert len(app.history) == 4
        assert app.history[-1].chosen.id == expected.id and app.history[-1].forced
        assert app.position == len(app.turn.prompt_ids) + 4


async def test_arrows_then_enter_append_highlighted(make_tui):
    app = make_tui(max_new_tokens=2)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape", "down", "down", "up", "down")
        expected = app.preview.candidates[2].id
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.history[-1].chosen.id == expected


@pytest.mark.parametrize("key", ["backspace", "u", "left"])
async def test_undo_keys_remove_last_token_and_show_its_candidates(make_tui, key):
    app = make_tui(max_new_tokens=5)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape")
        last = app.history[-1]
        text_before = app.query_one(Transcript).plain
        await pilot.press(key)
        await settle(app, pilot)
        assert len(app.history) == 4
        assert app.position == len(app.turn.prompt_ids) + 4
        assert table_ids(app) == [c.id for c in last.candidates]
        assert app.query_one(Transcript).plain == text_before[: len(text_before) - len(last.text)]


async def test_g_continues_generating(make_tui):
    app = make_tui(max_new_tokens=6)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape", "backspace", "backspace", "backspace")
        await settle(app, pilot)
        assert len(app.history) == 3
        await pilot.press("g")
        await settle(app, pilot)
        assert len(app.history) == 6


async def test_brackets_browse_past_steps_and_highlight_tokens(make_tui):
    app = make_tui(max_new_tokens=4)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape", "[")
        assert app.view_step == 4
        assert table_ids(app) == [c.id for c in app.history[3].candidates]
        assert app.query_one(Transcript).current.highlight == 3
        await pilot.press("[", "[", "[", "[")
        assert app.view_step == 1
        await pilot.press("]")
        assert app.view_step == 2 and app.query_one(Transcript).current.highlight == 1
        await pilot.press("]", "]", "]")
        assert app.view_step is None
        assert table_ids(app) == [c.id for c in app.preview.candidates]


async def test_pick_while_browsing_rewinds_to_that_step(make_tui):
    app = make_tui(max_new_tokens=4)
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape", "[", "[")  # step 3
        wanted = app.history[2].candidates[1].id
        await pilot.press("2")
        await settle(app, pilot)
        assert len(app.history) == 3 and app.history[-1].chosen.id == wanted


async def test_p_toggles_tint(make_tui):
    app = make_tui()
    async with app.run_test() as pilot:
        await start(app, pilot)
        await pilot.press("escape", "p")
        turn = app.query_one(Transcript).current
        assert app.tint and turn.tint
        styles = {str(span.style) for span in turn.live.render().spans}
        assert styles & {"green", "yellow", "magenta", "red"}
        await pilot.press("p")
        assert not turn.tint


async def test_m_opens_model_screen_and_f1_help(make_tui):
    app = make_tui()
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)  # m before the model is ready only says it is loading
        await pilot.press("escape", "m")
        assert isinstance(app.screen, ModelScreen)
        assert [r["h_params"]["d_model"] for r in app.screen.reports] == [32]
        await pilot.press("escape")
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, (HelpScreen, ModelScreen))


async def test_ctrl_p_opens_command_palette(make_tui):
    from textual.command import CommandPalette
    app = make_tui()
    async with app.run_test() as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        assert isinstance(app.screen, CommandPalette)
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Generate", "Stop", "Step one token", "Undo", "Continue"} <= set(commands)


async def test_key_during_long_generation_takes_effect_before_it_ends(make_tui):
    app = make_tui(max_new_tokens=ENDLESS, temperature=1.0)
    async with app.run_test() as pilot:
        app.query_one("#prompt", Input).value = "hi"
        await pilot.press("enter")
        await until_streaming(app, pilot, steps=5)
        await pilot.press("escape")
        await settle(app, pilot)
        assert not app.running and 5 <= len(app.history) < ENDLESS
        assert status(app).startswith("stopped")
        assert app.position == len(app.turn.prompt_ids) + len(app.history)


async def test_new_prompt_cancels_running_one(make_tui):
    app = make_tui(max_new_tokens=ENDLESS, temperature=1.0)
    async with app.run_test() as pilot:
        app.query_one("#prompt", Input).value = "first"
        await pilot.press("enter")
        await until_streaming(app, pilot)
        app.query_one("#prompt", Input).value = "second"
        app.settings = app.settings.with_(max_new_tokens=3)
        await pilot.press("enter")
        await settle(app, pilot)
        assert app.turn.prompt == "second" and len(app.history) == 3
        assert app.query_one(Transcript).current.prompt == "second"


async def test_ctrl_q_quits_mid_generation(make_tui, engine_client):
    app = make_tui(max_new_tokens=ENDLESS)
    async with app.run_test() as pilot:
        await pilot.press(*"hi", "enter")
        await until_streaming(app, pilot)
        run_seq = app.last_run_seq
        await pilot.press("ctrl+q")
        for _ in range(500):  # the app's own loop: no pilot.pause once it has exited
            if not app.is_running:
                break
            await asyncio.sleep(0.01)
        assert not app.is_running and app.return_code == 0
    assert engine_client.stop_runs.value >= run_seq  # the run was told to stop


async def test_invalid_knob_is_marked_and_not_applied(make_tui):
    app = make_tui(temperature=0.5)
    async with app.run_test(size=(120, 40)) as pilot:
        knob = app.query_one("#knob-temperature", Input)
        knob.focus()
        knob.value = ""
        await pilot.press(*"-3")
        await pilot.pause()
        assert knob.has_class("invalid") and app.settings.temperature == 0.5
        assert "temperature wants 0 (greedy) or 0.0001…1000 · 0.5 kept" in status(app)
        knob.value = ""
        await pilot.press(*"0.9")
        await pilot.pause()
        assert not knob.has_class("invalid") and app.settings.temperature == 0.9
        top_k = app.query_one("#knob-top_k", Input)
        top_k.value = "abc"
        await pilot.pause()
        assert top_k.has_class("invalid") and app.settings.top_k is None
        top_k.value = "3"
        await pilot.pause()
        assert app.settings.top_k == 3


async def test_bad_prompt_shows_error_and_keeps_text(make_tui):
    app = make_tui()
    async with app.run_test() as pilot:
        await pilot.press("enter")  # empty prompt
        await settle(app, pilot)
        assert "prompt is empty" in status(app)
        await pilot.press(*"still here")
        assert app.query_one("#prompt", Input).value == "still here"


async def test_narrow_terminal_hides_sidebar(make_tui):
    app = make_tui()
    async with app.run_test(size=(60, 20)) as pilot:
        assert app.has_class("narrow")
        assert not app.query_one("#sidebar").display


async def test_transcript_follows_the_tail_unless_scrolled_up(make_tui):
    app = make_tui(max_new_tokens=150)
    async with app.run_test(size=(80, 24)) as pilot:
        transcript = app.query_one(Transcript)
        at_end = lambda: transcript.scroll_y == transcript.max_scroll_y  # noqa: E731
        await start(app, pilot, "hello\n" * 30)
        assert await eventually(pilot, at_end) and transcript.max_scroll_y > 0  # followed
        transcript.scroll_to(y=0, animate=False)  # the user scrolls up to read
        assert await eventually(pilot, lambda: transcript.scroll_y == 0)
        before = transcript.plain
        await pilot.press("escape", "space", "space", "space")
        await settle(app, pilot)
        assert transcript.plain != before and transcript.scroll_y == 0  # left where it was
        transcript.scroll_end(animate=False)  # back at the end: following again
        assert await eventually(pilot, at_end)
        height = transcript.virtual_size.height
        await pilot.press(*["space"] * 40)
        await settle(app, pilot)
        assert transcript.virtual_size.height > height
        assert await eventually(pilot, at_end)
        transcript.scroll_to(y=0, animate=False)
        assert await eventually(pilot, lambda: transcript.scroll_y == 0)
        await pilot.press("i", "enter")  # a new prompt follows its answer again
        await settle(app, pilot)
        assert await eventually(pilot, at_end) and transcript.max_scroll_y > 0


async def test_start_sends_nothing_but_the_model_open(make_tui):
    """The first op is Open; no toast or error greets a new user."""
    app = make_tui()
    async with app.run_test() as pilot:
        await settle(app, pilot)
        assert app.last_done == app.first_seq  # one op: Open
        assert "✗" not in status(app) and app.engine_state == "ready"


async def test_the_first_frame_needs_no_engine(tiny_ckpt, monkeypatch):
    """An engine that is still importing torch (it never answers here): the screen is up,
    says it is loading, and takes a prompt (launch-to-frame times: bench_tui.py)."""
    from tui.app import make_app
    from tui.client import EngineClient
    from tui.widgets import PromptInput

    class EngineStillStarting(EngineClient):
        alive = True

        def start(self) -> None:
            raise AssertionError("alive: nothing to start")

        def send(self, op_type, **fields) -> int:
            self.seq += 1
            return self.seq

    monkeypatch.chdir(tiny_ckpt.parent)
    app = make_app(tiny_ckpt.name, client=EngineStillStarting(), device="cpu")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"hi")
        text = screen_text(app)
        assert "minigpt-tui · tiny.ckpt · loading model" in text
        assert app.engine_state == "loading" and app.query_one(PromptInput).value == "hi"


async def test_f1_says_how_to_move_between_panes_and_lists_f3(make_tui):
    from tui.screens import KEYS
    keys = {key: does for _, key, does in KEYS}
    assert "sidebar" in keys["tab  shift+tab"] and "transcript" in keys["tab  shift+tab"]
    assert "knob" in keys["escape"] and "f3" in keys
    app = make_tui()
    async with app.run_test(size=(100, 50)) as pilot:
        await pilot.press("f1")
        await pilot.pause()
        text = screen_text(app)
        assert "tab  shift+tab" in text and "exact windows" in text
