"""Drive the real ``minigpt-tui`` in tmux (send-keys, capture-pane) and read the screen."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from reference import book_logits, random_book_state_dict

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
SESSION = "minigpt-tui-test"
# The app runs without COLUMNS/LINES: a tmux server started from a test runner inherits
# them (80×24), and Textual takes them over the real size of the pane.


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=False).stdout


def screen() -> str:
    return tmux("capture-pane", "-t", SESSION, "-p")


def wait_for(predicate, timeout=60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen()
        if predicate(text):
            return text
        time.sleep(0.2)
    raise AssertionError(f"screen never matched:\n{screen()}")


@pytest.fixture
def tui_session(tiny_ckpt):
    exe = Path(sys.executable).with_name("minigpt-tui")
    command = f"{exe} {tiny_ckpt} --temperature 0 --max-new-tokens 6 --device cpu"
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", "80", "-y", "24",
         f"env -u COLUMNS -u LINES TERM=xterm-256color {command}; echo EXITED $?; sleep 30")
    yield
    tmux("kill-session", "-t", SESSION)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_real_terminal_session(tui_session, tiny_hp, size):
    tmux("resize-window", "-t", SESSION, "-x", str(size[0]), "-y", str(size[1]))
    wait_for(lambda s: "type a prompt" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    text = wait_for(lambda s: "max_new_tokens · 6 tokens" in s)

    from minigpt.tokenizer import cl100k
    tok = cl100k()
    sd = random_book_state_dict(tiny_hp)
    ids = tok.encode("hello")
    for _ in range(6):
        ids.append(int(book_logits(sd, tiny_hp, ids)[-1].argmax()))
    next_top = torch.topk(torch.softmax(book_logits(sd, tiny_hp, ids)[-1], -1), 5)
    # the next token's candidates, with the reference model's ids and probabilities
    for token_id, prob in zip(next_top.indices.tolist(), next_top.values.tolist()):
        assert f"{token_id}" in text and f"{prob:.4f}" in text

    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)
    tmux("send-keys", "-t", SESSION, "Space")
    wait_for(lambda s: "step · 7 tokens" in s)
    tmux("send-keys", "-t", SESSION, "BSpace")
    wait_for(lambda s: "undo · 6 tokens" in s)
    tmux("send-keys", "-t", SESSION, "3")
    text = wait_for(lambda s: "picked · 7 tokens" in s)
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)


def start(command: str, size=(80, 24)) -> None:
    tmux("kill-session", "-t", SESSION)
    tmux("new-session", "-d", "-s", SESSION, "-x", str(size[0]), "-y", str(size[1]),
         f"env -u COLUMNS -u LINES TERM=xterm-256color {command}; echo EXITED $? AT $(date +%s.%N); sleep 30")


@pytest.fixture
def long_run(tiny_ckpt, tmp_path):
    exe = Path(sys.executable).with_name("minigpt-tui")
    start(f"{exe} {tiny_ckpt} --temperature 1 --max-new-tokens 100000 --device cpu "
          f"--session {tmp_path / 'session.jsonl'}")
    wait_for(lambda s: "type a prompt" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "tok/s" in s)
    yield tmp_path / "session.jsonl"
    tmux("kill-session", "-t", SESSION)


def test_ctrl_q_mid_generation_exits_within_half_a_second(long_run):
    started = time.time()
    tmux("send-keys", "-t", SESSION, "C-q")
    text = wait_for(lambda s: "EXITED 0" in s, timeout=10)
    exited = float(text.split("EXITED 0 AT")[1].split()[0])  # the shell's clock, not our polling
    assert exited - started < 0.5, f"{exited - started:.2f} s"


def test_resizing_mid_generation_keeps_running_and_keeps_text(long_run):
    for x, y in ((40, 12), (60, 16), (40, 12), (100, 30)):
        tmux("resize-window", "-t", SESSION, "-x", str(x), "-y", str(y))
        time.sleep(0.3)
        assert "EXITED" not in screen() and "Traceback" not in screen()
    tmux("send-keys", "-t", SESSION, "Escape")  # stop
    text = wait_for(lambda s: "stopped" in s)
    assert "hello" in text
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)
    import json
    record = json.loads(long_run.read_text(encoding="utf-8").splitlines()[-1])
    assert record["prompt"] == "hello" and len(record["tokens"]) > 0


def test_bad_checkpoint_is_one_line_in_the_terminal(tmp_path):
    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(b"\x00not a checkpoint" * 10)
    exe = Path(sys.executable).with_name("minigpt-tui")
    start(f"{exe} {bad}")
    text = wait_for(lambda s: "EXITED" in s)
    assert "EXITED 2" in text and "Traceback" not in text
    error_lines = [ln for ln in text.splitlines() if "minigpt-tui: error:" in ln]
    assert len(error_lines) == 1 and "bad.ckpt" in text.replace("\n", "")
    tmux("kill-session", "-t", SESSION)


def test_new_views_in_a_real_terminal(tui_session):
    """w, a with . and >, c, t and f2 at 80×24 in tmux: each view shows up, keys keep working."""
    wait_for(lambda s: "type a prompt" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)
    tmux("send-keys", "-t", SESSION, "w")
    wait_for(lambda s: "why step 7 · next token" in s and "exp(H)" in s)
    tmux("send-keys", "-t", SESSION, "w")
    tmux("send-keys", "-t", SESSION, "a")
    wait_for(lambda s: "attention · step 7 · next token · layer 1/2 · head 1/4" in s)
    tmux("send-keys", "-t", SESSION, ".")
    tmux("send-keys", "-t", SESSION, ">")
    wait_for(lambda s: "layer 2/2 · head 2/4" in s)
    tmux("send-keys", "-t", SESSION, "a")
    tmux("send-keys", "-t", SESSION, "c")
    tmux("send-keys", "-t", SESSION, "BSpace")
    wait_for(lambda s: "undo · 5 tokens" in s)
    tmux("send-keys", "-t", SESSION, "3")
    wait_for(lambda s: "picked · 6 tokens" in s)
    tmux("send-keys", "-t", SESSION, "t")
    wait_for(lambda s: "Branches · 1 abandoned" in s and "Σ log p" in s)
    tmux("send-keys", "-t", SESSION, "Escape")
    tmux("send-keys", "-t", SESSION, "F2")
    wait_for(lambda s: "Score my text" in s and "at least two tokens" in s)  # "hello": 1 token
    tmux("send-keys", "-t", SESSION, "Escape")
    wait_for(lambda s: "Score my text" not in s)
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)


def ui_pid() -> int:
    return int(tmux("display", "-p", "-t", SESSION, "#{pane_pid}").strip())


def explorer_pid() -> int:
    """The minigpt-tui process (the pane's shell runs it as a child)."""
    shell = ui_pid()
    out = subprocess.run(["pgrep", "-P", str(shell), "-f", "minigpt-tui"], capture_output=True,
                         text=True).stdout.split()
    return int(out[0])


def engine_pid(ui: int) -> int:
    """The engine process: the explorer's child that maps libtorch."""
    children = subprocess.run(["pgrep", "-P", str(ui)], capture_output=True,
                              text=True).stdout.split()
    for child in children:
        if "libtorch" in Path(f"/proc/{child}/maps").read_text():
            return int(child)
    raise AssertionError("no engine process")


def test_first_frame_comes_before_torch_could_import(tiny_ckpt):
    """The explorer draws before torch is even imported; torch lives in a child only."""
    torch_import = subprocess.run(
        [sys.executable, "-c", "import time; t = time.perf_counter(); import torch; "
                               "print(time.perf_counter() - t)"],
        capture_output=True, text=True, check=True)
    import_seconds = float(torch_import.stdout.split()[-1])
    exe = Path(sys.executable).with_name("minigpt-tui")
    started = time.monotonic()
    start(f"{exe} {tiny_ckpt} --device cpu")
    wait_for(lambda s: "minigpt-tui ·" in s, timeout=30)
    first_frame = time.monotonic() - started
    assert first_frame < import_seconds, f"{first_frame:.2f} s vs import torch {import_seconds:.2f} s"
    wait_for(lambda s: "params" in s)
    ui = explorer_pid()
    assert "libtorch" not in Path(f"/proc/{ui}/maps").read_text()
    engine_pid(ui)  # one child maps it
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)


