"""What the explorer does while it waits on the engine: ops typed before the model is
ready (sent once it is, as if typed then), an engine that stops answering, and ``r``,
which starts a new one and restores the turn exactly.

While an op runs, the engine says ``Alive`` about once a second. When nothing has come
for ``unresponsive_after`` seconds (a SIGSTOPped process, a hung driver), the status
says so; escape stops waiting, and ``r`` restarts the engine with the turn as it was.
"""

from __future__ import annotations

import time

from minigpt.host import protocol as p

UNRESPONSIVE_SECONDS = 5.0  # five missed heartbeats


class WaitingMixin:
    """For ``MiniGPTApp``."""

    unresponsive = False  # ops are out and the engine has said nothing for a while
    unresponsive_after = UNRESPONSIVE_SECONDS
    last_heard = 0.0  # monotonic time of the engine's last reply

    def watch_engine(self) -> None:
        """Called once mounted: check the engine's liveness every second."""
        self.last_heard = time.monotonic()
        self.set_interval(1.0, self.check_engine)

    def heard(self) -> None:
        """A reply came: the engine is alive."""
        self.last_heard = time.monotonic()
        if self.unresponsive:
            self.unresponsive = False
            self.update_hints()
            self.set_status("the engine answers again")

    def waiting_for_engine(self) -> bool:
        return self.engine_state in ("ready", "loading") and self.last_done < self.client.seq

    def check_engine(self) -> None:
        silent = time.monotonic() - self.last_heard
        if not self.waiting_for_engine() or silent < self.unresponsive_after:
            return
        if self.unresponsive:
            if self.running:  # the count goes on (once escape stopped waiting, it rests)
                self.say_silent(silent)
            return
        self.unresponsive = True
        if self.focused is None or self.focused.id == "prompt":
            self.query_one("#candidates").focus()  # so that r restarts, not types
        self.update_hints()
        self.show_error(self.silent_text(silent))  # a toast once, then the count goes on

    def say_silent(self, silent: float) -> None:
        status = self.query_one("#status")
        status.add_class("error")
        status.update(f"✗ {self.silent_text(silent)}")

    @staticmethod
    def silent_text(silent: float) -> str:
        return (f"engine silent {silent:.0f} s — r restarts it, esc stops waiting (stuck, or "
                "in one long call; the turn comes back)")  # the keys first: 80 columns

    def stop_waiting(self) -> None:
        """Escape with the engine silent: the explorer stops waiting for it (its answers,
        if it ever wakes, still land)."""
        self.running = False
        self.query_one("#candidates").focus()
        self.show_error("stopped waiting: the engine is not answering — r restarts it")

    def must_wait(self) -> bool:
        """Ops typed now wait: the model is not ready, a reopened session's last turn is
        not back yet, or earlier typed ops still wait (their order is kept)."""
        return self.info is None or bool(self.deferred) or \
            (self.replay_seq > self.last_done and self.engine_state == "ready")

    def send_deferred_when_ready(self) -> None:
        """What was typed while the model loaded, once it is ready and a reopened session's
        last turn is back (or its replay failed, or the engine died): as if typed now — a
        chat message in chat mode."""
        if not self.deferred or self.info is None or self.replay_seq > self.last_done:
            return
        deferred, self.deferred = self.deferred, []
        for op_type, fields in deferred:
            self.submit(op_type, **fields)
        self.running = self.last_done < self.last_engine_seq

    def drop_deferred(self) -> None:
        """Escape while typed ops wait for the model: they will not run."""
        self.deferred.clear()
        self.running = self.last_done < self.last_engine_seq
        self.set_status("the prompt typed while loading will not run (escape) · enter sends "
                        "it")

    def action_restart_engine(self) -> None:
        if self.unresponsive:  # stuck: it goes (SIGKILL stops a stopped process too)
            self.client.stop(timeout=0.2)
            self.unresponsive, self.engine_state = False, "stopped"
            self.last_done = self.client.seq  # nothing queued will be answered
            self.running = False
        served = self.info is not None and self.info.backend == "served"
        if served and self.engine_state == "ready" and not self.running:
            # A server that went away and came back: the turn goes on from its ids (the
            # engine holds them; the server's cache fills again with the next step).
            self.set_status("resuming the turn on the server …")
        elif self.engine_state not in ("stopped", "failed"):
            self.set_status("the engine is running (r restarts it only after it stopped)")
            return
        else:
            self.client.start()
            self.open_model()
            self.set_status("restarting the engine …")
        if self.turn.prompt:
            self.restoring = True
            self.last_engine_seq = self.send(p.Restore, prompt=self.turn.prompt,
                                             steps=tuple(self.history),
                                             sampler_state=self.sampler_state,
                                             settings=self.settings,
                                             messages=self.turn.messages) or 0
            self.op_settings[self.last_engine_seq] = self.settings
            if self.driver != "A":  # a new engine starts with A driving
                self.submit(p.SwapModels)
