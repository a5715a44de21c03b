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
def tiny_loaded(tiny_ckpt):
    from minigpt.checkpoint import load
    return load(tiny_ckpt, device="cpu")


@pytest.fixture
def make_tui(tiny_ckpt, monkeypatch):
    """Build the app on the tiny checkpoint, loaded by its bare name (stable header text)."""
    from minigpt.checkpoint import load
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    monkeypatch.chdir(tiny_ckpt.parent)
    loaded = load(tiny_ckpt.name, device="cpu")

    def factory(session_path=None, resumed=None, **settings):
        base = dict(temperature=0.0, max_new_tokens=12)
        return make_app(loaded, SamplingSettings(**{**base, **settings}), session_path, resumed)

    return factory


async def settle(app, pilot):
    """Let the engine worker finish and its messages land."""
    for _ in range(3):
        await app.workers.wait_for_complete()
        await pilot.pause()