def test_held_space_bar_and_quick_undos(tui_session):
    """15 spaces 30 ms apart give 15 tokens, then idle; two quick undos, two fewer."""
    wait_for(lambda s: "type a prompt" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)
    for _ in range(15):
        tmux("send-keys", "-t", SESSION, "Space")
        time.sleep(0.03)
    text = wait_for(lambda s: "step · 21 tokens" in s)
    assert "esc stop" not in text  # idle: the table's keys, not the running ones
    tmux("send-keys", "-t", SESSION, "u")
    tmux("send-keys", "-t", SESSION, "u")
    text = wait_for(lambda s: "undo · 19 tokens" in s)
    time.sleep(0.5)
    assert "undo · 19 tokens" in screen() and "esc stop" not in screen()


def test_killed_engine_leaves_the_explorer_up_and_r_restarts(long_run):
    ui = explorer_pid()
    os.kill(engine_pid(ui), signal.SIGKILL)
    text = wait_for(lambda s: "engine stopped: killed by signal 9" in s)
    assert "EXITED" not in text and "hello" in text
    tmux("send-keys", "-t", SESSION, "r")
    wait_for(lambda s: "engine restarted" in s)
    tmux("send-keys", "-t", SESSION, "Space")
    wait_for(lambda s: "step · " in s)
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "pty closed"])
def test_hang_up_saves_the_running_turn_and_restores_the_terminal(long_run, how):
    ui = explorer_pid()
    engine = engine_pid(ui)
    time.sleep(0.5)
    if how == "pty closed":  # an SSH drop: the terminal goes away and SIGHUP follows
        tmux("kill-session", "-t", SESSION)
    else:
        os.kill(ui, getattr(signal, how))
        text = wait_for(lambda s: "EXITED" in s, timeout=10)
        assert "Traceback" not in text
        modes = tmux("display", "-p", "-t", SESSION, "#{alternate_on} #{mouse_any_flag}")
        assert modes.split() == ["0", "0"]  # no alt-screen, no mouse reporting left on
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (Path(f"/proc/{engine}").exists()
                                           or Path(f"/proc/{ui}").exists()):
        time.sleep(0.05)
    assert not Path(f"/proc/{ui}").exists(), "the explorer did not exit"
    assert not Path(f"/proc/{engine}").exists(), "the engine outlived the explorer"
    import json
    record = json.loads(long_run.read_text(encoding="utf-8").splitlines()[-1])
    assert record["prompt"] == "hello" and len(record["tokens"]) > 0


