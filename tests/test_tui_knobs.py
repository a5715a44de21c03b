"""The sidebar's knobs: half-typed values change nothing, an error clears once the field
is valid again, and the candidates on show follow new knobs at once."""

from textual.widgets import Input

from conftest import assert_close, mirror_engine, settle
from tui.lines import StatusLine
from tui.widgets import CandidatesTable


def status(app) -> str:
    return app.query_one(StatusLine).full_text


def shown_probs(app) -> list[float]:
    table = app.query_one(CandidatesTable)
    return [float(str(table.get_row_at(r)[3]).split()[0]) for r in range(table.row_count)]


async def type_into(pilot, field: Input, text: str) -> None:
    field.focus()
    field.value = ""
    await pilot.press(*text)
    await pilot.pause()


async def test_a_half_typed_negative_changes_nothing(make_tui):
    """top_k 5, then "-1": "-" on the way is not "off"; seed -5 does not make the seed
    random; the error goes as soon as the field reads a valid value again."""
    app = make_tui(top_k=5, seed=7)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        top_k = app.query_one("#knob-top_k", Input)
        await type_into(pilot, top_k, "-1")
        assert app.settings.top_k == 5 and top_k.has_class("invalid")
        assert "✗ top_k wants" in status(app) and "5 kept" in status(app)
        await type_into(pilot, top_k, "5")  # the value in force: the ✗ must still go
        assert not top_k.has_class("invalid") and "✗" not in status(app)
        assert status(app) == "top_k 5 in force"
        seed = app.query_one("#knob-seed", Input)
        await type_into(pilot, seed, "-5")
        assert app.settings.seed == 7 and seed.has_class("invalid")
        app.query_one(CandidatesTable).focus()  # leaving shows the value in force
        await pilot.pause()
        assert seed.value == "7" and not seed.has_class("invalid")


async def test_an_emptied_optional_knob_is_off_once_left(make_tui):
    app = make_tui(top_k=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(app, pilot)
        top_k = app.query_one("#knob-top_k", Input)
        await type_into(pilot, top_k, "")
        assert app.settings.top_k == 5  # still typing
        await pilot.press("enter")  # on to the next field
        assert app.settings.top_k is None and top_k.value == "—"
        temperature = app.query_one("#knob-temperature", Input)
        await type_into(pilot, temperature, "")
        app.query_one(CandidatesTable).focus()
        await pilot.pause()
        assert app.settings.temperature == 0.0 and temperature.value == "0"


async def test_the_table_follows_new_knobs_at_once(make_tui, tiny_loaded):
    """The hands-on pass: temperature changed, the table still showed the old
    probabilities while space sampled from the new ones."""
    app = make_tui(temperature=0.3, max_new_tokens=3)
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = "可口可乐 "
        await pilot.press("enter")
        await settle(app, pilot)
        before = shown_probs(app)
        await type_into(pilot, app.query_one("#knob-temperature", Input), "1.5")
        await settle(app, pilot)
        expected = mirror_engine(tiny_loaded, app).peek()  # under the app's new settings
        assert app.settings.temperature == 1.5
        assert_close(app.preview, expected)
        assert shown_probs(app) == [float(f"{c.prob:.4f}") for c in expected.candidates]
        assert shown_probs(app) != before
