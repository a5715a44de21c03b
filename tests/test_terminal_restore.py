"""The hang-up watchdog's last resort: when Textual cannot restore the terminal in time
(a loaded machine, or a tty that went away), the process still leaves the terminal as
it found it: main screen, no mouse reporting, the tty's own modes."""

import os
import pty
import subprocess
import sys
import termios
import time

from tui.terminal import RESET

CHILD = """
import sys, termios, tty
from tui import terminal
terminal.remember_modes()
sys.stdout.buffer.write(b"\\x1b[?1049h\\x1b[?1000h"); sys.stdout.flush()  # as the app does
tty.setraw(sys.stdin.fileno())
terminal.exit_now(7)
"""


def test_exit_now_undoes_the_screen_modes_and_puts_the_tty_back():
    leader, follower = pty.openpty()
    before = termios.tcgetattr(follower)
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=follower, stdout=follower,
                             stderr=subprocess.PIPE)
    output = b""
    deadline = time.monotonic() + 30
    while child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.set_blocking(leader, False)
    try:
        while chunk := os.read(leader, 4096):
            output += chunk
    except (BlockingIOError, OSError):
        pass
    assert child.wait(timeout=5) == 7, child.stderr.read()
    assert output.endswith(RESET)  # written after the app's modes, so they are undone
    for mode in (b"?1049l", b"?1000l", b"?1006l", b"?25h"):
        assert mode in RESET
    after = termios.tcgetattr(follower)
    assert after[3] & termios.ECHO and after[3] & termios.ICANON  # not left raw
    assert after == before
    os.close(leader)
    os.close(follower)
