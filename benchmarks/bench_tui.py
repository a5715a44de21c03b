"""The explorer's overhead: tokens/s streamed through the app vs the bare engine,
and key-press-to-screen latency while generating. One run, same model.

    python benchmarks/bench_tui.py [--tokens 500] [--device cpu] [--checkpoint model/model.ckpt]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import torch

from minigpt.checkpoint import LoadedModel
from minigpt.devices import resolve_device
from minigpt.engine import Engine
from minigpt.model import Model
from minigpt.settings import SamplingSettings
from minigpt.tokenizer import cl100k

BOOK = dict(d_model=80, context_length=128, num_blocks=6, num_heads=4, max_token_value=100256,
            dropout=0.0)
PROMPT = "农夫山泉 天然水 550ml 瓶装"


def random_loaded(device: torch.device) -> LoadedModel:
    torch.manual_seed(0)
    model = Model(BOOK).to(device).eval()
    return LoadedModel(model, dict(BOOK), cl100k(), "random book-size model", device,
                       Path("random-book-size"))


def engine_rate(loaded: LoadedModel, n: int) -> float:
    engine = Engine.from_loaded(loaded, SamplingSettings(temperature=0, max_new_tokens=n))
    engine.reset(PROMPT)
    started = time.perf_counter()
    for _ in engine.run():
        pass
    return n / (time.perf_counter() - started)


async def app_rate(loaded: LoadedModel, n: int) -> float:
    from textual.widgets import Input

    from tui.app import make_app

    app = make_app(loaded, SamplingSettings(temperature=0, max_new_tokens=n))
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one("#prompt", Input).value = PROMPT
        started = time.perf_counter()
        await pilot.press("enter")
        while len(app.history) < n:  # until the last token is on screen
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - started
        await app.workers.wait_for_complete()
    return n / elapsed


async def key_latency(loaded: LoadedModel, presses: int) -> list[float]:
    """From a key event entering the app to the first frame that shows its effect.

    Frames are caught where the app hands a composed update to the terminal driver
    (``App._display``), so this is the real key-to-screen time, not Pilot's idle wait."""
    from textual import events
    from textual.widgets import Input

    from tui.app import make_app

    app = make_app(loaded, SamplingSettings(temperature=1.0, max_new_tokens=1_000_000))
    latencies: list[float] = []
    waiting: dict[str, object] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        prompt = app.query_one("#prompt", Input)
        display = app._display

        def timed_display(screen, renderable):
            display(screen, renderable)
            if waiting and prompt.value == waiting["value"]:
                latencies.append(time.perf_counter() - waiting.pop("started"))
                waiting.clear()

        app._display = timed_display
        prompt.value = PROMPT
        await pilot.press("enter")
        while len(app.history) < 20:
            await asyncio.sleep(0.01)
        for _ in range(presses):
            waiting.update(value=prompt.value + "x", started=time.perf_counter())
            app.post_message(events.Key("x", "x"))  # as a terminal keystroke arrives
            while waiting:
                await asyncio.sleep(0.001)
            assert app.running, "generation must still be running"
            await asyncio.sleep(0.05)
        await pilot.press("escape")
        await app.workers.wait_for_complete()
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="a real checkpoint instead of the random book-size model")
    args = parser.parse_args()
    if args.checkpoint:
        from minigpt.checkpoint import load
        loaded = load(args.checkpoint, device=args.device)
    else:
        loaded = random_loaded(resolve_device(args.device))
    engine_rate(loaded, 20)  # warm-up
    default_threads = torch.get_num_threads()
    bare = engine_rate(loaded, args.tokens)
    through_app = asyncio.run(app_rate(loaded, args.tokens))  # the app leaves a core free
    app_threads = torch.get_num_threads()
    bare_app_threads = engine_rate(loaded, args.tokens)
    torch.set_num_threads(default_threads)
    latencies = asyncio.run(key_latency(loaded, args.presses))
    model = args.checkpoint or "book-default-size model (random weights)"
    print(f"device {loaded.device} · {args.tokens} tokens, greedy, {model}")
    print(f"  engine alone      {bare:8.1f} tok/s  ({default_threads} torch threads)")
    print(f"  engine alone      {bare_app_threads:8.1f} tok/s  ({app_threads} torch threads, as in "
          "the app)")
    best = max(bare, bare_app_threads)  # compare with the engine at its best thread count
    print(f"  through the app   {through_app:8.1f} tok/s  = {through_app / best:.2f} of the faster "
          "engine figure (target ≥ 0.8)")
    print(f"  key → screen while generating: median {statistics.median(latencies) * 1e3:.1f} ms,"
          f" max {max(latencies) * 1e3:.1f} ms over {len(latencies)} presses (target ≤ 50 ms)")


if __name__ == "__main__":
    main()
