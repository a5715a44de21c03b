"""Leaving the explorer: ctrl+q, a hang-up (SIGHUP from an SSH drop, SIGTERM), and the
turns a session file refused, which go elsewhere rather than nowhere."""

from __future__ import annotations

import threading

from minigpt.host.session import rescue_unsaved

from . import terminal

HANG_UP_GRACE_SECONDS = 3.0  # for Textual to restore the terminal after SIGHUP/SIGTERM


class LeavingMixin:
    """For ``MiniGPTApp``."""

    def hang_up(self, code: int) -> None:
        """SIGHUP (an SSH drop) or SIGTERM: save the turn, stop the engine, leave."""
        self.hung_up = True  # replies still in flight change nothing: one record, as shown
        self.client.cancel_all()
        # A run cut short is "stopped"; a turn that had ended keeps its reason (a second
        # record said "stopped" over "end of text").
        self.remember_turn("stopped" if self.running else None)
        self.client.stop()
        # With the terminal gone, restoring it can block for good (Textual's writer
        # thread waits on a tty that no longer exists), and a loaded machine can take a
        # second or two: everything is saved, so the process ends anyway, its terminal
        # modes undone by hand.
        watchdog = threading.Timer(HANG_UP_GRACE_SECONDS, terminal.exit_now, args=(code,))
        watchdog.daemon = True
        watchdog.start()
        self.rescue_turns()
        self.exit(return_code=code)

    async def action_quit(self) -> None:
        self.client.cancel_all()  # a run stops before its next token
        self.remember_turn()  # save the current turn if stepping changed it
        self.exit(return_code=self.rescue_turns())

    def rescue_turns(self) -> int:
        """On the way out: turns the session file refused go to a file of their own, said
        after the screen closes; the exit status says they were not where asked (1)."""
        recorder = self.recorder
        if recorder is None or not recorder.unsaved:
            return 0
        count = len(recorder.unsaved)
        turns = "turn" if count == 1 else "turns"
        try:
            rescued = rescue_unsaved(recorder)
        except OSError as exc:
            self.exit_note = (f"{count} {turns} could not be saved to {recorder.path} nor "
                              f"elsewhere ({exc.strerror or exc}): lost")
            return 1
        self.exit_note = (f"{count} {turns} could not be saved to {recorder.path}: written "
                          f"to {rescued}")
        return 1

    def on_unmount(self) -> None:
        if self.owns_client:
            self.client.stop()
        else:
            self.client.cancel_all()  # a shared engine must not keep running our op
