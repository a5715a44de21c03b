"""What a hands-on pass at 80×24, 120×40 and 60×20 found, each pinned by a test."""

import shutil

import pytest
from textual.widgets import DataTable, Input, TextArea

from conftest import eventually, screen_text, settle
from minigpt.settings import SamplingSettings
from tui.app import make_app
from tui.attention import AttentionStrip
from tui.hints import KeyHints
from tui.lines import StatusLine
from tui.widgets import CandidatesTable, Transcript, TurnPart


def status(app) -> str:
    return str(app.query_one(StatusLine).render())


def hints(app) -> str:
    return str(app.query_one(KeyHints).render())


async def generate(app, pilot, prompt="农夫山泉 "):
    await settle(app, pilot)
    app.query_one("#prompt", Input).value = prompt
    app.query_one("#prompt", Input).focus()
    await pilot.press("enter")
    await settle(app, pilot)


def on_screen(app, widget) -> bool:
    region = widget.region
    return widget.display and region.height > 0 and region.bottom <= app.size.height


def highlighted_row_visible(transcript: Transcript) -> bool:
    """The reverse-video (browsed) token is inside the transcript's viewport, found on
    the rendered lines of the part that holds it."""
    turn = transcript.current
    for part in turn.query(TurnPart):
        lines = part.render_lines(part.region.reset_offset if part.region.height else
                                  part.virtual_region.reset_offset)
        for row, strip in enumerate(lines):
            if any(seg.style is not None and seg.style.reverse for seg in strip):
                y = part.virtual_region.y + row
                return transcript.scroll_y <= y < transcript.scroll_y + \
                    transcript.scrollable_content_region.height
    raise AssertionError("no highlighted token rendered")


