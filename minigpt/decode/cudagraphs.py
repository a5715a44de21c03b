"""CUDA-graph decoding: a token is one graph replay, not a hundred kernel launches.

At book size a decoding step is about a hundred small kernels; launched one by one
from Python, the GPU waits on the CPU (the engine ran 11× slower than the per-token
floor on an H200). Generation has two fixed shapes, so each is captured once:

- ``step``: one new token at a position (``decoder.step_at``: attention over the
  whole static KV cache, positions past the token masked), for every step inside
  the window;
- ``window``: the whole window recomputed at positions 0..C-1 (``forward_new`` with
  the window's ids), the book's semantics once the text is longer than the window.

Everything else (the prompt's prefill, a rewind that recomputes several tokens,
attention capture) runs the decoder's eager path over the same cache buffers.
Capture failing falls back to the eager path for good, with a one-line notice.

A greedy step's graph also chooses the token (``sampling.greedy_rows``) and writes it
back into its own inputs. When the caller says another greedy step follows, the next
replay is queued before the host reads this one's rows, so the GPU computes token n + 1
while Python builds step n. The cache then holds that guessed next window, and
``cached_ids`` says so: a guess nobody takes (a stop, a pick, an undo) costs one wasted
replay and nothing else.
"""

from __future__ import annotations

import torch

from minigpt.decode.base import common_prefix_length
from minigpt.engine.sampling import greedy_rows


class RowsInFlight:
    """A greedy step's rows on their way to the host: copied behind the replay that made
    them (into pinned memory, on cuda), read once the copy is done."""

    def __init__(self, shape: str, window_ids: list[int], out: torch.Tensor, host, event):
        self.shape, self.window_ids = shape, window_ids
        if event is None:  # not cuda (the tests' stand-in graphs): a plain copy
            self.host, self.event = out.clone(), None
        else:
            host.copy_(out, non_blocking=True)
            event.record()
            self.host, self.event = host, event

    def read(self) -> list[list[float]]:
        if self.event is not None:
            self.event.synchronize()
        return self.host.tolist()


