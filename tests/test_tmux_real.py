"""The real ``minigpt-tui`` on a real trained model (SmolLM2-135M-Instruct) in tmux at
80×24, as a new user meets it: a message typed while the model loads, two chat turns
whose replies show to their end, a reply in the session file before quitting, the
session reopened, and a paste longer than the window."""

import json
import re

import pytest

from tmux_driver import (SESSION, explorer, needs_tmux, quit_explorer, send, tmux,
                         tmux_server, type_text, wait_for)

pytestmark = needs_tmux
__all__ = ["tmux_server"]  # the module's tmux server (a fixture)
FLAGS = "--temperature 0 --max-new-tokens 24 --device cpu"


def transcript(screen: str) -> str:
    """The transcript column's text, its wrapped lines joined (the sidebar cut off)."""
    return "".join(line.split("│", 1)[-1].strip() for line in screen.splitlines()[1:-6])


def reply_ended(count: int):
    return lambda s: "end of text ·" in s and s.count("‹<|im_end|>›") >= count


@pytest.fixture
def session_file(tmp_path):
    return tmp_path / "chat.jsonl"


def test_a_chat_on_a_real_model_in_a_real_terminal(smollm2, session_file):
    explorer(smollm2, FLAGS, f"--session {session_file}")
    wait_for(lambda s: "loading model" in s)  # the first frame: typed from here on, the
    type_text("What is the capital of France?")  # message waits for the model (the
    send("Enter")  # Pilot test pins that down with the engine stopped; here it is a race)
    text = wait_for(reply_ended(1), timeout=120)
    assert "user › What is the capital of France?" in text  # a chat turn, not raw text
    assert "Paris" in transcript(text)
    [record] = [json.loads(line) for line in session_file.read_text().splitlines()]
    assert record["reason"] == "end of text" and "Paris" in record["completion"]  # saved now
    type_text("And of Germany?")
    send("Enter")
    text = wait_for(lambda s: "user › And of Germany?" in s and reply_ended(2)(s), timeout=120)
    shown = transcript(text)
    assert re.search(r"Berlin\.‹<\|im_end\|>›", shown), text  # the reply's end, in view
    rows = [line.split("│", 1)[-1].strip() for line in text.splitlines()]
    assert "<|im_end|>" not in rows  # the template's copy of the token, shown once only
    quit_explorer()
    explorer(smollm2, FLAGS, f"--session {session_file}")
    text = wait_for(lambda s: "reopened the conversation" in s, timeout=120)
    assert "user › And of Germany?" in text
    type_text("And of Italy?")
    send("Enter")
    text = wait_for(lambda s: "user › And of Italy?" in s and reply_ended(1)(s), timeout=120)
    assert "Rome" in transcript(text)
    quit_explorer()
    turns = [json.loads(line) for line in session_file.read_text().splitlines()]
    assert [m["content"] for m in turns[-1]["messages"] if m["role"] == "user"] == \
        ["What is the capital of France?", "And of Germany?", "And of Italy?"]


def test_a_paste_longer_than_the_window(smollm2, tmp_path):
    """A paste past the window (1,024 here: 2,000-odd tokens) runs, and the status says
    how much of it the model sees."""
    explorer(smollm2, FLAGS, "--no-chat --window 1024 --max-new-tokens 3")
    wait_for(lambda s: "type a prompt" in s, timeout=120)
    text = " ".join(f"line {i}: the river runs to the sea." for i in range(220))
    path = tmp_path / "paste.txt"
    path.write_text(text)
    tmux("load-buffer", str(path))
    tmux("paste-buffer", "-p", "-t", SESSION)
    send("Enter")
    screen = wait_for(lambda s: "max_new_tokens · 3 tokens" in s, timeout=180)
    seen = re.search(r"pos (\d+) \(sees (\d+)/1024\)", screen)
    assert seen, screen
    position, sees = int(seen[1]), int(seen[2])
    assert position > 1024 and sees == position - -(-(position - 1024) // 512) * 512
    quit_explorer()
