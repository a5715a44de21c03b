"""Decode speed by torch thread count × model size, idle and with one core busy.

The engine decodes one token at a time: a few small matrix-vector products per
layer, where handing work to more threads can cost more than it saves, and a
thread that waits for a busy core stalls every step. This sweep is what
``minigpt.models.devices.decode_threads`` is chosen from.

    python benchmarks/bench_threads.py [--tokens 200] [--max-threads N] [--device cpu]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import warnings

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

import torch  # noqa: E402

from minigpt.decode.decoder import BookDecoder  # noqa: E402
from minigpt.models.book import Model  # noqa: E402
from minigpt.models.nanogpt import NanoGPT  # noqa: E402

SIZES = {  # name: (class, h_params)
    "shipped (d 64, 4 blocks)": (Model, dict(d_model=64, context_length=64, num_blocks=4,
                                             num_heads=4, max_token_value=100180,
                                             dropout=0.0)),
    "book (d 80, 6 blocks)": (Model, dict(d_model=80, context_length=128, num_blocks=6,
                                          num_heads=4, max_token_value=100256, dropout=0.0)),
    "gpt2-small shape (d 768, 12 layers)": (
        NanoGPT, dict(d_model=768, context_length=1024, num_blocks=12, num_heads=12,
                      max_token_value=100277, bias=True, dropout=0.0)),
}


def spin(stop) -> None:
    """Keep one core busy (another program on the machine)."""
    while not stop.is_set():
        pass


def decode_rate(decoder, tokens: int, start: int) -> float:
    ids = list(range(1000, 1000 + start))
    with torch.inference_mode():
        decoder.last_logits(ids)
        started = time.perf_counter()
        for i in range(tokens):
            ids.append(int(decoder.last_logits(ids[-decoder.context_length:]).argmax()))
        return tokens / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--max-threads", type=int, default=os.cpu_count())
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", default=",".join(str(i) for i in range(len(SIZES))),
                        help="which sizes, by index")
    args = parser.parse_args()
    cores = os.cpu_count()
    counts = sorted({1, 2, 4, 8, args.max_threads} & set(range(1, args.max_threads + 1)))
    print(f"{cores} cores · {args.tokens} greedy tokens per figure · tok/s "
          "(idle / one core busy)")
    for index in map(int, args.sizes.split(",")):
        name, (cls, hp) = list(SIZES.items())[index]
        torch.manual_seed(0)
        model = cls(hp).eval().to(args.device)
        decoder = model.make_decoder() if hasattr(model, "make_decoder") else BookDecoder(model)
        tokens = max(20, args.tokens // (8 if hp["d_model"] > 256 else 1))
        row = []
        for threads in counts:
            torch.set_num_threads(threads)
            idle = decode_rate(decoder, tokens, 8)
            stop = multiprocessing.Event()
            busy = multiprocessing.Process(target=spin, args=(stop,))
            busy.start()
            time.sleep(0.2)
            loaded = decode_rate(decoder, tokens, 8)
            stop.set()
            busy.join()
            row.append(f"{threads}: {idle:7.1f} / {loaded:7.1f}")
        print(f"  {name:36s} " + "   ".join(row))


if __name__ == "__main__":
    main()
