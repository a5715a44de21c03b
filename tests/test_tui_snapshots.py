"""Snapshot tests at 80×24 and 120×40 on a seeded tiny model (greedy, deterministic).

Update after an intended change with: python -m pytest tests/test_tui_snapshots.py --snapshot-update
"""

import pytest

from conftest import settle

SIZES = [(80, 24), (120, 40)]


async def explore(pilot):
    """Type a prompt, generate, go to the table, pick #2, browse one step back."""
    app = pilot.app
    await settle(app, pilot)
    await pilot.press(*"农夫山泉 ", "enter")
    await settle(app, pilot)
    await pilot.press("escape", "2")
    await settle(app, pilot)
    await pilot.press("[")
    await pilot.pause()


async def ready(pilot):
    """The model is loaded (the header shows its size)."""
    await settle(pilot.app, pilot)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_start_screen(snap_compare, make_tui, size):
    assert snap_compare(make_tui(), terminal_size=size, run_before=ready)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_after_exploring(snap_compare, make_tui, size):
    assert snap_compare(make_tui(max_new_tokens=10), terminal_size=size, run_before=explore)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_tinted_with_top_k(snap_compare, make_tui, size):
    async def tinted(pilot):
        await explore(pilot)
        await pilot.press("]", "p")
        await pilot.pause()

    assert snap_compare(make_tui(max_new_tokens=10, top_k=3), terminal_size=size,
                        run_before=tinted)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_compare_view(snap_compare, make_tui, other_ckpt, size):
    """--compare other.ckpt: A's candidates with B's probabilities, KL/JS, tinted by
    divergence; then B's own top-5."""
    async def compared(pilot):
        await explore(pilot)
        await pilot.press("p", "p")
        await pilot.pause()

    assert snap_compare(make_tui(max_new_tokens=10, compare=other_ckpt.name), terminal_size=size,
                        run_before=compared)


def test_compare_other_top(snap_compare, make_tui, other_ckpt):
    async def other_top(pilot):
        await explore(pilot)
        await pilot.press("b")
        await pilot.pause()

    assert snap_compare(make_tui(max_new_tokens=10, compare=other_ckpt.name),
                        terminal_size=(80, 24), run_before=other_top)


def test_help_screen(snap_compare, make_tui):
    assert snap_compare(make_tui(), terminal_size=(80, 24), run_before=ready, press=["f1"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_why_panel(snap_compare, make_tui, size):
    async def why(pilot):
        await explore(pilot)
        await pilot.press("w")
        await settle(pilot.app, pilot)

    assert snap_compare(make_tui(max_new_tokens=10, temperature=0.8, top_k=4), terminal_size=size,
                        run_before=why)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_score_screen(snap_compare, make_tui, size):
    async def score(pilot):
        from textual.widgets import Input
        await settle(pilot.app, pilot)
        pilot.app.query_one("#prompt", Input).value = "农夫山泉 天然水 550ml 瓶装\n可口可乐 零度"
        await pilot.press("f2")
        await settle(pilot.app, pilot)
        await pilot.pause(0.2)

    assert snap_compare(make_tui(), terminal_size=size, run_before=score)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_complete_characters(snap_compare, make_tui, size):
    async def complete(pilot):
        from textual.widgets import Input
        await settle(pilot.app, pilot)
        pilot.app.query_one("#prompt", Input).value = "蒙牛"  # a byte piece among the next five
        await pilot.press("escape", "space", "backspace")
        await settle(pilot.app, pilot)
        await pilot.press("c")
        await settle(pilot.app, pilot)
        await pilot.pause()

    assert snap_compare(make_tui(temperature=1.0), terminal_size=size, run_before=complete)


@pytest.fixture
def shipped_tui(monkeypatch, engine_client):
    """The shipped model, opened by its relative path from the checkout (stable header)."""
    from pathlib import Path

    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    monkeypatch.chdir(Path(__file__).parent.parent)
    return lambda **settings: make_app("model/model.ckpt", SamplingSettings(**settings),
                                       device="cpu", client=engine_client)


def test_shipped_model_why(snap_compare, shipped_tui):
    """For the README: a brand, one step, the byte pieces completed and the why panel."""
    async def explore(pilot):
        from textual.widgets import Input
        await settle(pilot.app, pilot)
        pilot.app.query_one("#prompt", Input).value = "可口可乐 "
        await pilot.press("escape", "space", "backspace")
        await settle(pilot.app, pilot)
        await pilot.press("1", "c", "w")  # a pick: the status line shows no timing
        await settle(pilot.app, pilot)
        await pilot.pause()

    assert snap_compare(shipped_tui(temperature=0.8, top_k=4), terminal_size=(100, 32),
                        run_before=explore)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_branch_tree(snap_compare, make_tui, size):
    async def branches(pilot):
        app = pilot.app
        await explore(pilot)  # generated, picked #2 at the end, browsed back
        await pilot.press("[", "[", "3")  # back two more steps and another pick: a third path
        await settle(app, pilot)
        await pilot.press("t")
        await settle(app, pilot)
        await pilot.pause()

    assert snap_compare(make_tui(max_new_tokens=10), terminal_size=size, run_before=branches)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_attention_strip(snap_compare, make_tui, size):
    async def attention(pilot):
        await explore(pilot)
        await pilot.press("a")
        await settle(pilot.app, pilot)
        await pilot.press("full_stop", "greater_than_sign")
        await pilot.pause()

    assert snap_compare(make_tui(max_new_tokens=10), terminal_size=size, run_before=attention)
