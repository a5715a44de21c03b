"""Bracketed pastes holding escape sequences and control characters arrive as text."""

from textual import events

from tui.paste import PASTE_END, PASTE_START, PasteFilter, PasteSafeParser, clean_paste

HOSTILE = "农夫\x01\x07\x1b[31mRED\x1b[0m\t山泉 end"


def parse(parser, *chunks):
    out = []
    for chunk in chunks:
        if chunk:  # the driver never feeds "" (it means end of input)
            out += list(parser.feed(chunk))
    return out


def test_a_hostile_paste_is_one_paste_event_in_order():
    events_ = parse(PasteSafeParser(), PASTE_START + HOSTILE + PASTE_END)
    assert [type(e) for e in events_] == [events.Paste]
    assert events_[0].text == "农夫RED 山泉 end"


async def test_a_paste_lands_in_the_prompt_once():
    """The prompt joins a paste's lines itself; Input's own handler, further along the
    MRO, must not insert the first line again (every paste landed twice)."""
    from textual.app import App

    from tui.widgets import PromptInput

    class PromptApp(App):
        def compose(self):
            yield PromptInput(id="prompt")

    app = PromptApp()
    async with app.run_test() as pilot:
        prompt = app.query_one(PromptInput)
        prompt.focus()
        await pilot.press(*"abc ")
        prompt.post_message(events.Paste("XYZ"))
        await pilot.pause()
        assert prompt.value == "abc XYZ"
        prompt.post_message(events.Paste("one\ntwo\n\nthree"))
        await pilot.pause()
        assert prompt.value == "abc XYZone two three"


def test_markers_and_escapes_split_across_reads():
    whole = PASTE_START + HOSTILE + PASTE_END + "x"
    for cut in range(1, len(whole)):
        for cut2 in (cut, min(len(whole), cut + 3)):
            events_ = parse(PasteSafeParser(), whole[:cut], whole[cut:cut2], whole[cut2:])
            pastes = [e.text for e in events_ if isinstance(e, events.Paste)]
            keys = [e.key for e in events_ if isinstance(e, events.Key)]
            assert pastes == ["农夫RED 山泉 end"] and keys == ["x"], (cut, cut2, events_)


def test_outside_pastes_nothing_changes():
    f = PasteFilter()
    assert f("abc\x1b[A\x01") == "abc\x1b[A\x01"
    assert f("\x1b") == "\x1b"  # the escape key is never held back


def test_clean_paste():
    assert clean_paste("a\x1b]0;title\x07b\x1b[1;31mc\x1bMd\x00\te\r\nf") == "abcd e\nf"


async def test_a_paste_with_the_table_focused_lands_in_the_prompt(make_tui):
    """The hands-on pass: with the candidates table focused a paste vanished. It goes to
    the end of the prompt now, which takes the focus."""
    from textual import events
    from textual.widgets import Input

    from conftest import settle

    app = make_tui()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        prompt = app.query_one("#prompt", Input)
        prompt.value = "农夫"
        table = app.query_one("#candidates")
        table.focus()
        await pilot.pause()
        app.post_message(events.Paste("山泉\n天然水"))  # as the terminal driver sends it
        await pilot.pause()
        assert prompt.value == "农夫山泉 天然水" and app.focused is prompt
