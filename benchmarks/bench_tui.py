"""The explorer's overhead, all in one run on one model:

- tokens/s streamed through the app vs the engine process alone (the same host process,
  the same torch threads, the same pipe; only the UI is missing);
- key-press-to-screen latency while tokens stream;
- launch to first frame and launch to ready in a real pseudo-terminal, next to
  ``python -c "import torch"``;
- ctrl+q in the middle of a run to the process's exit, in the same pseudo-terminal.

    python benchmarks/bench_tui.py [--tokens 500] [--device cpu] [--checkpoint model/model.ckpt]
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore", message="Failed to initialize NumPy")

BOOK = dict(d_model=80, context_length=128, num_blocks=6, num_heads=4, max_token_value=100256,
            dropout=0.0)
PROMPT = "农夫山泉 天然水 550ml 瓶装"


def write_random_book_checkpoint(path: Path) -> Path:
    """A book-default-size model with random weights, saved as the book's train.py does."""
    import torch

    from minigpt.models.book import Model

    torch.manual_seed(0)
    model = Model(BOOK)
    torch.save({"model_state_dict": model.state_dict(), "h_params": dict(BOOK)}, path)
    return path


def engine_process_rate(checkpoint: str, device: str, n: int) -> float:
    """Tokens/s of the engine process with nobody drawing: its replies are only read.

    Timed like the app: from the arrival of the first batch of steps to the arrival of
    the one holding the n-th step, counting the steps in between."""
    from minigpt.host import protocol as p
    from minigpt.settings import SamplingSettings
    from tui.client import EngineClient

    client = EngineClient()
    done: set[int] = set()
    marks: dict[int, list] = {}  # seq -> [first arrival, steps in first batch, steps, last]

    def deliver(replies):
        now = time.perf_counter()
        for reply in replies:
            if isinstance(reply, p.StepsAdded):
                mark = marks.setdefault(reply.seq, [now, len(reply.steps), 0, now])
                mark[2] += len(reply.steps)
                mark[3] = now
            elif isinstance(reply, p.OpDone):
                done.add(reply.seq)

    client.attach(deliver, lambda description: None)
    client.start()
    settings = SamplingSettings(temperature=0, max_new_tokens=n)
    client.send(p.Open, path=checkpoint, device=device, settings=settings)
    rates = []
    for _ in range(3):  # the first warms up
        seq = client.send(p.Generate, prompt=PROMPT, count=None, settings=settings)
        while seq not in done:
            time.sleep(0.001)
        first, first_batch, steps, last = marks[seq]
        rates.append((steps - first_batch) / (last - first))
    client.stop()
    return max(rates[1:])


async def app_rate(checkpoint: str, device: str, n: int) -> float:
    """Tokens/s through the app, until the n-th token is in the transcript. The handler
    that puts steps on screen stamps the time itself: polling for it would take CPU from
    the app (and, on a small machine, from the engine)."""
    from textual.widgets import Input

    from minigpt.host.protocol import StepsAdded
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    app = make_app(checkpoint, SamplingSettings(temperature=0, max_new_tokens=n), device=device)
    marks: list[tuple[float, int]] = []
    handler = app.got_steps_added

    def stamped(reply):
        handler(reply)
        marks.append((time.perf_counter(), len(app.history)))

    app.reply_handlers[StepsAdded] = stamped
    rates = []
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(app)
        prompt = app.query_one("#prompt", Input)
        prompt.value = PROMPT
        for _ in range(3):  # the first warms up
            marks.clear()
            prompt.focus()
            await pilot.press("enter")
            await wait_idle(app)
            (first, first_batch), (last, steps) = marks[0], marks[-1]
            rates.append((steps - first_batch) / (last - first))
    return max(rates[1:])


async def wait_idle(app) -> None:
    while not app.idle:
        await asyncio.sleep(0.05)


async def key_latency(checkpoint: str, device: str, presses: int) -> list[float]:
    """From a key event entering the app to the first frame that shows its effect.

    Frames are caught where the app hands a composed update to the terminal driver
    (``App._display``), so this is the real key-to-screen time, not Pilot's idle wait."""
    from textual import events
    from textual.widgets import Input

    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    app = make_app(checkpoint, SamplingSettings(temperature=1.0, max_new_tokens=1_000_000),
                   device=device)
    latencies: list[float] = []
    waiting: dict[str, object] = {}
    shown = asyncio.Event()  # set by the frame that shows the key (no polling loop)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_idle(app)
        prompt = app.query_one("#prompt", Input)
        display = app._display

        def timed_display(screen, renderable):
            display(screen, renderable)
            if waiting and prompt.value == waiting["value"]:
                latencies.append(time.perf_counter() - waiting.pop("started"))
                waiting.clear()
                shown.set()

        app._display = timed_display
        prompt.value = PROMPT
        await pilot.press("enter")
        while len(app.history) < 20:
            await asyncio.sleep(0.05)
        for _ in range(presses):
            shown.clear()
            waiting.update(value=prompt.value + "x", started=time.perf_counter())
            app.post_message(events.Key("x", "x"))  # as a terminal keystroke arrives
            await shown.wait()
            assert app.running, "generation must still be running"
            await asyncio.sleep(0.05)
        await pilot.press("escape")
        await wait_idle(app)
    return latencies