def test_a_hostile_paste_lands_in_the_prompt_in_order(tui_session, tmp_path):
    wait_for(lambda s: "type a prompt" in s)
    paste = tmp_path / "paste.txt"
    paste.write_bytes("农夫\x01\x07\x1b[31mRED\x1b[0m\t山泉 end".encode())
    tmux("load-buffer", str(paste))
    for _ in range(2):
        tmux("paste-buffer", "-p", "-t", SESSION)  # bracketed, as terminals paste
        time.sleep(0.3)
    text = wait_for(lambda s: "农夫RED 山泉 end农夫RED 山泉 end" in s)
    assert "temperature 0 " in text.replace("  ", " ") or "temperature0" in text.replace(" ", "")
    assert "RED 山泉 end" not in text.split("\n")[1]  # nothing typed into a knob


def test_small_window_keeps_status_quit_and_candidates(tiny_ckpt):
    exe = Path(sys.executable).with_name("minigpt-tui")
    start(f"{exe} {tiny_ckpt} --temperature 0 --max-new-tokens 6 --device cpu", size=(120, 40))
    wait_for(lambda s: "type a prompt" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    wait_for(lambda s: "max_new_tokens · 6 tokens" in s)
    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)  # ESC then a key at once reads as alt+key
    tmux("send-keys", "-t", SESSION, "w")
    tmux("send-keys", "-t", SESSION, "a")
    wait_for(lambda s: "why step" in s and "attention ·" in s)
    tmux("resize-window", "-t", SESSION, "-x", "60", "-y", "20")
    text = wait_for(lambda s: "ctrl+q quit" in s and "max_new_tokens" in s)
    rows = [line for line in text.splitlines() if line.strip()[:2] in ("1 ", "2 ", "3 ")]
    assert len(rows) >= 3, text
    tmux("send-keys", "-t", SESSION, "C-q")