class GraphedDecoder:
    """Wraps a decoder (``BookDecoder``, ``NanoGPTDecoder``) on a cuda device."""

    def __init__(self, decoder):
        self.decoder = decoder
        device = decoder.k_cache.device
        self.context_length = decoder.context_length
        # The step's inputs, token and position, go over in one copy from pinned memory.
        # The copy reads the buffer when the stream reaches it, so the next write waits
        # for that (``last_logits`` returns without a sync: back-to-back calls would
        # otherwise send a later step's inputs to an earlier replay).
        self.host_inputs = torch.zeros(2, dtype=torch.long, pin_memory=device.type == "cuda")
        self.host_view = self.host_inputs.numpy()  # sets them without a torch op each
        self.inputs_sent = torch.cuda.Event() if device.type == "cuda" else None
        self.inputs = torch.zeros(2, dtype=torch.long, device=device)
        self.token, self.position = self.inputs[0:1], self.inputs[1:2]
        self.window = torch.zeros(self.context_length, dtype=torch.long, device=device)
        self.graphs: dict[str, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        # Two pinned buffers and events per rows shape, used in turn: the rows of step n
        # are read while step n + 1's are being copied.
        self._landing: dict[tuple, list] = {}
        self.ahead: RowsInFlight | None = None  # the next step's rows, already queued
        self.notice = ""  # why graphs are off, once they failed
        self.replays = 0  # for tests and benchmarks: steps served by a graph
        self.served_ahead = 0  # of those, steps queued before the host asked for them

    # The engine reads and sets these on its decoder.
    @property
    def capture_attention(self) -> bool:
        return self.decoder.capture_attention

    @capture_attention.setter
    def capture_attention(self, on: bool) -> None:
        if on:
            self.ahead = None  # a queued step kept no attention: its own pass must run
        self.decoder.capture_attention = on

    @property
    def last_attention(self):
        return self.decoder.last_attention

    def reset(self) -> None:
        self.ahead = None
        self.decoder.forget()

    def _shape(self, window_ids: list[int]) -> str | None:
        """The graph that serves this window, or None for the eager path."""
        d = self.decoder
        n = len(window_ids)
        if d.capture_attention or self.notice or not 1 <= n <= self.context_length:
            return None
        start = min(common_prefix_length(d.cached_ids, window_ids), n - 1)
        if n - start == 1:
            return "step"
        return "window" if start == 0 and n == self.context_length else None

    def _replay(self, kind: str, window_ids: list[int] | None) -> torch.Tensor | None:
        """Replay graph ``kind`` on this window (None: on the inputs a greedy graph left
        behind); None when capture failed (eager now)."""
        d = self.decoder
        try:
            if kind not in self.graphs:
                self._set_inputs(kind, window_ids)  # the warm-up computes this very step
                self._capture(kind)
            graph, out = self.graphs[kind]
        except Exception as exc:  # an op that cannot be captured here: eager from now on
            self.notice = f"CUDA graphs off ({type(exc).__name__}: {exc}); decoding eagerly"
            d.forget()  # the cache may hold a failed capture's writes
            return None
        if window_ids is not None:
            self._set_inputs(kind, window_ids)
        graph.replay()
        self.replays += 1
        return out

    def _set_inputs(self, kind: str, window_ids: list[int]) -> None:
        if kind.startswith("step"):
            if self.inputs_sent is not None:
                self.inputs_sent.synchronize()  # the last copy has read the buffer
            self.host_view[0], self.host_view[1] = window_ids[-1], len(window_ids) - 1
            self.inputs.copy_(self.host_inputs, non_blocking=True)
            if self.inputs_sent is not None:
                self.inputs_sent.record()
        else:
            self.window.copy_(torch.tensor(window_ids), non_blocking=True)

    def last_logits(self, window_ids: list[int], progress=None) -> torch.Tensor:
        self.ahead = None  # the cache holds the guessed window; cached_ids says which
        kind = self._shape(window_ids)
        out = self._replay(kind, window_ids) if kind else None
        if out is None:
            return self.decoder.last_logits(window_ids, progress)
        self.decoder.holds(window_ids)
        return out.clone()  # the next replay overwrites the graph's output

    def greedy_rows(self, window_ids: list[int], n: int,
                    ahead: bool = False) -> list[list[float]] | None:
        """A greedy step's rows (``sampling.greedy_rows``) computed inside the graph,
        read in one transfer; None where no graph serves (the engine goes the long way).
        Outside the graph, the step's tail of small launches outlasted the replay itself.

        ``ahead``: another greedy step follows at once, so its replay is queued now, on
        the token this one's graph chose, before this step's rows are read."""
        queued, self.ahead = self.ahead, None
        if queued is not None and queued.window_ids == window_ids:
            current = queued
            self.served_ahead += 1
        else:
            shape = self._shape(window_ids)
            out = self._replay(f"{shape}+greedy{n}", window_ids) if shape else None
            if out is None:
                return None
            current = self._in_flight(shape, window_ids, out)
        following = self._queue_next(current, n) if ahead else None
        rows = current.read()
        chosen = int(rows[0][-1])
        if following is None:
            self.decoder.holds(window_ids)
        else:  # the cache now holds the next window, on the token chosen in the graph
            following.window_ids = next_window(current.shape, window_ids, chosen)
            self.decoder.holds(following.window_ids)
            self.ahead = following
        shown = len(rows[1]) - 1
        if shown > 1 and rows[1][0] == rows[1][shown - 1]:
            self.ahead = None
            return None  # maybe n or more tied maxima: the argmax needs the whole vector
        return rows

    def _queue_next(self, current: RowsInFlight, n: int) -> RowsInFlight | None:
        """Replay the next step on the inputs this step's graph wrote back; None where
        the next step has another shape (the window is full and about to slide)."""
        if current.shape == "step" and len(current.window_ids) == self.context_length:
            return None
        if self.decoder.capture_attention or self.notice:
            return None
        out = self._replay(f"{current.shape}+greedy{n}", None)
        return None if out is None else self._in_flight(current.shape, [], out)

    def _in_flight(self, shape: str, window_ids: list[int], out: torch.Tensor) -> RowsInFlight:
        if not out.is_cuda:
            return RowsInFlight(shape, window_ids, out, None, None)
        key = tuple(out.shape)
        if key not in self._landing:
            self._landing[key] = [[torch.empty(key, dtype=out.dtype, pin_memory=True),
                                   torch.cuda.Event()] for _ in range(2)]
        buffers = self._landing[key]
        buffers.reverse()  # the other pair from last time: its rows were read already
        return RowsInFlight(shape, window_ids, out, *buffers[0])

    def _run(self, kind: str) -> torch.Tensor:
        d = self.decoder
        shape, _, tail = kind.partition("+")
        if shape == "step":
            logits = d.step_at(self.token, self.position)
        else:
            logits = d.forward_new(self.window, 0, self.context_length)
        if not tail:
            return logits
        # "greedy5": the greedy step's rows for the top 5, in the same graph, and the
        # chosen token written back as the next step's input.
        rows = greedy_rows(logits, int(tail.removeprefix("greedy")))
        chosen = rows[0, -1:].long()
        # NaN logits choose no token (the id reads V, and the host reports the NaN); the
        # queued step must still read a real embedding row, not assert on the device.
        vocab = logits.numel()
        chosen = torch.where(chosen < vocab, chosen, torch.zeros_like(chosen))
        if shape == "step":
            self.token.copy_(chosen)
            # Clamped: a replay past the window would index out of range (a device
            # assert); the host never queues one there, and any other replay sets inputs.
            self.position.add_(1).clamp_(max=self.context_length - 1)
        else:
            self.window.copy_(torch.cat([self.window[1:], chosen]))
        return rows

    def _capture(self, kind: str):
        # Warm up on a side stream (lazy initialisation must not be captured); the
        # warm-up computes this step's cache entries, so the replay that follows
        # writes the same values again. A greedy graph writes its inputs: restore them.
        inputs, window = self.inputs.clone(), self.window.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._run(kind)
                self.inputs.copy_(inputs)
                self.window.copy_(window)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._run(kind)
        self.graphs[kind] = (graph, out)
        return graph, out


def next_window(shape: str, window_ids: list[int], chosen: int) -> list[int]:
    """The window after ``chosen``: one longer inside the context, slid by one at its end."""
    return [*window_ids, chosen] if shape == "step" else [*window_ids[1:], chosen]


def graphs_enabled(device: torch.device) -> bool:
    import os

    return device.type == "cuda" and os.environ.get("MINIGPT_CUDA_GRAPHS", "1") != "0"
