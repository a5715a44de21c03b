"""Drive the real ``minigpt-tui`` in tmux (send-keys, capture-pane) and read the screen.

Every wait is for a state the screen shows (a hint set, a status word, a token count
that grows), never for a fixed time or for text whose presence depends on how fast
the engine is. The tests get a tmux server of their own: the user's is never touched,
and ``exit-empty off`` keeps it up between sessions (a server that exits when one test
kills the last session can refuse the next test's ``new-session``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

SOCKET = f"minigpt-tests-{os.getpid()}"
SESSION = "minigpt-tui-test"
EXPLORER = Path(sys.executable).with_name("minigpt-tui")
needs_tmux = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def tmux_run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args],
                          capture_output=True, text=True, check=False)


def tmux(*args: str) -> str:
    return tmux_run(*args).stdout


@pytest.fixture(scope="module", autouse=True)
def tmux_server():
    """One server for the module's tests, gone after them."""
    if shutil.which("tmux") is None:
        yield
        return
    tmux_run("start-server", ";", "set-option", "-s", "exit-empty", "off")
    yield
    tmux_run("kill-server")


def screen() -> str:
    return tmux("capture-pane", "-t", SESSION, "-p")


def wait_for(predicate, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = screen()
        if predicate(text):
            return text
        time.sleep(0.05)
    raise AssertionError(f"screen never matched:\n{screen()}")


def start(command: str, size=(80, 24)) -> None:
    """A fresh session running ``command``; the pane then prints ``EXITED <code>``.
    The app runs without COLUMNS/LINES: Textual would take them over the pane's size."""
    tmux("kill-session", "-t", SESSION)
    line = (f"env -u COLUMNS -u LINES TERM=xterm-256color {command}; echo EXITED $?; "
            "sleep 60")
    for _ in range(5):
        made = tmux_run("new-session", "-d", "-s", SESSION, "-x", str(size[0]),
                        "-y", str(size[1]), line)
        if made.returncode == 0:
            return
        time.sleep(0.2)
    raise AssertionError(f"tmux new-session failed: {made.stderr}")


def explorer(checkpoint, *flags: str, size=(80, 24)) -> None:
    start(" ".join([str(EXPLORER), str(checkpoint), *flags]), size)


def send(*keys: str) -> None:
    tmux("send-keys", "-t", SESSION, *keys)


def type_text(text: str) -> None:
    tmux("send-keys", "-t", SESSION, "-l", text)


def footer(text: str) -> str:
    return text.rstrip("\n").splitlines()[-1] if text.strip() else ""


def to_candidates() -> str:
    """Escape from the prompt, then wait until the footer shows the candidates' keys:
    a key sent sooner would reach Textual as alt+key."""
    send("Escape")
    return wait_for(lambda s: "space step" in footer(s))


def status_count(text: str, word: str = "generating") -> int | None:
    """N from the status line's 'generating · N tokens', if it is on screen."""
    m = re.search(rf"{word} · (\d+) tokens?", text)
    return int(m[1]) if m else None


def wait_for_more_tokens(than: int, timeout: float = 60.0) -> int:
    """Wait until the status line counts more tokens generated than ``than``."""
    text = wait_for(lambda s: (status_count(s) or 0) > than, timeout)
    return status_count(text)


CANDIDATE_ROW = re.compile(r"^[\s│█▌]*([1-5])\s+(?:▶\s+)?(.*?)\s+(\d+)\s+(\d\.\d{4})\s*[▏▎▍▌▋▊▉█▂ ]*$")


def candidate_rows(text: str) -> list[tuple[int, str, int, float]]:
    """(rank, token, id, probability) of each candidates row on screen."""
    rows = []
    for line in text.splitlines():
        m = CANDIDATE_ROW.search(line)
        if m:
            rows.append((int(m[1]), m[2], int(m[3]), float(m[4])))
    return rows


def quit_explorer() -> None:
    send("C-q")
    wait_for(lambda s: "EXITED 0" in s, timeout=20)


def pane_pid() -> int:
    return int(tmux("display", "-p", "-t", SESSION, "#{pane_pid}").strip())


def explorer_pid() -> int:
    """The minigpt-tui process (the pane's shell runs it as a child)."""
    out = subprocess.run(["pgrep", "-P", str(pane_pid()), "-f", "minigpt-tui"],
                         capture_output=True, text=True).stdout.split()
    return int(out[0])


def engine_pid(ui: int) -> int:
    """The engine process: the explorer's child that maps libtorch."""
    children = subprocess.run(["pgrep", "-P", str(ui)], capture_output=True,
                              text=True).stdout.split()
    for child in children:
        if "libtorch" in Path(f"/proc/{child}/maps").read_text():
            return int(child)
    raise AssertionError("no engine process")
