"""Nothing lost: session files (JSON lines), reopening them, exporting transcripts."""

import json
import os
import signal
import subprocess
import sys
import time

from textual.widgets import Input

from conftest import settle
from minigpt.session import append_record, read_session
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
    code = ("import sys; from pathlib import Path; from minigpt.session import append_record\n"
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
        await pilot.pause()
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
