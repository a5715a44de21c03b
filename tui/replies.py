"""What the explorer does with each reply from the engine process.

Replies arrive in op order, batched (``EngineReplies``). The explorer's state —
loading, idle, running, stopped — follows from them alone: an engine op is
running until its ``OpDone`` has come back, and every op gets one.
"""

from __future__ import annotations

import time
from functools import cached_property

from minigpt.host import protocol as p
from minigpt.host.session import TurnState, branch_records

from .versus import last_step_divergence
from .messages import EngineExited, EngineReplies
from .widgets import CandidatesTable, Transcript

# While tokens stream, the candidates table and the status line redraw at most this
# often: a DataTable redraw costs the UI thread more than the rest of a frame, and
# nobody reads five rows or a token count at 30 frames/s. The transcript keeps the
# full frame rate; both catch up when the run ends.
TABLE_SECONDS = 1 / 8
# Single steps, picks and undos are written to the session file once the keys pause this
# long (a record per key of a held space bar would write the turn 15 times).
SAVE_AFTER_SECONDS = 1.0


def tokens(n: int) -> str:
    """'1 token', '12 tokens'."""
    return f"{n} token" if n == 1 else f"{n} tokens"


def human_count(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K" if n >= 1e3 else str(n)


class RepliesMixin:
    """Mixed into the app: one handler per reply type."""

    def on_engine_replies(self, message: EngineReplies) -> None:
        if self.hung_up or not self.query("#header"):
            return  # leaving: the widgets these replies would update are gone
        self.heard()
        handlers = self.reply_handlers
        for reply in message.replies:
            if reply.seq < self.first_seq:
                continue  # an earlier app's op (tests share one engine process)
            handler = handlers.get(type(reply))
            if handler is not None:
                handler(reply)

    @cached_property
    def reply_handlers(self) -> dict:
        return {
            p.Loading: self.got_loading, p.Ready: self.got_ready,
            p.LoadFailed: self.got_load_failed, p.TurnStarted: self.got_turn_started,
            p.StepsAdded: self.got_steps_added,
            p.StepsUndone: self.got_steps_undone, p.RunFinished: self.got_run_finished,
            p.RunFailed: self.got_run_failed, p.WhyAnswered: self.got_why,
            p.Completed: self.got_completed, p.Attended: self.got_attended,
            p.Scored: self.got_scored, p.Peeked: self.got_peeked,
            p.Prefilling: self.got_prefilling,
            p.BranchesReplayed: self.got_branches_replayed, p.OpDone: self.got_op_done,
        }

    # --- the engine's life ---------------------------------------------------------

    def got_loading(self, reply: p.Loading) -> None:
        self.loading_stage = reply.stage
        self.show_header()
        queued = " · enter runs when it is ready" if self.running else ""
        self.set_status(f"loading model … ({reply.stage}){queued}")

    def got_ready(self, reply: p.Ready) -> None:
        self.info, self.other_info = reply.info, reply.other
        self.engine_state = "ready"
        self.show_header()
        if self.chat_mode:
            self.query_one("#prompt").placeholder = "a message to the assistant"
        refused_chat = self.check_chat_request()
        if self.restoring:
            self.restoring = False
            served = self.info is not None and self.info.backend == "served"
            self.set_status("the server answers · the turn goes on from its ids" if served
                            else "engine restarted · the turn is back where it was")
        elif self.skipped_lines:
            lines = "line" if self.skipped_lines == 1 else "lines"
            self.show_error(f"{self.skipped_lines} unreadable {lines} of the session file "
                            "skipped (a crash mid-write?); the rest is here")
        elif refused_chat:
            self.show_error(refused_chat)
        elif self.running:
            pass  # the queued prompt's run says how it goes
        elif self.opening_note:
            self.set_status(f"ready · {self.opening_note}")
        elif self.chat_mode:
            self.set_status("ready · chat: type a message and press enter (the model's own "
                            "template; --no-chat types raw text)")
        elif self.info.chat:  # a template, turned off with --no-chat
            self.set_status("ready · raw text (--no-chat): type a prompt and press enter")
        else:
            self.set_status("ready · type a prompt and press enter")
        self.replay_last_turn()
        self.send_deferred_when_ready()

    def got_load_failed(self, reply: p.LoadFailed) -> None:
        self.engine_state = "failed"
        if self.info is None:  # the first load: nothing to explore, say why and leave
            self.load_error = reply.message
            self.exit(return_code=2)
        else:
            self.show_error(f"engine restart failed: {reply.message}")

    def on_engine_exited(self, message: EngineExited) -> None:
        self.engine_state = "stopped"
        self.last_done = self.client.seq  # nothing queued will be answered
        if self.running:  # the table caught up at most 1/8 s ago: the transcript's last
            self.preview = None  # step, not the one before the run
            self.show_last_step()
        self.running = False
        self.remember_turn("stopped")
        self.show_error(f"engine stopped: {message.description} — r restarts")
        if message.detail:
            self.notify(f"the engine's last words: {message.detail}", severity="error",
                        timeout=10, markup=False)
        if self.focused is None or self.focused.id == "prompt":
            self.query_one(CandidatesTable).focus()  # so that r restarts, not types

    def got_op_done(self, reply: p.OpDone) -> None:
        self.last_done = max(self.last_done, reply.seq)
        self.send_deferred_when_ready()  # after the replay, whatever became of it
        self.running = self.last_done < self.last_engine_seq or bool(self.deferred)

    # --- the turn ------------------------------------------------------------------

    def got_turn_started(self, reply: p.TurnStarted) -> None:
        self.remember_turn()  # the previous turn, if it changed since it was saved
        seed = self.settings.seed
        # The same prompt and a fixed seed draw the same tokens: say so, or a repeated
        # enter looks as if nothing ran.
        self.same_draw_note = (
            f"same prompt and seed {seed}: the same tokens (seed — draws anew)"
            if reply.prompt == self.turn.prompt and seed is not None
            and self.turn.settings.seed == seed and self.history else "")
        previous = self.turn
        if self.turn_removed and self.recorder is not None:  # undone into the prompt, and
            try:  # now replaced: a reopened session must not show it
                self.recorder.withdraw(previous.prompt)
            except OSError as exc:
                self.show_error(f"could not write the session file: {exc.strerror or exc}")
        messages = self.sent_messages.pop(reply.seq, None) or self.replayed_messages(reply)
        self.turn = TurnState(reply.prompt, reply.prompt_ids, self.settings, messages=messages)
        self.branch_book.clear()
        self.preview = None
        self.pending = ""
        self.view_step = None
        if self.recorder is not None:
            self.recorder.start_turn(self.turn_id_for(reply))
        if reply.dropped:
            self.notify(f"the conversation outgrew what the model can see: its first "
                        f"{reply.dropped} message(s) are left out", markup=False, timeout=8)
        header = self.chat_header(reply.prompt, messages, previous, reply.dropped) \
            if messages else None
        self.query_one(Transcript).start_turn(reply.prompt, header)
        if messages and self.prompt_text() == messages[-1]["content"]:
            self.query_one("#prompt").value = ""  # sent: the next message starts empty

    def got_prefilling(self, reply: p.Prefilling) -> None:
        """A long prompt, or the window after a slide, being encoded: counted, stoppable."""
        if reply.seq < self.last_engine_seq:
            return
        if self.info is not None and self.info.backend == "served":  # it reports no count
            self.set_status(f"waiting for the server ({reply.total:,} tokens in the window) "
                            "· esc stops")
            return
        if reply.seq == self.replay_seq:  # a reopened turn: it runs to its end
            self.set_status(f"reopening the last turn: encoding {reply.done:,} / "
                            f"{reply.total:,} tokens")
            return
        if self.history:  # the window slid, or a restarted engine restores the turn
            self.set_status(f"re-encoding the window {reply.done:,} / {reply.total:,} tokens "
                            "· esc stops")
            return
        of = f" (the last of {len(self.turn.prompt_ids):,})" \
            if len(self.turn.prompt_ids) > reply.total else ""
        self.set_status(f"prefill {reply.done:,} / {reply.total:,} tokens{of} · esc stops")

    def got_steps_added(self, reply: p.StepsAdded) -> None:
        previous = self.history[-1].context if self.history else None
        for step in reply.steps:  # the model saw fewer tokens than a step before: a slide
            if previous is not None and step.context <= previous - 1:
                self.slid = previous + 1 - step.context
            previous = step.context
        self.history.extend(reply.steps)
        self.branch_book.grew()
        self.pending = reply.pending
        if self.recorder is not None:
            self.recorder.changed("stopped")  # a hang-up now still saves this much
        self.query_one(Transcript).add_steps(reply.steps, reply.pending)
        if reply.seq != self.last_run_seq:
            return  # a single step, a pick, a switch: its RunFinished draws the table, once
        now = time.monotonic()
        if now - self.table_shown_at < TABLE_SECONDS:
            return
        self.table_shown_at = now
        self.show_last_step()
        if self.running:
            self.set_status(f"generating · {tokens(len(self.history))} · "
                            f"{reply.tokens_per_second:.0f} tok/s · "
                            f"{self.position_text(self.history[-1].position + 1)}")

    def position_text(self, position: int) -> str:
        """Where the sequence is, and past the window how much of it the model sees."""
        C = self.info.context_length if self.info else 0
        if position <= C:
            return f"pos {position}/{C}"
        seen = self.history[-1].context + 1 if self.history else None
        if seen is not None and seen < C:  # a slide dropped more than the book's crop would
            return f"pos {position} (sees {seen}/{C})"  # 80 columns keep it whole
        return f"pos {position} (window {C})"

    def show_last_step(self) -> None:
        """The table on the newest step streamed (unless the person browses history)."""
        if self.view_step is None and self.history:
            last = self.history[-1]
            self.show_candidates(f"step {last.index} · chose {last.chosen.text!r}",
                                 last.candidates, last.chosen.id, last.versus)

    def got_steps_undone(self, reply: p.StepsUndone) -> None:
        self.branch_book.leave(self.history, reply.sampler_state)  # the path being left
        del self.history[len(self.history) - len(reply.steps):]
        self.pending = reply.pending
        self.query_one(Transcript).remove_steps(len(reply.steps), reply.pending)

    def got_branches_replayed(self, reply: p.BranchesReplayed) -> None:
        for path in reply.paths:
            self.branch_book.keep(path)

    def got_run_finished(self, reply: p.RunFinished) -> None:
        self.preview = reply.preview
        self.position = reply.position
        self.turn.settings = self.settings_of(reply.seq)
        current = tuple(self.history)
        self.turn.branches = branch_records(current, self.branch_book.alternatives(current))
        self.sampler_state = reply.sampler_state
        if reply.driver != self.driver:
            self.driver = reply.driver
            self.show_header()
        self.remember_turn(reply.reason, after_op=True)
        if reply.seq < self.last_engine_seq:
            return  # a newer op is queued behind this one: it will say how it went
        if self.view_step is not None and self.view_step > len(self.history):
            self.view_step = None
        self.refresh_candidates()
        self.request_insights()
        if reply.reason == "error":
            return  # the error stays on the status line
        if reply.reason == "restored":  # (its prefill said "re-encoding" meanwhile)
            served = self.info is not None and self.info.backend == "served"
            self.set_status("the server answers · the turn goes on from its ids" if served
                            else "engine restarted · the turn is back where it was")
            return
        if reply.reason == "resumed":
            self.got_replayed(reply)
            return
        if reply.reason == "done" and not self.history:  # escape from a typed prompt
            self.set_status("new turn · step 1's candidates · space steps, 1-5 pick")
            return
        parts = [reply.reason, tokens(len(self.history))]
        if self.same_draw_note and self.turn.settings.temperature > 0:
            parts.append(self.same_draw_note)
            self.same_draw_note = ""
        if self.new_turn_note:
            parts.append("new turn from the edited prompt")
            self.new_turn_note = False
        if reply.tokens_per_second and reply.reason != "step":  # one token: no rate
            parts.append(f"{reply.tokens_per_second:.0f} tok/s")
        if self.history and self.history[-1].versus is not None:
            parts.append(last_step_divergence(self.history[-1].versus))
        if self.slid:
            parts.append(f"window slid by {self.slid:,} (--slide)")  # its oldest tokens left
            self.slid = 0
        self.set_status(" · ".join([*parts, self.position_text(reply.position)]))

    def settings_of(self, seq: int):
        """The knobs engine op ``seq`` went with (the engine does not echo them)."""
        settings = self.op_settings.get(seq, self.turn.settings)
        for older in [s for s in self.op_settings if s <= seq]:
            del self.op_settings[older]
        return settings

    def got_run_failed(self, reply: p.RunFailed) -> None:
        # The server went away or failed: the turn is kept, r goes on from its ids.
        fault = self.info is not None and self.info.backend == "served" and \
            self.info.path in reply.message
        self.show_error(f"{reply.message} — r resumes" if fault else reply.message)

    def remember_turn(self, reason: str | None = None, after_op: bool = False) -> None:
        """Save the turn to the session file (after an op, or on the way out). A failed
        save is one line on the status bar; the turn stays in memory and is written
        at the next save."""
        if self.recorder is None or not self.turn.prompt or \
                not (self.history or self.turn.branches):
            return  # nothing explored yet (escape from a typed prompt): nothing to keep
        was_unsaved = len(self.recorder.unsaved)
        try:
            if after_op:
                self.recorder.after_op(self.turn, reason)
            else:
                if reason is not None:
                    self.recorder.changed(reason)
                self.recorder.flush(self.turn)
        except OSError as exc:
            self.show_error(f"could not write the session file: {exc.strerror or exc}")
        if len(self.recorder.unsaved) != was_unsaved:
            self.show_header()  # the header's "✗ N unsaved" mark: the true count
        if after_op and self.recorder.dirty:  # a step, pick or undo: written once keys pause
            if self.save_timer is not None:
                self.save_timer.stop()
            self.save_timer = self.set_timer(SAVE_AFTER_SECONDS, self.save_when_idle)

    save_timer = None
    slid = 0  # tokens the window last dropped at once, said once on the status line

    def save_when_idle(self) -> None:
        """The keys paused: the turn as it is goes to the session file (a run in progress
        is written when it ends)."""
        self.save_timer = None
        if not self.running and not self.hung_up:
            self.remember_turn()
