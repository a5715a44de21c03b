"""The explorer's handle on the engine process (``minigpt.host.engine_host``).

Starts the host with the ``spawn`` context (the same on Linux and macOS; nothing of
this process, textual included, is forked into it), sends ops over a pipe, and
reads replies on a thread that hands them to the app in batches. Nothing here
imports torch.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import threading
from typing import Callable

from minigpt.host import protocol as p
from minigpt.errors import OUT_OF_MEMORY, clip, out_of_memory

MAX_BATCH = 512  # replies handed to the app at once


def describe_exit(code: int | None) -> str:
    """'killed by signal 9', 'exited with code 1'."""
    if code is None:
        return "stopped answering"
    if code < 0:
        return f"killed by signal {-code}"
    return f"exited with code {code}"


def last_line(path: str | None, limit: int = 4096) -> str:
    """The last non-empty line the engine process wrote to its log (its fatal error)."""
    if not path:
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            lines = f.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return ""
    if not lines:
        return ""
    last = lines[-1].strip()
    return OUT_OF_MEMORY if out_of_memory(last) else clip(last)


class EngineClient:
    """One engine process at a time; ``start`` again after it died starts a new one.

    ``deliver(replies)`` is called on the reader thread with each batch of replies;
    ``on_exit(description, detail)`` when the process ended without being asked to
    (``detail``: the last line it wrote to its log, e.g. a CUDA error)."""

    def __init__(self) -> None:
        self.context = multiprocessing.get_context("spawn")
        # Shared with every engine process this client starts (see minigpt.host.protocol):
        # runs with seq ≤ stop_runs stop before their next token; every op ≤ stop_all too.
        self.stop_runs = self.context.RawValue("q", 0)
        self.stop_all = self.context.RawValue("q", 0)
        self.seq = 0
        self.process = None
        self.conn = None
        self.deliver: Callable[[list[p.Reply]], None] = lambda replies: None
        self.on_exit: Callable[[str, str], None] = lambda description, detail: None
        self.stopping = False
        self.lock = threading.Lock()  # sends come from the UI thread and from signal paths
        self.log_path: str | None = None

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def attach(self, deliver, on_exit) -> None:
        self.deliver, self.on_exit = deliver, on_exit

    def start(self) -> None:
        from minigpt.host.engine_host import serve  # torch-free module: only its child imports torch

        fd, self.log_path = tempfile.mkstemp(prefix="minigpt-engine-", suffix=".log")
        os.close(fd)
        ours, theirs = self.context.Pipe()
        process = self.context.Process(target=serve, name="minigpt-engine", daemon=True,
                                       args=(theirs, (self.stop_runs, self.stop_all),
                                             self.log_path))
        self.stopping = False
        # Textual swaps sys.stderr for a capture object without a file descriptor, which
        # multiprocessing hands to its helper process: start with the real streams.
        streams = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = sys.__stdout__ or sys.stdout, sys.__stderr__ or sys.stderr
        try:
            process.start()
        finally:
            sys.stdout, sys.stderr = streams
        theirs.close()
        self.process, self.conn = process, ours
        threading.Thread(target=self._read, args=(ours, process), daemon=True,
                         name="minigpt-engine-replies").start()

    def send(self, op_type: type[p.Op], **fields) -> int:
        """Send one op; returns its seq. Raises ``OSError`` when the engine is gone."""
        with self.lock:
            self.seq += 1
            op = op_type(self.seq, **fields)
            if self.conn is None:
                raise BrokenPipeError("the engine is not running")
            self.conn.send(op)
            return op.seq

    def cancel_runs(self, upto: int) -> None:
        """Stop runs (not single steps) sent up to ``upto``, within one token."""
        self.stop_runs.value = max(self.stop_runs.value, upto)

    def cancel_all(self) -> None:
        """Stop every generation sent so far, queued single steps included."""
        self.stop_all.value = max(self.stop_all.value, self.seq)
        self.stop_runs.value = max(self.stop_runs.value, self.seq)

    def stop(self, timeout: float = 0.1) -> None:
        """Ask the engine to finish, wait at most ``timeout``, then kill it."""
        process = self.process
        if process is None:
            return
        self.stopping = True
        self.cancel_all()
        try:
            self.send(p.Shutdown)
        except (OSError, ValueError):
            pass
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join(1.0)
        self._cleanup_log()

    def _cleanup_log(self) -> None:
        if self.log_path:
            try:
                os.unlink(self.log_path)
            except OSError:
                pass

    def _read(self, conn, process) -> None:
        try:
            while True:
                batch = [conn.recv()]
                while len(batch) < MAX_BATCH and conn.poll():
                    batch.append(conn.recv())
                self.deliver(batch)
        except (EOFError, OSError):
            pass
        if self.conn is conn:
            self.conn = None
        process.join(2.0)
        if not self.stopping and process is self.process:
            self.on_exit(describe_exit(process.exitcode), last_line(self.log_path))
