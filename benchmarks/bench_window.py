"""Seconds per token past a full window against at the start (SmolLM2-135M's shape).

Past the window a Hugging Face model's window slides by a chunk (``--slide``, half the
window by default): the oldest tokens leave at once and the rest is re-encoded once per
chunk, so the cost per token stays about flat. ``--slide 1`` (the exact last window, and
what every token cost before) re-encodes the whole window at every token.

    python benchmarks/bench_window.py [--window 8192] [--tokens 200] [--threads N]

A random SmolLM2-135M-shaped Llama is written with transformers' ``save_pretrained``
(``pip install -e ".[bench]"``); ids stand in for text. One run, one process, the same
threads throughout: the figures are ratios to the cost at the start.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

import torch

from bench_peer_llama import Ids, write_model
from minigpt.engine.engine import Engine
from minigpt.models.checkpoint import load
from minigpt.models.devices import batch_threads, decode_threads, use_threads
from minigpt.settings import SamplingSettings


def seconds_per_token(engine: Engine, ids: list[int], count: int,
                      prefill_threads: int) -> list[float]:
    """Each of ``count`` greedy tokens' seconds after ``ids`` (already prefilled)."""
    engine.use_prefill_threads(prefill_threads)  # as the CLI and the explorer do
    engine.reset(" ".join(map(str, ids)))
    engine.peek()  # the prompt's prefill: not what is measured
    times = []
    for _ in range(count):
        started = time.perf_counter()
        engine.step()
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=int, default=8192, help="default: the model's own")
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "smollm2"
        write_model(directory, "smollm2")
        loaded = load(directory, device="cpu", tokenizer=Ids(), window=args.window)
        one = load(directory, device="cpu", tokenizer=Ids(), window=args.window, slide=1)
    use_threads(args.threads or decode_threads(loaded.num_parameters))
    settings = SamplingSettings(temperature=0, max_new_tokens=10**6, ignore_eos=True)
    W, n = loaded.context_length, args.tokens
    rng = random.Random(0)
    full = [rng.randrange(100, 49000) for _ in range(W)]
    batch = args.threads or batch_threads()
    start = seconds_per_token(Engine.from_loaded(loaded, settings), full[:8], n, batch)
    past = seconds_per_token(Engine.from_loaded(loaded, settings), full, n, batch)
    exact = seconds_per_token(Engine.from_loaded(one, settings), full, 3, batch)
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    at_start, past_all, steady = mean(start), mean(past), mean(past[n // 2:])
    slide_cost = max(past) - steady  # the one token that re-encoded the slid window
    rows = [
        ("at the start (an 8-token prompt)", at_start, ""),
        (f"{n} tokens past a full window", past_all,
         f"one of them re-encodes {W - loaded.slide + 1:,} tokens: {max(past):.2f} s"),
        (f"… the last {n - n // 2} of those", steady, "after the slide"),
        (f"a whole slide of {loaded.slide:,} tokens", (slide_cost + loaded.slide * steady)
         / loaded.slide, "computed from the two above"),
        ("--slide 1 past the window", mean(exact), "3 tokens: each re-encodes the window"),
    ]
    print(f"cpu · {torch.get_num_threads()} thread(s) a token, {batch} for a long prefill · "
          f"SmolLM2-135M-shaped Llama · window {W:,}, slide {loaded.slide:,} · greedy")
    for name, seconds, note in rows:
        print(f"  {name:<36} {seconds * 1e3:8.1f} ms/token = {seconds / at_start:6.2f}×"
              + (f"  ({note})" if note else ""))
    print("  target: ≤ 2× the cost at the start")


if __name__ == "__main__":
    main()