@pytest.mark.parametrize("size", [(60, 20), (80, 24), (120, 40)])
async def test_status_quit_hint_and_three_candidates_always_show(make_tui, size):
    app = make_tui(max_new_tokens=30)
    async with app.run_test(size=(120, 40)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape", "w", "a")  # both panels on a tall screen
        await settle(app, pilot)
        assert app.why_shown and app.attention_shown
        await pilot.resize_terminal(*size)
        await settle(app, pilot)
        await pilot.pause()
        assert on_screen(app, app.query_one(StatusLine))
        assert hints(app).endswith("ctrl+q quit")
        table = app.query_one(CandidatesTable)
        assert on_screen(app, table) and table.region.height >= 4  # header + 3 rows
        assert app.query_one(Transcript).region.height >= 3
        if size[1] < 34:
            assert not (app.why_shown and app.attention_shown)  # panels take turns


async def test_the_browsed_step_stays_in_view_when_panels_open_and_on_resize(make_tui):
    app = make_tui(max_new_tokens=200, temperature=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot, "hello\n" * 3)
        await pilot.press("escape", *["["] * 60)
        await settle(app, pilot)
        transcript = app.query_one(Transcript)
        shown = lambda: highlighted_row_visible(transcript)  # noqa: E731
        assert app.view_step == 141 and await eventually(pilot, shown)
        for keys in (("w",), ("w", "a"), ("a",)):
            await pilot.press(*keys)
            await settle(app, pilot)
            assert await eventually(pilot, shown), keys
        for size in ((120, 40), (60, 20), (80, 24)):
            await pilot.resize_terminal(*size)
            await settle(app, pilot)
            assert await eventually(pilot, shown), size
        await pilot.press(*["]"] * 61)  # back to the live end, which stays in view
        await pilot.press("w")
        await settle(app, pilot)
        assert await eventually(pilot, lambda: transcript.scroll_y == transcript.max_scroll_y)


async def test_a_reopened_session_shows_its_newest_turn(make_tui, tmp_path):
    from minigpt.host.session import read_session
    path = tmp_path / "s.jsonl"
    app = make_tui(session_path=path, max_new_tokens=40, temperature=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        for prompt in ("first\n" * 5, "second\n" * 5, "third "):
            await generate(app, pilot, prompt)
    reopened = make_tui(session_path=path, resumed=read_session(path))
    async with reopened.run_test(size=(80, 24)) as pilot:
        await settle(reopened, pilot)
        transcript = reopened.query_one(Transcript)
        assert await eventually(pilot, lambda: transcript.scroll_y == transcript.max_scroll_y)
        assert transcript.max_scroll_y > 0


async def test_attention_strip_keeps_the_latest_tokens_and_the_top_three_in_view(make_tui):
    app = make_tui(max_new_tokens=12)
    async with app.run_test(size=(60, 20)) as pilot:
        await generate(app, pilot, "one two three four five six seven eight nine ten")
        await pilot.press("escape", "a")
        await settle(app, pilot)
        strip = app.query_one(AttentionStrip)
        strip.styles.height = 4  # border, two heading rows, one row of tokens
        await pilot.press("[")  # shown again at that height
        await settle(app, pilot)
        heading = strip.query_one("#attention-heading")
        scroll = strip.query_one("#attention-scroll")
        assert await eventually(pilot, lambda: scroll.scroll_y == scroll.max_scroll_y > 0)
        assert on_screen(app, heading) and heading.region.height == 2
        assert "top " in strip.text


@pytest.mark.parametrize("size, rows", [((80, 24), 5), ((60, 20), 3)])
async def test_score_screen_shows_scored_rows_on_small_screens(make_tui, size, rows):
    app = make_tui()
    async with app.run_test(size=size) as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "农夫山泉 天然水 550ml 瓶装\n可口可乐 零度 330ml"
        await pilot.press("f2")
        await settle(app, pilot)
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert table.row_count > rows and table.region.height - 1 >= rows


async def test_no_text_cursor_blinks(make_tui):
    """A blinking cursor repaints twice a second over SSH and makes snapshots depend on
    the clock (the score screen's did, under load): every text field holds still."""
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        fields = list(app.screen.query(Input))
        app.query_one("#prompt", Input).value = "hello"
        await pilot.press("f2")
        await settle(app, pilot)
        fields += list(app.screen.query(TextArea))
        assert len(fields) >= 5  # the prompt, the sidebar knobs, the score text
        assert [f.id for f in fields if f.cursor_blink] == []


async def test_hints_follow_focus_after_modals_close(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape")  # to the candidates
        assert hints(app).startswith("space step")
        for key in ("f1", "m", "t", "f2"):
            await pilot.press(key)
            await settle(app, pilot)
            await pilot.press("escape")
            await pilot.pause()
            assert isinstance(app.focused, CandidatesTable), key
            assert hints(app).startswith("space step"), (key, hints(app))
        await pilot.press("i")
        assert hints(app).startswith("enter generate")
        app.query_one("#knob-temperature", Input).focus()
        await pilot.pause()
        assert hints(app).startswith("type a value") and "esc explore" not in hints(app)


async def test_palette_commands_show_their_keys_and_set_knobs(make_tui):
    app = make_tui()
    async with app.run_test(size=(60, 20)) as pilot:
        await settle(app, pilot)
        assert not app.query_one("#sidebar").display  # folded away at 60 columns
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert commands["Why this token"].help.startswith("w · ")
        for name in ("temperature", "top_k", "top_p", "max_new_tokens", "seed",
                     "repetition penalty"):
            assert f"Set {name}" in commands
        # Without --compare there is nothing to compare: no "Compare:" commands.
        assert not [title for title in commands if title.startswith("Compare")]
        commands["Set max_new_tokens"].callback()
        await pilot.pause()
        field = app.screen.query_one("#knob-value", Input)
        field.value = "1e9"
        await pilot.press("enter")
        assert "whole number" in str(app.screen.query_one("#knob-error").render())
        field.value = "33"  # valid: the ✗ goes (it stayed until enter closed the dialog)
        await pilot.pause()
        assert str(app.screen.query_one("#knob-error").render()) == ""
        await pilot.press("enter")
        await pilot.pause()
        assert app.settings.max_new_tokens == 33
        assert app.query_one("#knob-max_new_tokens", Input).value == "33"


async def test_escape_stopping_a_run_moves_to_the_candidates(make_tui):
    app = make_tui(max_new_tokens=100_000, temperature=1.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press(*"hi", "enter")
        await pilot.pause(0.3)
        await pilot.press("escape")
        await settle(app, pilot)
        assert isinstance(app.focused, CandidatesTable)
        await pilot.press("w")  # a view key, not typed into the prompt
        assert app.why_shown and app.query_one("#prompt", Input).value == "hi"


async def test_stepping_keys_act_on_the_prompt_shown(make_tui):
    app = make_tui(max_new_tokens=4)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot, "first")
        prompt = app.query_one("#prompt", Input)
        prompt.value = "second"
        await pilot.press("escape")  # the edited prompt's turn opens: step 1's candidates
        await settle(app, pilot)
        assert app.turn.prompt == "second" and len(app.history) == 0
        assert status(app).startswith("new turn · step 1's candidates")
        assert [c.id for c in app.preview.candidates] and app.preview.index == 1
        await pilot.press("space")
        await settle(app, pilot)
        assert app.turn.prompt == "second" and len(app.history) == 1
        await pilot.press("space")  # unchanged now: the same turn goes on
        await settle(app, pilot)
        assert app.turn.prompt == "second" and len(app.history) == 2
        await pilot.press("g")
        await settle(app, pilot)
        assert len(app.history) == 4
        await pilot.press("g")  # max_new_tokens reached: say how to raise it
        await settle(app, pilot)
        assert len(app.history) == 4 and "raise max_new" in status(app)


async def test_sidebar_says_what_a_knob_wants_and_restores_on_leaving(make_tui):
    app = make_tui(max_new_tokens=200)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        knob = app.query_one("#knob-max_new_tokens", Input)
        knob.focus()
        knob.value = "1e9"
        await pilot.pause()
        assert "max_new wants a whole number 0…1,000,000 · 200 kept" in status(app)
        assert not status(app).endswith("…")  # fits 80 columns
        await pilot.press("tab")  # leave it: the value in force comes back
        assert knob.value == "200" and not knob.has_class("invalid")
        top_k = app.query_one("#knob-top_k", Input)
        top_k.focus()
        top_k.value = ""
        await pilot.press("tab")
        assert top_k.value == "—" and app.settings.top_k is None


async def test_end_of_run_status_fits_80_columns(make_tui):
    app = make_tui(max_new_tokens=30)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        text = status(app)
        # One word for the window at every width (it was "win" at 80 columns, "window" wider).
        assert text.startswith("max_new_tokens · 30 tokens") and text.endswith("(window 16)")


async def test_one_token_is_singular(make_tui):
    app = make_tui(max_new_tokens=1)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        assert status(app).startswith("max_new_tokens · 1 token ·")


async def test_two_quick_exports_never_overwrite(make_tui, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_tui(session_path=tmp_path / "s.jsonl", max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("ctrl+s", "ctrl+s")
        await pilot.pause()
    assert len(list(tmp_path.glob("minigpt-transcript-*.md"))) == 2
    assert len(list(tmp_path.glob("minigpt-transcript-*.json"))) == 2


async def test_the_focused_pane_is_marked(make_tui):
    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        table, transcript = app.query_one(CandidatesTable), app.query_one(Transcript)
        await pilot.press("escape")
        assert table.styles.border_left[0] == "thick"
        assert transcript.styles.border_left[0] in ("blank", "")
        transcript.focus()
        await pilot.pause()
        assert transcript.styles.border_left[0] == "thick"
        assert table.styles.border_left[0] in ("blank", "")


async def test_a_long_checkpoint_path_gives_way_to_its_file_name(tiny_ckpt, engine_client,
                                                                  tmp_path):
    """Over SSH a checkpoint is often deep in a run folder: where the header does not fit,
    the folders go first and the program's name, size and device stay."""
    deep = tmp_path / ("run-" + "x" * 40) / ("checkpoints-" + "y" * 30)
    deep.mkdir(parents=True)
    path = shutil.copy(tiny_ckpt, deep / "tiny.ckpt")
    app = make_app(path, SamplingSettings(), device="cpu", client=engine_client)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        assert screen_text(app).splitlines()[0].strip() == \
            "minigpt-tui · tiny.ckpt · 6.5M params · cpu"
        await pilot.resize_terminal(200, 30)
        await settle(app, pilot)
        assert str(path) in screen_text(app).splitlines()[0]


async def test_a_single_step_reports_no_rate(make_tui):
    app = make_tui(max_new_tokens=2)
    async with app.run_test(size=(120, 30)) as pilot:
        await generate(app, pilot)
        assert "tok/s" in status(app)  # a run has a rate
        await pilot.press("escape", "space")
        await settle(app, pilot)
        assert status(app).startswith("step · 3 tokens") and "tok/s" not in status(app)


def test_the_status_line_gives_up_speed_then_divergence_before_cutting():
    from tui.lines import fit_status

    text = "max_new_tokens · 4 tokens · 250 tok/s · last step KL(A‖B) 0.123 JS 0.045 · pos 10/16"
    assert fit_status(text, 90) == text
    assert fit_status(text, 75) == ("max_new_tokens · 4 tokens · last step KL(A‖B) 0.123 "
                                    "JS 0.045 · pos 10/16")
    assert fit_status(text, 50) == "max_new_tokens · 4 tokens · pos 10/16"  # not 'pos 10/…'
    noted = "stopped · 459 tokens · new turn from the edited prompt · pos 469 (window 64)"
    assert fit_status(noted, 58) == "stopped · 459 tokens · pos 469 (window 64)"  # pos stays
    assert fit_status(text, 20).endswith("…")


async def test_at_60_columns_max_new_reached_names_the_palette(make_tui):
    """No sidebar below 70 columns: the way to raise max_new is the palette's command."""
    app = make_tui(max_new_tokens=2)
    async with app.run_test(size=(60, 20)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape", "g")
        await settle(app, pilot)
        assert status(app) == "max_new_tokens (2) reached · ctrl+p › Set max_new_tokens"
        assert "sidebar" not in status(app)


async def test_wishes_of_a_book_reader(make_tui, tmp_path):
    """Escape from a typed prompt shows step 1's candidates (and saves no empty turn);
    the session file's path is on F1 and m; p says what its colours mean; a repeated
    enter with a fixed seed says it drew the same tokens."""
    from minigpt.host.session import read_session

    session = tmp_path / "s.jsonl"
    app = make_tui(session_path=session, max_new_tokens=3, temperature=1.0, seed=4)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "农夫"
        await pilot.press("escape")
        await settle(app, pilot)
        assert app.turn.prompt == "农夫" and app.preview.index == 1 and not app.history
        assert len(app.query_one(CandidatesTable).rows) == 5
        await pilot.press("f1")
        assert f"session file: {session}" in screen_text(app)
        await pilot.press("escape", "m")
        await settle(app, pilot)
        assert f"session file: {session}" in screen_text(app)
        await pilot.press("escape", "p")
        assert status(app) == "tint p: green ≥.5 yellow ≥.2 magenta ≥.05 red <.05"
        await pilot.press("i", "enter")
        await settle(app, pilot)
        first = [s.chosen.id for s in app.history]
        assert "same prompt and seed" not in status(app)
        await pilot.press("enter")  # the same prompt, the same seed
        await settle(app, pilot)
        assert [s.chosen.id for s in app.history] == first
        assert "same prompt and seed 4: the same tokens" in app.query_one(StatusLine).full_text
    assert [r["prompt"] for r in read_session(session)] == ["农夫", "农夫"]
    assert all(r["tokens"] for r in read_session(session))  # no empty turn was saved


async def test_one_table_draw_per_single_step(make_tui, monkeypatch):
    """A step drew the table twice: its own candidates as it arrived, then the preview."""
    app = make_tui(max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape")
        draws = []
        real_show = CandidatesTable.show
        monkeypatch.setattr(CandidatesTable, "show",
                            lambda self, *a, **k: draws.append(1) or real_show(self, *a, **k))
        for key in ("space", "2", "backspace"):
            draws.clear()
            await pilot.press(key)
            await settle(app, pilot)
            assert len(draws) == 1, key
