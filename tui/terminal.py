"""A last-resort terminal restore, for when Textual's own cannot finish in time.

On SIGHUP or SIGTERM the app exits normally, and Textual restores the terminal. But
with the terminal gone that restore can block for good, and on a loaded machine it can
be slow, so a watchdog ends the process. Before it does, it undoes what Textual turned
on (the same sequences Textual's driver writes on exit) and puts back the tty's modes,
so a shell that survives the hang-up is never left in the alternate screen, with mouse
reporting on or without echo.
"""

from __future__ import annotations

import os
import sys

try:
    import termios
except ImportError:  # Windows: no tty modes to restore
    termios = None

# Kitty keyboard protocol off, bracketed paste off, line wrap on, mouse reporting off,
# focus events off, the main screen back, the cursor shown.
RESET = (b"\x1b[<u\x1b[?2004l\x1b[?7h\x1b[?1000l\x1b[?1003l\x1b[?1015l\x1b[?1006l"
         b"\x1b[?1004l\x1b[?1049l\x1b[?25h")

_saved_modes: list | None = None


def remember_modes() -> None:
    """Keep the tty's modes as they are before the app takes the terminal."""
    global _saved_modes
    if termios is None:
        return
    try:
        _saved_modes = termios.tcgetattr(sys.stdin.fileno())
    except (termios.error, OSError, ValueError):
        _saved_modes = None


def force_restore() -> None:
    """Undo the app's terminal modes without waiting on anything: a write to a tty
    that hung up fails at once (EIO) rather than blocking."""
    try:
        os.write(sys.__stdout__.fileno(), RESET)
    except (OSError, ValueError, AttributeError):
        pass
    if termios is not None and _saved_modes is not None:
        try:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSANOW, _saved_modes)
        except (termios.error, OSError, ValueError):
            pass


def exit_now(code: int) -> None:
    """The watchdog's end: restore what can be restored, then leave at once."""
    force_restore()
    os._exit(code)
