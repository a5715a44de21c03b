"""The branch tree (key t): abandoned paths listed, switching restores them exactly."""

import json

from textual.widgets import Input, Tree

from conftest import mirror_engine, settle
from minigpt.branches import path_ids, path_log_prob, path_text
from minigpt.host.session import read_session
from tui.branches import BranchScreen
from tui.widgets import Transcript


async def two_paths(app, pilot):
    """Generate 6 tokens, go back to step 3 and pick its second candidate, go on 2."""
    app.query_one("#prompt", Input).value = "农夫山泉 "
    await pilot.press("enter")
    await settle(app, pilot)
    first = tuple(app.history)
    await pilot.press("escape", "[", "[", "[", "[")  # browse back to step 3
    await pilot.press("2")  # rewinds to step 3 and takes its second candidate
    await settle(app, pilot)
    await pilot.press("space", "space")
    await settle(app, pilot)
    return first, tuple(app.history)


def labels(node):
    out = [str(node.label)]
    for child in node.children:
        out += labels(child)
    return out


async def test_t_lists_the_paths_and_enter_switches_exactly(make_tui, tiny_loaded):
    app = make_tui(max_new_tokens=6)
    async with app.run_test(size=(120, 40)) as pilot:
        first, second = await two_paths(app, pilot)
        assert path_ids(first)[:2] == path_ids(second)[:2] and first[2] != second[2]
        await pilot.press("t")
        await settle(app, pilot)
        screen = app.screen
        assert isinstance(screen, BranchScreen)
        tree = screen.query_one(Tree)
        text = "\n".join(labels(tree.root))
        assert "1 abandoned" in str(screen.query_one(".modal-title").render())
        assert f"Σ log p {path_log_prob(first):.2f} · 6 tokens" in text
        assert f"Σ log p {path_log_prob(second):.2f} · 5 tokens" in text
        assert "● " in text  # the current path is marked
        assert tree.cursor_node.data == second
        leaf = next(n for n in tree.root.children[0].children if n.data == first)
        tree.move_cursor(leaf)
        await pilot.press("enter")
        await settle(app, pilot)
        assert not isinstance(app.screen, BranchScreen)
        assert app.history == list(first)
        assert app.position == len(app.turn.prompt_ids) + len(first)
        assert app.query_one(Transcript).plain == "农夫山泉 " + path_text(first)
        assert [c.id for c in app.preview.candidates] == \
            [c.id for c in mirror_engine(tiny_loaded, app).peek().candidates]
        assert [b["tokens"] for b in app.turn.branches] == [path_ids(second)]


async def test_branches_are_saved_with_the_session_and_exported(make_tui, tmp_path,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_tui(session_path=tmp_path / "s.jsonl", max_new_tokens=6)
    async with app.run_test(size=(120, 40)) as pilot:
        first, second = await two_paths(app, pilot)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
    [turn] = read_session(tmp_path / "s.jsonl")
    assert turn["tokens"] == path_ids(second)
    [branch] = turn["branches"]
    assert branch["tokens"] == path_ids(first) and branch["diverges_at_step"] == 3
    assert branch["text"] == path_text(first)
    assert branch["log_prob"] == path_log_prob(first)
    [js] = tmp_path.glob("minigpt-transcript-*.json")
    assert json.loads(js.read_text())[0]["branches"] == turn["branches"]
    [md] = tmp_path.glob("minigpt-transcript-*.md")
    assert f"- from step 3, Σ log p {path_log_prob(first):.2f}, 6 tokens" in md.read_text()


async def test_t_while_running_or_before_a_turn_says_why(make_tui, monkeypatch):
    app = make_tui(max_new_tokens=100_000)
    toasts = []
    monkeypatch.setattr(app, "notify", lambda message, **kw: toasts.append(message))
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#transcript").focus()
        await pilot.press("t")
        assert "no turn yet" in str(app.query_one("#status").render())
        app.query_one("#prompt", Input).value = "hello"
        app.query_one("#prompt", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        app.query_one("#transcript").focus()
        await pilot.press("t")
        assert not isinstance(app.screen, BranchScreen)
        assert any("stop the run first" in t for t in toasts)
        await pilot.press("ctrl+q")


async def test_a_switched_to_branch_samples_on_as_if_never_left(make_tui, tiny_loaded):
    """The explorer keeps the sampler state each undo reports with the path it leaves;
    switching back to the whole path hands it to the engine, so seeded sampling goes on
    exactly where that path stopped (the other path drew numbers of its own)."""
    from minigpt.engine.engine import Engine
    from minigpt.settings import SamplingSettings

    app = make_tui(max_new_tokens=6, temperature=1.0, seed=7)
    async with app.run_test(size=(120, 40)) as pilot:
        first, second = await two_paths(app, pilot)
        assert app.branch_book.alternatives(second) == [first]
        app.switch_branch(first)
        await settle(app, pilot)
        assert app.query_one(Transcript).plain == "农夫山泉 " + path_text(first)
        await pilot.press("space")
        await settle(app, pilot)
        straight = Engine.from_loaded(tiny_loaded, SamplingSettings(
            temperature=1.0, seed=7, max_new_tokens=7))
        straight.reset("农夫山泉 ")
        assert path_ids(tuple(app.history)) == [s.chosen.id for s in straight.run(7)]
        assert app.branch_book.alternatives(tuple(app.history)) == [second]