def in_pty(checkpoint: str, device: str, *flags: str):
    """``minigpt-tui`` in an 80×24 pseudo-terminal: (process, the terminal's end)."""
    exe = Path(sys.executable).with_name("minigpt-tui")
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    env = dict(os.environ, TERM="xterm-256color")
    proc = subprocess.Popen([str(exe), checkpoint, "--device", device, *flags], stdin=child,
                            stdout=child, stderr=child, env=env, close_fds=True)
    os.close(child)
    return proc, main


def read_until(main: int, wanted: bytes, started: float, seen: bytearray,
               limit: float = 120) -> float | None:
    """Seconds from ``started`` until ``wanted`` has been drawn (None: not in time);
    ``seen`` keeps what was read, for the next wait."""
    while wanted not in seen:
        if time.perf_counter() - started > limit:
            return None
        if select.select([main], [], [], 0.01)[0]:
            seen += os.read(main, 65536)
    return time.perf_counter() - started


def close(proc, main: int) -> float:
    """Send ctrl+q; seconds until the process has exited (it is killed after 5 s)."""
    sent = time.perf_counter()
    os.write(main, b"\x11")
    while proc.poll() is None and time.perf_counter() - sent < 5:
        if select.select([main], [], [], 0.005)[0]:
            try:
                os.read(main, 65536)
            except OSError:
                break
    exited = time.perf_counter() - sent
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    os.close(main)
    return exited


def launch_times(checkpoint: str, device: str) -> tuple[float, float]:
    """(first frame, ready) seconds after starting ``minigpt-tui`` in a pseudo-terminal:
    the first frame is the header's first bytes, ready is the model's size in it."""
    started = time.perf_counter()
    proc, main = in_pty(checkpoint, device)
    seen = bytearray()
    first_frame = read_until(main, b"minigpt-tui", started, seen)
    ready = read_until(main, b"params", started, seen)
    close(proc, main)
    return first_frame, ready


def quit_mid_run_seconds(checkpoint: str, device: str) -> float:
    """ctrl+q while tokens stream: seconds until the explorer's process has exited."""
    proc, main = in_pty(checkpoint, device, "--max-new-tokens", "1000000")
    seen = bytearray()
    read_until(main, b"params", time.perf_counter(), seen)
    os.write(main, b"hello\r")
    read_until(main, b"generating", time.perf_counter(), seen)
    return close(proc, main)


def import_torch_seconds() -> float:
    out = subprocess.run([sys.executable, "-W", "ignore", "-c",
                          "import time; t = time.perf_counter(); import torch; "
                          "print(time.perf_counter() - t)"],
                         capture_output=True, text=True, check=True).stdout
    return float(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=500)
    parser.add_argument("--presses", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--checkpoint", default=None, metavar="CKPT",
                        help="a real checkpoint instead of the random book-size model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint or str(write_random_book_checkpoint(
            Path(tmp) / "random-book-size.ckpt"))
        engine = engine_process_rate(checkpoint, args.device, args.tokens)
        through_app = asyncio.run(app_rate(checkpoint, args.device, args.tokens))
        latencies = asyncio.run(key_latency(checkpoint, args.device, args.presses))
        first_frame, ready = launch_times(checkpoint, args.device)
        quit_seconds = quit_mid_run_seconds(checkpoint, args.device)
        torch_import = import_torch_seconds()
    model = args.checkpoint or "book-default-size model (random weights)"
    print(f"device {args.device} · {args.tokens} tokens, greedy, {model}")
    print(f"  engine process alone {engine:8.1f} tok/s  (replies read, nothing drawn)")
    print(f"  through the app      {through_app:8.1f} tok/s  = {through_app / engine:.2f} of the "
          "engine alone (target ≥ 0.9)")
    print(f"  key → screen while generating: median {statistics.median(latencies) * 1e3:.1f} ms,"
          f" max {max(latencies) * 1e3:.1f} ms over {len(latencies)} presses "
          "(targets ≤ 20 ms, ≤ 50 ms)")
    print(f"  launch → first frame {first_frame:.2f} s · launch → ready {ready:.2f} s · "
          f"python -c 'import torch' {torch_import:.2f} s "
          f"(first frame = {first_frame / torch_import:.2f} × import torch)")
    print(f"  ctrl+q mid-run → exited {quit_seconds:.2f} s (target ≤ 0.5 s)")


if __name__ == "__main__":
    main()
