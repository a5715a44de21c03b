"""What the ``hf`` backend (transformers runs the model) costs per token against the
native decoder, on the same SmolLM2-135M-shaped Llama directory, in one run.

    python benchmarks/bench_backends.py [--tokens 30] [--threads N]

A random SmolLM2-135M-shaped Llama is written with ``save_pretrained``; ids stand in for
text; greedy tokens with the top-5 each step, as the explorer computes them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from bench_peer_llama import PROMPT_IDS, Ids, write_model
from minigpt.engine.engine import Engine
from minigpt.models.checkpoint import load
from minigpt.models.devices import decode_threads, use_threads
from minigpt.settings import SamplingSettings


def tokens_per_second(loaded, n: int) -> tuple[float, list[int]]:
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=0, max_new_tokens=n,
                                                         ignore_eos=True))
    engine.reset(" ".join(map(str, PROMPT_IDS)))
    engine.peek()  # the prefill is not what is measured
    started = time.perf_counter()
    ids = [step.chosen.id for step in engine.run()]
    return n / (time.perf_counter() - started), ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=30)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "smollm2"
        write_model(directory, "smollm2")
        native = load(directory, device="cpu", tokenizer=Ids(), backend="native")
        hf = load(directory, device="cpu", tokenizer=Ids(), backend="hf")
    use_threads(args.threads or decode_threads(native.num_parameters))
    fast, ids_native = tokens_per_second(native, args.tokens)
    slow, ids_hf = tokens_per_second(hf, args.tokens)
    print(f"cpu · {torch.get_num_threads()} thread(s) · SmolLM2-135M-shaped Llama · "
          f"{args.tokens} greedy tokens, top-5 each step")
    print(f"  native decoder           {fast:7.1f} tok/s")
    print(f"  hf (transformers) backend {slow:6.1f} tok/s = {slow / fast:.2f}× native")
    print(f"  identical greedy ids: {ids_native == ids_hf}")


if __name__ == "__main__":
    main()
