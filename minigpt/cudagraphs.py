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
"""

from __future__ import annotations

import torch

from .decoder import common_prefix_length
from .sampling import greedy_rows


class GraphedDecoder:
    """Wraps a decoder (``BookDecoder``, ``NanoGPTDecoder``) on a cuda device."""

    def __init__(self, decoder):
        self.decoder = decoder
        device = decoder.k_cache.device
        self.context_length = decoder.context_length
        # The step's inputs, token and position, go over in one copy from pinned memory
        # (each step ends in a host sync, so the buffer is free again by the next one).
        self.host_inputs = torch.zeros(2, dtype=torch.long, pin_memory=device.type == "cuda")
        self.host_view = self.host_inputs.numpy()  # sets them without a torch op each
        self.inputs = torch.zeros(2, dtype=torch.long, device=device)
        self.token, self.position = self.inputs[0:1], self.inputs[1:2]
        self.window = torch.zeros(self.context_length, dtype=torch.long, device=device)
        self.graphs: dict[str, tuple[torch.cuda.CUDAGraph, torch.Tensor]] = {}
        self.notice = ""  # why graphs are off, once they failed
        self.replays = 0  # for tests and benchmarks: steps served by a graph

    # The engine reads and sets these on its decoder.
    @property
    def capture_attention(self) -> bool:
        return self.decoder.capture_attention

    @capture_attention.setter
    def capture_attention(self, on: bool) -> None:
        self.decoder.capture_attention = on

    @property
    def last_attention(self):
        return self.decoder.last_attention

    def reset(self) -> None:
        self.decoder.cached_ids = []

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

    def _replay(self, kind: str, window_ids: list[int]) -> torch.Tensor | None:
        """Replay graph ``kind`` on this window; None when capture failed (eager now)."""
        d = self.decoder
        if kind.startswith("step"):
            self.host_view[0], self.host_view[1] = window_ids[-1], len(window_ids) - 1
            self.inputs.copy_(self.host_inputs, non_blocking=True)
        else:
            self.window.copy_(torch.tensor(window_ids), non_blocking=True)
        try:
            graph, out = self.graphs.get(kind) or self._capture(kind)
        except Exception as exc:  # an op that cannot be captured here: eager from now on
            self.notice = f"CUDA graphs off ({type(exc).__name__}: {exc}); decoding eagerly"
            d.cached_ids = []  # the cache may hold a failed capture's writes
            return None
        graph.replay()
        self.replays += 1
        d.cached_ids = list(window_ids)
        return out

    def last_logits(self, window_ids: list[int]) -> torch.Tensor:
        kind = self._shape(window_ids)
        out = self._replay(kind, window_ids) if kind else None
        if out is None:
            return self.decoder.last_logits(window_ids)
        return out.clone()  # the next replay overwrites the graph's output

    def greedy_rows(self, window_ids: list[int], n: int) -> list[list[float]] | None:
        """A greedy step's rows (``sampling.greedy_rows``) computed inside the graph,
        read in one transfer; None where no graph serves (the engine goes the long way).
        The step's tail was 0.3 ms of small launches after a 0.27 ms replay on an H200."""
        kind = self._shape(window_ids)
        out = self._replay(f"{kind}+greedy{n}", window_ids) if kind else None
        if out is None:
            return None
        rows = out.tolist()
        shown = len(rows[1]) - 1
        if shown > 1 and rows[1][0] == rows[1][shown - 1]:
            return None  # maybe n or more tied maxima: the argmax needs the whole vector
        return rows

    def _run(self, kind: str) -> torch.Tensor:
        d = self.decoder
        shape, _, tail = kind.partition("+")
        if shape == "step":
            logits = d.step_at(self.token, self.position)
        else:
            logits = d.forward_new(self.window, 0, self.context_length)
        if tail:  # "greedy5": the greedy step's rows for the top 5, in the same graph
            return greedy_rows(logits, int(tail.removeprefix("greedy")))
        return logits

    def _capture(self, kind: str):
        # Warm up on a side stream (lazy initialisation must not be captured); the
        # warm-up computes this step's cache entries, so the replay that follows
        # writes the same values again.
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                self._run(kind)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self._run(kind)
        self.graphs[kind] = (graph, out)
        return graph, out


def graphs_enabled(device: torch.device) -> bool:
    import os

    return device.type == "cuda" and os.environ.get("MINIGPT_CUDA_GRAPHS", "1") != "0"