@pytest.mark.parametrize("session", ["/nonexistent_dir/s.jsonl", "fifo"])
def test_an_unusable_session_path_is_refused_at_start(tiny_ckpt, tmp_path, session):
    if session == "fifo":
        session = str(tmp_path / "fifo")
        os.mkfifo(session)
    exe = Path(sys.executable).with_name("minigpt-tui")
    start(f"{exe} {tiny_ckpt} --session {session}")
    text = wait_for(lambda s: "EXITED" in s)
    assert "EXITED 2" in text and "minigpt-tui: error:" in text and "Traceback" not in text
    assert not Path("/nonexistent_dir").exists()


def test_no_replacement_character_on_screen_on_the_shipped_model():
    """Chinese byte pieces: live, finished, after undo and in the branch tree, the screen
    shows ‹e8 b6› escapes, never U+FFFD."""
    exe = Path(sys.executable).with_name("minigpt-tui")
    model = Path(__file__).parent.parent / "model" / "model.ckpt"
    start(f"{exe} {model} --device cpu --temperature 1.5 --max-new-tokens 120 --seed 3")
    wait_for(lambda s: "params" in s)
    tmux("send-keys", "-t", SESSION, "-l", "东方树叶 ")
    tmux("send-keys", "-t", SESSION, "Enter")
    seen = [wait_for(lambda s: "max_new_tokens · 120 tokens" in s)]
    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)
    for key in ("BSpace", "BSpace", "BSpace", "3", "BSpace"):
        tmux("send-keys", "-t", SESSION, key)
        time.sleep(0.3)
        seen.append(screen())
    tmux("send-keys", "-t", SESSION, "t")
    seen.append(wait_for(lambda s: "Branches" in s))
    assert not any("\ufffd" in s for s in seen)
    tmux("send-keys", "-t", SESSION, "Escape")
    tmux("send-keys", "-t", SESSION, "C-q")


def test_compare_in_a_real_terminal(tiny_ckpt, other_ckpt):
    """--compare at 80×24: B's column and KL/JS show, b flips the table, x lets B drive."""
    exe = Path(sys.executable).with_name("minigpt-tui")
    start(f"{exe} {tiny_ckpt} --compare {other_ckpt} --temperature 0 --max-new-tokens 4 "
          "--device cpu")
    wait_for(lambda s: "type a prompt" in s and "A drives" in s)
    tmux("send-keys", "-t", SESSION, "-l", "hello")
    tmux("send-keys", "-t", SESSION, "Enter")
    text = wait_for(lambda s: "max_new_tokens · 4 tokens" in s)
    assert "KL " in text and " JS " in text
    header = next(line for line in text.splitlines() if "#" in line and "token" in line)
    assert header.split()[-2:] == ["A", "B"]
    tmux("send-keys", "-t", SESSION, "Escape")
    time.sleep(0.3)
    tmux("send-keys", "-t", SESSION, "b")
    wait_for(lambda s: any(line.split()[-2:] == ["B", "A"] for line in s.splitlines()
                           if "token" in line))
    tmux("send-keys", "-t", SESSION, "b")
    tmux("send-keys", "-t", SESSION, "x")
    wait_for(lambda s: "B drives" in s)
    tmux("send-keys", "-t", SESSION, "Space")
    wait_for(lambda s: "step · 5 tokens" in s and "Traceback" not in s)
    tmux("send-keys", "-t", SESSION, "C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=10)
    tmux("kill-session", "-t", SESSION)
