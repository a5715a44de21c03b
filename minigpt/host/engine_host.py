"""The engine host: the engine in a process of its own, running the explorer's ops.

The explorer (``tui``) never imports torch. It starts this module's ``serve`` in a
child process (``multiprocessing``, spawn context) and speaks ``minigpt.host.protocol``
over a pipe: ops run in order, one at a time; steps come back batched to about 30
per second; a run stops within one token of being cancelled. A bug in an op is
answered with a one-line ``RunFailed``; a crash (segfault, CUDA assert, OOM kill)
ends only this process, and the explorer says so and can start another.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections import deque

from minigpt.host import protocol as p
from minigpt.host.reading_ops import ReadingOps
from minigpt.backends.http import ServerError
from minigpt.errors import OUT_OF_MEMORY, MiniGPTError, clip, out_of_memory

FRAME_SECONDS = 1 / 30
HEARTBEAT_SECONDS = 1.0


class Stopped(Exception):
    """Escape stopped a run inside a long prefill (raised from its progress callback)."""


def serve(conn, cancel, log_path: str | None = None) -> None:
    """Child-process entry point: answer ops from ``conn`` until Shutdown or EOF."""
    # The explorer decides when this process ends: a ctrl+c or hang-up sent to the
    # terminal's process group must not kill the engine under it.
    for name in ("SIGINT", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _quiet_stdio(log_path)  # nothing may write over the explorer's screen
    try:
        Host(conn, *cancel).loop()
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the explorer is gone: so are we
    # Nothing is left to save here (the explorer keeps the session), and tearing torch
    # down takes longer than the explorer wants to wait on quit.
    os._exit(0)


def _quiet_stdio(log_path: str | None) -> None:
    """Send this process's stdout and stderr (torch's warnings, a fatal error's dump)
    to ``log_path``, where the explorer reads the last line if this process dies."""
    import faulthandler

    fd = os.open(log_path or os.devnull, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    for stream, target in ((sys.stdout, 1), (sys.stderr, 2)):
        try:
            stream.flush()
        except (AttributeError, ValueError, OSError):
            pass
        os.dup2(fd, target)
    os.close(fd)
    faulthandler.enable(file=sys.stderr)


class Host(ReadingOps):
    def __init__(self, conn, stop_runs, stop_all):
        self.conn = conn
        self.stop_runs, self.stop_all = stop_runs, stop_all  # shared ints (protocol doc)
        self.queue: deque[p.Op] = deque()
        self.loaded = None  # (key, LoadedModel): a new Open of the same file reuses it
        self.prefill_stopped = False  # escape stopped the op being answered mid-prefill
        self.preview_failed = False  # the last preview met a server error (said already)
        self.run_rate = 0.0  # tokens a second of the last run's decoding
        self.sending = threading.Lock()
        self.running_op: int | None = None  # the op being answered (the heartbeat's)
        self.done = threading.Event()
        self.engine = None
        self.handlers = {
            p.Open: self.open, p.Generate: self.engine_op, p.Take: self.engine_op,
            p.Undo: self.engine_op, p.Restore: self.engine_op,
            p.Replay: self.engine_op,
            p.AskWhy: self.why, p.Complete: self.complete, p.Attend: self.attend,
            p.Peek: self.peek,
            p.ScoreText: self.score, p.SwapModels: self.swap,
            p.Shutdown: lambda op: None,
        }

    def send(self, reply: p.Reply) -> None:
        with self.sending:  # the heartbeat thread sends too
            self.conn.send(reply)

    def heartbeat(self) -> None:
        """While an op runs, an ``Alive`` every HEARTBEAT_SECONDS: an explorer that hears
        nothing for a while knows the engine is stuck (SIGSTOP, a hung driver) rather
        than busy, and says so."""
        while not self.done.wait(HEARTBEAT_SECONDS):
            seq = self.running_op
            if seq is not None:
                try:
                    self.send(p.Alive(seq))
                except (OSError, EOFError, ValueError):
                    return

    def next_op(self) -> p.Op:
        while self.conn.poll():  # everything already sent, to see superseded requests
            self.queue.append(self.conn.recv())
        return self.queue.popleft() if self.queue else self.conn.recv()

    def superseded(self, op: p.Op) -> bool:
        """A queued insight request with a newer one of its kind behind it: the explorer
        would drop its answer anyway. (Attend's capture switch is kept by the newer one.)"""
        return isinstance(op, p.INSIGHTS) and any(type(later) is type(op) for later in self.queue)

    def loop(self) -> None:
        threading.Thread(target=self.heartbeat, daemon=True, name="minigpt-heartbeat").start()
        try:
            self.serve_ops()
        finally:
            self.done.set()

    def serve_ops(self) -> None:
        while True:
            op = self.next_op()
            self.running_op = op.seq
            if not self.superseded(op):
                try:
                    self.handlers[type(op)](op)
                except (EOFError, BrokenPipeError, ConnectionResetError):
                    raise
                except MiniGPTError as exc:
                    self.send(p.RunFailed(op.seq, str(exc)))
                except Exception as exc:  # a bug: say it in one line, keep serving
                    self.send(p.RunFailed(op.seq, OUT_OF_MEMORY if out_of_memory(exc) else
                                          f"internal error: {type(exc).__name__}: "
                                          f"{clip(str(exc))}"))
            self.running_op = None
            self.send(p.OpDone(op.seq))
            if isinstance(op, p.Shutdown):
                return

    def cancelled(self, op: p.Generate) -> bool:
        """Checked before every token. A single step is stopped only by "stop all"
        (escape), so keys pressed behind a cancelled run still take effect."""
        limit = self.stop_all.value if op.count == 1 else max(self.stop_all.value,
                                                             self.stop_runs.value)
        return op.seq <= limit

    # --- loading -------------------------------------------------------------

    def open(self, op: p.Open) -> None:
        self.send(p.Loading(op.seq, "import torch"))
        try:
            from minigpt.models.checkpoint import load
            from minigpt.models.devices import batch_threads, decode_threads, use_threads
            from minigpt.engine.engine import Engine

            key = (op.path, op.device, op.tokenizer, op.dtype, op.window, op.slide, op.backend,
                   op.served)
            if self.loaded is None or self.loaded[0] != key:
                self.loaded = None  # free the old model before loading another
                loaded = load(op.path, device=op.device, tokenizer=op.tokenizer, dtype=op.dtype,
                              window=op.window, slide=op.slide, backend=op.backend,
                              served=op.served,
                              progress=lambda stage: self.send(p.Loading(op.seq, stage)))
                self.loaded = (key, loaded)
            loaded = self.loaded[1]
            # One thread for small models also leaves the explorer's process a core.
            self.threads = use_threads(op.threads or decode_threads(loaded.num_parameters))
            self.batch = op.threads  # what scoring may use (None: the batch policy)
            self.engine = Engine.from_loaded(loaded, op.settings)
            self.engine.use_prefill_threads(op.threads or batch_threads())
            self.engine.drop_early_messages = True  # a chat outgrowing the window goes on
            if op.compare and loaded.backend == "served":
                raise MiniGPTError("a served model is compared from the command line: "
                                   "minigpt compare DIR --server URL")
            other = self.open_other(op, loaded) if op.compare else None
        except MiniGPTError as exc:
            self.engine = None
            self.send(p.LoadFailed(op.seq, str(exc)))
            return
        self.send(p.Ready(op.seq, model_info(loaded), other and model_info(other)))

    def open_other(self, op: p.Open, loaded):
        """Load the checkpoint to compare with (``B``) beside the engine's model."""
        from minigpt.models.checkpoint import load
        from minigpt.engine.compare import Other, check_comparable

        other = load(op.compare, device=op.compare_device or op.device,
                     tokenizer=op.tokenizer, dtype=op.compare_dtype or op.dtype,
                     window=op.window, slide=op.slide, backend=op.backend,
                     progress=lambda stage: self.send(p.Loading(op.seq, f"B: {stage}")))
        check_comparable(loaded, other, str(loaded.path), str(other.path))
        self.engine.other = Other(other.model, "B", other.slide)
        return other

    def swap(self, op: p.SwapModels) -> None:
        engine = self.require_engine()
        if engine.other is None:
            raise MiniGPTError("nothing to swap with: open the explorer with --compare B")
        engine.set_settings(op.settings)
        engine.swap_other()
        self.finish(op, f"{engine.label} drives", 0.0)

    def require_engine(self):
        if self.engine is None:
            raise MiniGPTError("no model is loaded")
        return self.engine

    # --- ops that change the sequence ---------------------------------------

    def engine_op(self, op) -> None:
        engine = self.require_engine()
        engine.prefill_progress = lambda done, total: self.prefilled(op, done, total)
        try:
            self.change_sequence(engine, op)
        finally:  # whatever happened, no later op reports (or stops) through this op
            engine.prefill_progress = None

    def change_sequence(self, engine, op) -> None:
        produced, reason, self.run_rate = 0, "stopped", 0.0
        try:
            engine.set_settings(op.settings)
            if isinstance(op, p.Generate):
                produced, reason = self.generate(op)
            elif isinstance(op, p.Take):
                if op.keep_steps is not None:
                    self.rewind(op, op.keep_steps)
                candidates = engine.peek().candidates
                if not 1 <= op.rank <= len(candidates):
                    raise MiniGPTError(f"no candidate {op.rank} here: {len(candidates)} shown")
                step = engine.step(candidates[op.rank - 1].id)
                self.send(p.StepsAdded(op.seq, (step,), 0.0, engine.pending_display))
                reason = "picked"
            elif isinstance(op, p.Restore):  # the explorer already shows these steps
                engine.restore(op.prompt, op.steps, op.sampler_state, op.settings,
                               op.messages)
                reason = op.reason
            elif isinstance(op, p.Replay):
                branches = engine.replay(op.prompt, list(op.tokens), op.branches,
                                         op.messages)
                self.send(p.TurnStarted(op.seq, engine.prompt, tuple(engine.prompt_ids)))
                if branches:
                    self.send(p.BranchesReplayed(op.seq, tuple(branches)))
                if engine.steps:
                    self.send(p.StepsAdded(op.seq, tuple(engine.steps), 0.0,
                                           engine.pending_display))
                reason = "resumed"
            elif isinstance(op, p.Undo):
                self.rewind(op, len(engine.steps) - 1)
                reason = "undo"
        except MiniGPTError as exc:
            self.send(p.RunFailed(op.seq, str(exc)))
            reason = "error"
        except Stopped:  # escape during a prefill (a pick or undo across a slide, say)
            self.prefill_stopped, reason = True, "stopped"
        # A rate needs a run: one token's time (a single step that met the end of text,
        # say) is no speed, and was shown as "847 tok/s". The preview may prefill too:
        # shown, and stopped by escape like a run.
        self.finish(op, reason, self.run_rate if produced > 1 else 0.0)

    def prefilled(self, op, done: int, total: int) -> None:
        """A chunk of a long prefill is done: say so; escape stops it here (the cache
        keeps what was encoded, so the next step goes on from it). A reopened session's
        replay runs to its end: it is what the screen shows."""
        self.send(p.Prefilling(op.seq, done, total))
        stopped = self.cancelled(op) if isinstance(op, p.Generate) else \
            op.seq <= self.stop_all.value
        if stopped and not isinstance(op, p.Replay):
            raise Stopped

    def finish(self, op, reason: str, rate: float) -> None:
        engine = self.engine
        # A server that just failed would be asked again (a hung one: another timeout).
        served_fault = reason == "error" and engine.capabilities.own_sampler
        preview = None if served_fault else self.preview(op.seq)
        if self.preview_failed:  # the error stays on the explorer's status line
            reason, self.preview_failed = "error", False
        self.send(p.RunFinished(op.seq, reason, preview, len(engine.tokens), rate,
                                engine.sampler_state(), engine.label))

    def preview(self, seq: int):
        if self.prefill_stopped:
            self.prefill_stopped = False
            return None
        try:
            return self.engine.peek() if self.engine.started else None
        except ServerError as exc:  # the server went away after the step: said once here
            self.send(p.RunFailed(seq, str(exc)))
            self.preview_failed = True
            return None
        except MiniGPTError:  # e.g. NaN logits: already reported
            return None
        except Stopped:  # escape during its prefill: the next step goes on from the cache
            return None

    def rewind(self, op, keep_steps: int) -> None:
        engine = self.engine
        undone = []
        while len(engine.steps) > max(0, keep_steps):
            undone.append(engine.undo())
        if undone:
            self.send(p.StepsUndone(op.seq, tuple(undone), engine.pending_display,
                                    engine.sampler_state()))

    def generate(self, op: p.Generate) -> tuple[int, str]:
        engine = self.engine
        if self.cancelled(op):  # stopped before it began: not even a new turn
            return 0, "stopped"
        if op.prompt is not None:
            engine.stop_check = lambda: self.cancelled(op)  # escape while a template renders
            try:
                engine.reset(op.prompt, op.settings, op.messages)
            finally:
                engine.stop_check = None
            self.send(p.TurnStarted(op.seq, engine.prompt, tuple(engine.prompt_ids),
                                    engine.dropped_messages if op.messages else 0))
        total = engine.remaining if op.count is None else op.count
        batch, produced, last_post = [], 0, time.perf_counter()
        ended, first_done = False, None
        # The speed is the decoding's: from the first token on (its pass holds the
        # prompt's prefill, which made a run after a long prompt read "1 tok/s").
        rate = lambda now: (produced - 1) / (now - first_done) \
            if produced > 1 and now > first_done else 0.0  # noqa: E731
        try:
            while produced < total and not self.cancelled(op) and not ended:
                try:
                    batch.append(engine.step(ahead=produced + 1 < total
                                             and not engine.eos_ids))
                except Stopped:  # escape during a long prefill: no preview either (it
                    self.prefill_stopped = True  # would go on prefilling)
                    break
                produced += 1
                ended = engine.ends_run(batch[-1])
                now = time.perf_counter()
                first_done = first_done or now
                if now - last_post >= FRAME_SECONDS:
                    self.send(p.StepsAdded(op.seq, tuple(batch), rate(now),
                                           engine.pending_display))
                    batch, last_post = [], now
        finally:  # a step that fails: the ones before it are the turn's all the same
            if batch:
                self.send(p.StepsAdded(op.seq, tuple(batch), rate(time.perf_counter()),
                                       engine.pending_display))
        self.run_rate = rate(time.perf_counter())
        if ended:
            return produced, "end of text"
        if produced < total:
            return produced, "stopped"
        if op.count is None:
            return produced, "max_new_tokens"
        return produced, "step" if op.count == 1 else "done"


def model_info(loaded) -> p.ModelInfo:
    from minigpt.cli.render import inspect_report

    report = inspect_report(loaded)
    return p.ModelInfo(path=str(loaded.path), format=loaded.format,
                       parameters=loaded.num_parameters, device=str(loaded.device),
                       context_length=loaded.context_length, vocab_size=loaded.vocab_size,
                       report=report, dtype=report["dtype"], chat=loaded.chat is not None,
                       backend=loaded.backend, capabilities=loaded.capabilities)

