"""Nothing lost: session files (JSON lines), reopening them, exporting transcripts."""

import json
import os
import re
import signal
import subprocess
import sys
import time

from textual.widgets import Input

from conftest import settle
from minigpt.host.session import append_record, read_session
from tui.widgets import Transcript


def test_records_round_trip_and_last_record_of_a_turn_wins(tmp_path):
    path = tmp_path / "s.jsonl"
    append_record(path, {"turn": "a", "prompt": "one", "tokens": [1]})
    append_record(path, {"turn": "b", "prompt": "two", "tokens": [2]})
    append_record(path, {"turn": "a", "prompt": "one", "tokens": [1, 3]})
    assert [(t["turn"], t["tokens"]) for t in read_session(path)] == [("a", [1, 3]), ("b", [2])]


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "s.jsonl"
    append_record(path, {"turn": "a", "prompt": "ok", "tokens": []})
    with open(path, "a") as f:
        f.write('{"turn": "b", "prompt": "half wri')
    assert [t["turn"] for t in read_session(path)] == ["a"]


def test_killed_writer_leaves_every_complete_record_readable(tmp_path):
    path = tmp_path / "s.jsonl"
    code = ("import sys; from pathlib import Path; from minigpt.host.session import append_record\n"
            "i = 0\n"
            "while True:\n"
            "    append_record(Path(sys.argv[1]), {'turn': str(i), 'prompt': 'p' * 5000, 'i': i})\n"
            "    i += 1\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or path.stat().st_size < 50_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    turns = read_session(path)
    assert len(turns) > 3
    assert [t["i"] for t in turns] == list(range(len(turns)))


async def test_generation_is_appended_with_settings_seed_tokens_and_candidates(make_tui, tmp_path):
    path = tmp_path / "session.jsonl"
    app = make_tui(session_path=path, max_new_tokens=5, seed=99)
    async with app.run_test() as pilot:
        await pilot.press(*"abc", "enter")
        await settle(app, pilot)
        [record] = read_session(path)
        assert record["prompt"] == "abc" and record["reason"] == "max_new_tokens"
        assert record["settings"]["seed"] == 99 and record["settings"]["max_new_tokens"] == 5
        assert record["tokens"] == [s.chosen.id for s in app.history]
        assert [len(s["candidates"]) for s in record["steps"]] == [5] * 5
        await pilot.press("escape", "backspace")  # stepping changes are saved on quit
        await settle(app, pilot)
        await pilot.press("ctrl+q")
    [record] = read_session(path)
    assert len(record["tokens"]) == 4


async def test_session_reopens_and_shows_transcript(make_tui, tmp_path):
    path = tmp_path / "session.jsonl"
    app = make_tui(session_path=path, max_new_tokens=4)
    async with app.run_test() as pilot:
        for prompt in ("first", "second"):
            app.query_one("#prompt", Input).value = prompt
            await pilot.press("enter")
            await settle(app, pilot)
        shown = app.query_one(Transcript).plain
    reopened = make_tui(session_path=path, resumed=read_session(path))
    async with reopened.run_test() as pilot:
        await settle(reopened, pilot)
        assert reopened.query_one(Transcript).plain == shown


async def test_export_writes_markdown_and_json(make_tui, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = make_tui(session_path=tmp_path / "s.jsonl", max_new_tokens=3)
    async with app.run_test() as pilot:
        await pilot.press(*"农夫", "enter")
        await settle(app, pilot)
        await pilot.press("ctrl+s")
        await settle(app, pilot)
    [md] = tmp_path.glob("minigpt-transcript-*.md")
    [js] = tmp_path.glob("minigpt-transcript-*.json")
    turns = json.loads(js.read_text())
    assert turns[0]["prompt"] == "农夫" and len(turns[0]["steps"]) == 3
    text = md.read_text()
    assert "**Prompt:** 农夫" in text and "| 3 |" in text


def test_the_markdown_export_renders_pipes_and_backticks_as_text():
    """The real-model pass: the export showed ‹<&#124;im_end&#124;>› literally (an entity
    inside a code span in a table). Rendered as a GFM table, each cell is the token."""
    from markdown_it import MarkdownIt

    from minigpt.host.session import export_markdown

    def candidate(text):
        return {"id": 1, "text": text, "prob": 0.5, "kept": True}

    texts = ["‹<|im_end|>›", "a`b", "`", "x|y"]
    turn = {"prompt": "p", "completion": "", "settings": {}, "steps": [
        {"step": n, "chosen": candidate(t), "candidates": [candidate(t)]}
        for n, t in enumerate(texts, 1)]}
    html = MarkdownIt("commonmark").enable("table").render(export_markdown([turn]))
    cells = re.findall(r"<td><code>(.*?)</code></td>", html)
    assert [c.replace("&lt;", "<").replace("&gt;", ">") for c in cells] == texts
    assert "&amp;#124;" not in html and "&#124;" not in html


def test_a_torn_last_line_costs_only_itself(tmp_path):
    """A crash mid-write leaves half a line: the next records start on a line of their
    own, so they stay readable, and reading says how many lines it skipped."""
    from minigpt.host.session import read_session_counting
    path = tmp_path / "s.jsonl"
    append_record(path, {"turn": "old1", "prompt": "old", "tokens": [1]})
    with open(path, "a") as f:
        f.write('{"turn": "torn", "prompt": "half wri')
    append_record(path, {"turn": "a", "prompt": "A", "tokens": [2]})
    append_record(path, {"turn": "b", "prompt": "B", "tokens": [3]})
    turns, skipped = read_session_counting(path)
    assert [t["turn"] for t in turns] == ["old1", "a", "b"] and skipped == 1


def test_a_short_write_is_cut_back_and_retried_later(tmp_path, monkeypatch):
    """Disk full: a record is written completely or not at all; the failure is raised
    (one line for the status bar), the turn stays queued and is written when space
    returns, before newer turns, nothing glued to a fragment."""
    from minigpt.host import session as s
    path = tmp_path / "s.jsonl"
    append_record(path, {"turn": "before", "prompt": "p"})
    size = path.stat().st_size
    real_write = os.write
    full = {"on": True}

    def short_write(fd, data):  # what a filling disk does: a short count, then ENOSPC
        if full["on"]:
            if full.get("wrote"):
                raise OSError(28, "No space left on device")
            full["wrote"] = True
            return real_write(fd, data[:min(4096, len(data) // 2)])
        return real_write(fd, data)

    def enospc(fd, data):
        if full["on"]:
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    for fake in (short_write, enospc):
        monkeypatch.setattr(s.os, "write", fake)
        full["on"] = True
        recorder = s.SessionRecorder(path, "m")
        turn = s.TurnState("a long prompt " * 500)
        recorder.start_turn()
        recorder.changed("stopped")
        try:
            recorder.flush(turn)
        except OSError:
            pass
        assert path.stat().st_size == size  # nothing half-written
        assert recorder.behind and len(recorder.unsaved) == 1
        first = recorder.turn_id
        recorder.start_turn()  # a new turn meanwhile: the unsaved one is not dropped
        recorder.changed("stopped")
        full["on"] = False  # space again
        recorder.flush(s.TurnState("next"))
        assert not recorder.behind
        turns = read_session(path)
        assert [t["turn"] for t in turns][-2:] == [first, recorder.turn_id]
        size = path.stat().st_size


def test_export_never_follows_a_planted_symlink(tmp_path, monkeypatch):
    from minigpt.host import session as s
    session = tmp_path / "s.jsonl"
    append_record(session, {"turn": "a", "prompt": "p", "steps": []})
    monkeypatch.setattr(s.time, "strftime", lambda fmt: "minigpt-transcript-fixed")
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (tmp_path / "minigpt-transcript-fixed.md").symlink_to(victim)
    md, js = s.export_transcript(session, tmp_path)
    assert victim.read_text() == "keep me"
    assert md.name == "minigpt-transcript-fixed-2.md" and not md.is_symlink()
    again = s.export_transcript(session, tmp_path)  # and never overwrites its own
    assert again[0].name == "minigpt-transcript-fixed-3.md"


async def test_turns_after_a_torn_line_are_all_kept(make_tui, tmp_path):
    path = tmp_path / "session.jsonl"
    append_record(path, {"turn": "old1", "prompt": "old", "tokens": [1]})
    with open(path, "a") as f:
        f.write('{"turn": "torn", "prompt": "half wri')
    app = make_tui(session_path=path, resumed=read_session(path), max_new_tokens=3)
    async with app.run_test() as pilot:
        for prompt in ("a", "b"):
            await settle(app, pilot)
            app.query_one("#prompt", Input).focus()  # the reopened turn has the table's
            app.query_one("#prompt", Input).value = prompt
            await pilot.press("enter")
            await settle(app, pilot)
    assert [t["prompt"] for t in read_session(path)] == ["old", "a", "b"]


async def test_a_reopened_session_can_be_explored_where_it_was_left(make_tui, tmp_path):
    """The hands-on pass: a reopened session's turn could not be stepped (space: "give a
    prompt first"), t said "no turn yet", [ did nothing, and the knobs were defaults."""
    from tui.branches import BranchScreen

    path = tmp_path / "session.jsonl"
    app = make_tui(session_path=path, max_new_tokens=6, temperature=0.8, top_k=2, seed=5)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press(*"农夫", "enter")
        await settle(app, pilot)
        await pilot.press("escape", "u", "u", "2")  # a branch: the two undone tokens
        await settle(app, pilot)
        kept = [s.chosen.id for s in app.history]
        candidates = [c.id for c in app.preview.candidates]
        await pilot.press("ctrl+q")
    [saved] = read_session(path)
    assert saved["tokens"] == kept and len(saved["branches"]) == 1
    lines_before = len(path.read_text(encoding="utf-8").splitlines())

    reopened = make_tui(session_path=path, resumed=read_session(path))  # default knobs
    async with reopened.run_test(size=(120, 40)) as pilot:
        await settle(reopened, pilot)
        s = reopened.settings
        assert (s.temperature, s.top_k, s.seed, s.max_new_tokens) == (0.8, 2, 5, 6)
        assert reopened.query_one("#knob-top_k", Input).value == "2"
        assert [st.chosen.id for st in reopened.history] == kept
        assert [c.id for c in reopened.preview.candidates] == candidates
        assert reopened.query_one(Transcript).plain == "农夫" + reopened.turn.completion
        assert "reopened the last turn" in reopened.query_one("#status").full_text
        # Where the keys it names work, and with the turn's prompt in the prompt line.
        assert reopened.focused.id == "candidates"
        assert reopened.query_one("#prompt", Input).value == "农夫"
        await pilot.press("[")  # browse back
        await settle(reopened, pilot)
        assert reopened.view_step == len(kept)
        await pilot.press("t")
        await settle(reopened, pilot)
        assert isinstance(reopened.screen, BranchScreen) and len(reopened.screen.paths) == 2
        await pilot.press("escape", "escape", "space")  # close, live end, one more token
        await settle(reopened, pilot)
        assert len(reopened.history) == len(kept) + 1
        await pilot.press("ctrl+q")
    [turn] = read_session(path)  # the same turn, not a second one
    assert turn["turn"] == saved["turn"] and turn["tokens"][:-1] == kept
    assert len(path.read_text(encoding="utf-8").splitlines()) == lines_before + 1


async def test_reopening_and_quitting_adds_no_record(make_tui, tmp_path):
    path = tmp_path / "session.jsonl"
    app = make_tui(session_path=path, max_new_tokens=3)
    async with app.run_test() as pilot:
        await pilot.press(*"abc", "enter")
        await settle(app, pilot)
    before = path.read_text(encoding="utf-8")
    reopened = make_tui(session_path=path, resumed=read_session(path))
    async with reopened.run_test() as pilot:
        await settle(reopened, pilot)
        assert len(reopened.history) == 3
        await pilot.press("ctrl+q")
    assert path.read_text(encoding="utf-8") == before
