"""The real ``minigpt-tui --server`` in tmux at 80×24 against a real llama-server: the
header names what the server reports, keys step, pick and undo by ids, the views a
server cannot fill say so, and a killed server is one line that ``r`` gets past once
the server is back."""

import re

import pytest

from tmux_driver import EXPLORER, needs_tmux, quit_explorer, send, start, tmux_server, wait_for

pytestmark = needs_tmux
__all__ = ["tmux_server"]


def status(screen: str) -> str:
    return screen.splitlines()[-3]


def steps_shown(screen: str) -> int:
    found = re.search(r"· (\d+) tokens? ·", status(screen))
    return int(found[1]) if found else -1


def test_step_pick_undo_and_a_killed_server_in_a_real_terminal(tmp_path):
    from llama_server import LlamaServerProcess, server_binary
    from real_model import gguf_path

    if server_binary() is None or gguf_path() is None:
        pytest.skip("no llama-server or no SmolLM2 GGUF here")
    server = LlamaServerProcess(gguf_path(), log=tmp_path / "server.log").start()
    try:
        start(f"{EXPLORER} --server {server.url} --no-chat --temperature 0 "
              f"--max-new-tokens 6 --session {tmp_path / 's.jsonl'}")
        screen = wait_for(lambda s: "type a prompt" in s, timeout=60)
        assert "served · llama-server · SmolLM2-135M-Instruct · Q4_1" in screen.splitlines()[0]
        for key in "The capital of France is":
            send(key if key != " " else "Space")
        send("Enter")
        screen = wait_for(lambda s: "max_new_tokens · 6 tokens" in s and "Paris" in s,
                          timeout=60)
        assert "raw p" in screen  # the column: the server's raw probabilities
        send("Escape")
        wait_for(lambda s: "space step" in s)
        send("u")
        wait_for(lambda s: "undo · 5 tokens" in s)
        send("3")  # the third candidate, by its id
        screen = wait_for(lambda s: "picked · 6 tokens" in s)
        send("w")  # the why panel: the server's top-N, the entropy as bounds
        screen = wait_for(lambda s: "(bounds:" in s and "kept 1" in s)  # T 0: one token
        assert "H 0.00 nats" in screen  # the sampler's, exact: it keeps one token
        send("w")
        send("c")
        wait_for(lambda s: "needs the whole distribution" in s)
        send("a")
        wait_for(lambda s: "attention needs an in-process model" in s)
        server.kill()
        assert server.process.poll() is not None
        send("Space")  # the next token was drawn with the preview: it comes
        send("Space")
        screen = wait_for(lambda s: "r resumes" in s, timeout=30)
        assert "no server answers" in screen or "closed the connection" in screen
        kept = 7  # the picked turn's 6, and the one drawn with the preview before the kill
        again = LlamaServerProcess(gguf_path(), log=tmp_path / "again.log")
        again.port, again.url = server.port, server.url
        server = again.start()
        send("r")
        wait_for(lambda s: "the server answers · the turn goes on" in s, timeout=30)
        send("Space")
        wait_for(lambda s: steps_shown(s) == kept + 1, timeout=30)
        quit_explorer()
    finally:
        server.stop()
