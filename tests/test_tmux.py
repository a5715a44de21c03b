"""The real ``minigpt-tui`` in tmux at 80×24 and larger: keys, views, pastes, sizes."""

import os
import re
import time
from pathlib import Path

import pytest
import torch

from reference import book_logits, random_book_state_dict
from tmux_driver import (SESSION, candidate_rows, explorer, needs_tmux, quit_explorer, screen,
                         send, tmux, tmux_server, to_candidates, type_text, wait_for)

pytestmark = needs_tmux
__all__ = ["tmux_server"]  # the module's tmux server (a fixture)
ESCAPES = re.compile(r"‹[0-9a-f]{2}( [0-9a-f]{2})*›")


@pytest.fixture
def tui_session(tiny_ckpt):
    explorer(tiny_ckpt, "--temperature 0 --max-new-tokens 6 --device cpu")
    yield
    tmux("kill-session", "-t", SESSION)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_real_terminal_session(tui_session, tiny_hp, size):
    tmux("resize-window", "-t", SESSION, "-x", str(size[0]), "-y", str(size[1]))
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    text = wait_for(lambda s: "max_new_tokens · 6 tokens" in s)

    from minigpt.text.tokenizer import cl100k
    ids = cl100k().encode("hello")
    sd = random_book_state_dict(tiny_hp)
    for _ in range(6):
        ids.append(int(book_logits(sd, tiny_hp, ids)[-1].argmax()))
    top = torch.topk(torch.softmax(book_logits(sd, tiny_hp, ids)[-1], -1), 5)
    # The table's rows, read off the screen: the reference model's ids in its order, and
    # its probabilities as shown to 4 decimals (a last digit may round the other way).
    rows = candidate_rows(text)
    assert [rank for rank, *_ in rows] == [1, 2, 3, 4, 5], text
    assert [token_id for _, _, token_id, _ in rows] == top.indices.tolist()
    for (_, _, _, shown), prob in zip(rows, top.values.tolist()):
        assert abs(shown - prob) <= 6e-5, (shown, prob)

    to_candidates()
    send("Space")
    wait_for(lambda s: "step · 7 tokens" in s)
    send("BSpace")
    wait_for(lambda s: "undo · 6 tokens" in s)
    send("3")
    wait_for(lambda s: "picked · 7 tokens" in s)
    quit_explorer()


