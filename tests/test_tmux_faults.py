"""The real ``minigpt-tui`` in tmux through faults mid-run: quit, resizes, a killed
engine, hang-ups. "Mid-run" is a state, not a time: a run of ``ENDLESS`` tokens whose
token count the status line shows growing (times are measured in bench_tui.py)."""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from conftest import ENDLESS
from tmux_driver import (SESSION, engine_pid, explorer, explorer_pid, needs_tmux,
                         quit_explorer, screen, send, status_count, tmux, tmux_server,
                         type_text, wait_for, wait_for_more_tokens)

pytestmark = needs_tmux
__all__ = ["tmux_server"]  # the module's tmux server (a fixture)


@pytest.fixture
def long_run(tiny_ckpt, tmp_path):
    """A run in progress: its token count is on screen and growing."""
    explorer(tiny_ckpt, f"--temperature 1 --max-new-tokens {ENDLESS} --device cpu "
             f"--session {tmp_path / 'session.jsonl'}")
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    wait_for_more_tokens(wait_for_more_tokens(0))
    yield tmp_path / "session.jsonl"
    tmux("kill-session", "-t", SESSION)


def last_record(session: Path) -> dict:
    return json.loads(session.read_text(encoding="utf-8").splitlines()[-1])


def test_ctrl_q_mid_generation_exits_and_saves(long_run):
    ui = explorer_pid()
    engine = engine_pid(ui)
    quit_explorer()
    assert not Path(f"/proc/{ui}").exists() and not Path(f"/proc/{engine}").exists()
    record = last_record(long_run)
    assert record["prompt"] == "hello" and 0 < len(record["tokens"]) < ENDLESS


def test_resizing_mid_generation_keeps_running_and_keeps_text(long_run):
    seen = status_count(screen()) or 0
    for x, y in ((40, 12), (60, 16), (40, 12), (100, 30)):
        tmux("resize-window", "-t", SESSION, "-x", str(x), "-y", str(y))
        # The same run, still going, drawn whole at the new size (a capture can land
        # between the status line's redraw and the prompt row's).
        text = wait_for(lambda s, seen=seen: (status_count(s) or 0) > seen and "\n> hello" in s)
        seen = status_count(text)
        assert "EXITED" not in text and "Traceback" not in text
    send("Escape")  # stop
    text = wait_for(lambda s: status_count(s, "stopped") is not None)  # the line drawn whole
    stopped = status_count(text, "stopped")
    assert stopped >= seen and "\n> hello" in text
    quit_explorer()
    record = last_record(long_run)
    assert record["prompt"] == "hello" and len(record["tokens"]) == stopped


def test_the_explorer_process_never_maps_torch(tiny_ckpt):
    """torch lives in the engine process only (that the first frame needs no engine is
    tested with Pilot; how soon it comes is bench_tui.py's)."""
    explorer(tiny_ckpt, "--device cpu")
    wait_for(lambda s: "params" in s)
    ui = explorer_pid()
    assert "libtorch" not in Path(f"/proc/{ui}/maps").read_text()
    engine_pid(ui)  # one child maps it
    quit_explorer()


def test_killed_engine_leaves_the_explorer_up_and_r_restarts(long_run):
    ui = explorer_pid()
    os.kill(engine_pid(ui), signal.SIGKILL)
    text = wait_for(lambda s: "engine stopped: killed by signal 9" in s)
    assert "EXITED" not in text and "\n> hello" in text
    send("r")
    wait_for(lambda s: "engine restarted" in s)
    send("Space")
    wait_for(lambda s: "step · " in s)
    quit_explorer()


@pytest.mark.parametrize("how", ["SIGHUP", "SIGTERM", "pty closed"])
def test_hang_up_saves_the_running_turn_and_restores_the_terminal(long_run, how):
    ui = explorer_pid()
    engine = engine_pid(ui)
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
    record = last_record(long_run)
    assert record["prompt"] == "hello" and len(record["tokens"]) > 0
    # One record of the turn: replies still in flight after the signal wrote a second.
    assert len(long_run.read_text(encoding="utf-8").splitlines()) == 1


def test_a_hang_up_after_a_finished_turn_keeps_its_record(tiny_ckpt, tmp_path):
    """The hands-on pass: SIGHUP after a turn had ended appended a second record saying
    "stopped" over its own reason."""
    session = tmp_path / "session.jsonl"
    explorer(tiny_ckpt, f"--temperature 0 --max-new-tokens 5 --device cpu --session {session}")
    wait_for(lambda s: "type a prompt" in s)
    type_text("hello")
    send("Enter")
    wait_for(lambda s: "max_new_tokens · 5 tokens" in s)
    os.kill(explorer_pid(), signal.SIGHUP)
    wait_for(lambda s: "EXITED" in s, timeout=10)
    [record] = [json.loads(line) for line in session.read_text().splitlines()]
    assert record["reason"] == "max_new_tokens" and len(record["tokens"]) == 5