def test_bad_checkpoint_is_one_line_in_the_terminal(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    explorer(bad)
    text = wait_for(lambda s: "EXITED" in s)
    assert "EXITED 2" in text and "Traceback" not in text
    error_lines = [ln for ln in text.splitlines() if "minigpt-tui: error:" in ln]
    assert len(error_lines) == 1 and "bad.ckpt" in text.replace("\n", "")


def test_new_views_in_a_real_terminal(tui_session):
    """w, a with . and >, c, t and f2 at 80×24 in tmux: each view shows up, keys keep working."""
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    to_candidates()
    send("w")
    wait_for(lambda s: "why step 7 · next token" in s and "exp(H)" in s)
    send("w")
    send("a")
    wait_for(lambda s: "attention · step 7 · next token · layer 1/2 · head 1/4" in s)
    send(".")
    send(">")
    wait_for(lambda s: "layer 2/2 · head 2/4" in s)
    send("a")
    send("c")
    send("BSpace")
    wait_for(lambda s: "undo · 5 tokens" in s)
    send("3")
    wait_for(lambda s: "picked · 6 tokens" in s)
    send("t")
    wait_for(lambda s: "Branches · 1 abandoned" in s and "Σ log p" in s)
    send("Escape")
    wait_for(lambda s: "Branches ·" not in s and "space step" in s)
    send("F2")
    wait_for(lambda s: "Score my text" in s and "at least two tokens" in s)  # "hello": 1 token
    send("Escape")
    wait_for(lambda s: "Score my text" not in s)
    quit_explorer()


def test_held_space_bar_and_quick_undos(tui_session):
    """15 spaces 30 ms apart give 15 tokens, then idle; two quick undos, two fewer."""
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    to_candidates()
    for _ in range(15):
        send("Space")
        time.sleep(0.03)
    text = wait_for(lambda s: "step · 21 tokens" in s)
    assert "esc stop" not in text  # idle: the table's keys, not the running ones
    send("u")
    send("u")
    wait_for(lambda s: "undo · 19 tokens" in s)
    time.sleep(0.5)  # nothing queued behind them may still arrive
    assert "undo · 19 tokens" in screen() and "esc stop" not in screen()


KNOB_ROWS = {"temperature": "0", "top_k": "—", "top_p": "—", "max_new": "6", "seed": "1337",
             "rep_penalty": "1"}


def knob_rows(text: str) -> dict[str, str]:
    """The sidebar's knobs as shown: name → value."""
    knobs = {}
    for line in text.splitlines():
        cells = line.split("│")[0].split()
        if len(cells) >= 2 and cells[0] in KNOB_ROWS:
            knobs[cells[0]] = " ".join(cells[1:])
    return knobs


def prompt_line(text: str) -> str:
    return next(line for line in text.splitlines() if line.startswith("> "))


def test_a_hostile_paste_lands_in_the_prompt_once_and_in_order(tui_session, tmp_path):
    wait_for(lambda s: "type a prompt" in s)
    paste = tmp_path / "paste.txt"
    paste.write_bytes("农夫\x01\x07\x1b[31mRED\x1b[0m\t山泉 end".encode())
    tmux("load-buffer", str(paste))
    clean = "农夫RED 山泉 end"
    for times in (1, 2):
        tmux("paste-buffer", "-p", "-t", SESSION)  # bracketed, as terminals paste
        text = wait_for(lambda s: clean * times in prompt_line(s))
        time.sleep(0.3)  # a second copy of the same paste would land by now
        text = screen()
        assert prompt_line(text) == "> " + clean * times, prompt_line(text)
        assert knob_rows(text) == KNOB_ROWS  # nothing typed into a knob


def test_a_plain_paste_lands_once(tui_session, tmp_path):
    """The paste the hands-on pass saw doubled: a word, after typed text."""
    wait_for(lambda s: "type a prompt" in s)
    type_text("abc ")
    paste = tmp_path / "paste.txt"
    paste.write_text("XYZ")
    tmux("load-buffer", str(paste))
    tmux("paste-buffer", "-p", "-t", SESSION)
    wait_for(lambda s: "XYZ" in prompt_line(s))
    time.sleep(0.3)
    assert prompt_line(screen()) == "> abc XYZ"


def test_small_window_keeps_status_quit_and_candidates(tiny_ckpt):
    explorer(tiny_ckpt, "--temperature 0 --max-new-tokens 6 --device cpu", size=(120, 40))
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    to_candidates()
    send("w")
    send("a")
    wait_for(lambda s: "why step" in s and "attention ·" in s)
    tmux("resize-window", "-t", SESSION, "-x", "60", "-y", "20")
    text = wait_for(lambda s: "ctrl+q quit" in s and "max_new_tokens" in s
                    and len(candidate_rows(s)) >= 3)
    assert [rank for rank, *_ in candidate_rows(text)][:3] == [1, 2, 3]
    quit_explorer()


@pytest.mark.parametrize("session", ["/nonexistent_dir/s.jsonl", "fifo"])
def test_an_unusable_session_path_is_refused_at_start(tiny_ckpt, tmp_path, session):
    if session == "fifo":
        session = str(tmp_path / "fifo")
        os.mkfifo(session)
    explorer(tiny_ckpt, "--session", session)
    text = wait_for(lambda s: "EXITED" in s)
    assert "EXITED 2" in text and "minigpt-tui: error:" in text and "Traceback" not in text
    assert not Path("/nonexistent_dir").exists()


def test_no_replacement_character_on_screen_on_the_shipped_model():
    """Chinese byte pieces: live, finished, after undo and in the branch tree, the screen
    shows ‹e8 b6› escapes, never U+FFFD."""
    model = Path(__file__).parent.parent / "model" / "model.ckpt"
    explorer(model, "--device cpu --temperature 1.5 --max-new-tokens 120 --seed 3")
    wait_for(lambda s: "params" in s)
    type_text("东方树叶 ")
    send("Enter")
    seen = [wait_for(lambda s: "max_new_tokens · 120 tokens" in s)]
    to_candidates()
    for key, state in (("BSpace", "undo · 119 tokens"), ("BSpace", "undo · 118 tokens"),
                       ("BSpace", "undo · 117 tokens"), ("3", "picked · 118 tokens"),
                       ("BSpace", "undo · 117 tokens")):
        send(key)
        seen.append(wait_for(lambda s, state=state: state in s))
    send("t")
    seen.append(wait_for(lambda s: "Branches" in s and "Σ log p" in s))
    assert not any("\ufffd" in s for s in seen)
    assert any(ESCAPES.search(s) for s in seen), "no byte piece shown as an escape"
    send("Escape")
    quit_explorer()


def test_compare_in_a_real_terminal(tiny_ckpt, other_ckpt):
    """--compare at 80×24: B's column and KL/JS show, b flips the table, x lets B drive."""
    explorer(tiny_ckpt, f"--compare {other_ckpt} --temperature 0 --max-new-tokens 4 "
             "--device cpu")
    wait_for(lambda s: "type a prompt" in s and "A drives" in s)
    type_text("hello")
    send("Enter")
    text = wait_for(lambda s: "max_new_tokens · 4 tokens" in s)
    assert "KL(A‖B) " in text and " JS " in text
    header = next(line for line in text.splitlines() if "#" in line and "token" in line)
    assert header.split()[-2:] == ["A", "B"]
    to_candidates()
    send("b")
    wait_for(lambda s: any(line.split()[-2:] == ["B", "A"] for line in s.splitlines()
                           if "token" in line))
    send("b")
    send("x")
    wait_for(lambda s: "B drives" in s)
    send("Space")
    wait_for(lambda s: "step · 5 tokens" in s and "Traceback" not in s)
    quit_explorer()


def test_two_chat_turns_in_a_real_terminal(tmp_path):
    """An instruct model opens in chat mode: two typed messages, labelled, the template
    shown, the box empty after each send."""
    from hf_models import write_chat_model

    directory = write_chat_model(tmp_path / "chatml", "chatml")
    explorer(directory, "--temperature 0 --max-new-tokens 3 --device cpu --system 'be brief'")
    wait_for(lambda s: "chat: type a message" in s)
    type_text("hello")
    send("Enter")
    wait_for(lambda s: "max_new_tokens · 3 tokens" in s)
    type_text("the cat")
    send("Enter")
    text = wait_for(lambda s: "user › the cat" in s and "max_new_tokens · 3 tokens" in s
                    and s.count("assistant ›") == 2)
    assert "user › hello" in text and "<|im_start|>" in text and "Traceback" not in text
    assert "> a message to the assistant" in text  # the box is empty again
    quit_explorer()
