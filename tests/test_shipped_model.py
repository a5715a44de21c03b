"""End-to-end checks of the shipped model/model.ckpt, scored against the catalog
it was trained on (data/orders.txt)."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from minigpt.models.checkpoint import load
from minigpt.cli.main import main
from minigpt.engine.engine import Engine
from minigpt.paths import default_checkpoint
from minigpt.settings import SamplingSettings

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "model" / "model.ckpt"
BRANDS = ["农夫山泉", "可口可乐", "奥利奥", "蒙牛"]


@pytest.fixture(scope="module")
def catalog() -> dict[str, set[str]]:
    """brand -> its product lines, as the catalog lists them."""
    lines = defaultdict(set)
    for line in (ROOT / "data" / "orders.txt").read_text(encoding="utf-8").splitlines():
        brand, product_line = line.split()[:2]
        lines[brand].add(product_line)
    return lines


@pytest.fixture(scope="module")
def shipped():
    return load(SHIPPED, device="cpu")


def complete(loaded, prompt: str, temperature: float, tokens: int, seed: int = 1337) -> str:
    engine = Engine.from_loaded(loaded, SamplingSettings(
        temperature=temperature, max_new_tokens=tokens, seed=seed))
    engine.reset(prompt)
    for _ in engine.run():
        pass
    return prompt + engine.completion


def test_shipped_file_is_the_book_format_and_small():
    assert SHIPPED.stat().st_size <= 32 * 10**6
    stored = torch.load(SHIPPED, weights_only=True, map_location="cpu")
    assert set(stored) == {"model_state_dict", "h_params"}
    assert {"d_model", "context_length", "num_blocks", "num_heads", "max_token_value",
            "device", "TORCH_SEED"} <= set(stored["h_params"])


@pytest.mark.parametrize("brand", BRANDS)
def test_greedy_first_line_names_one_of_the_brands_product_lines(shipped, catalog, brand):
    first_line = complete(shipped, brand + " ", 0.0, 30).split("\n")[0]
    fields = first_line.split()
    assert fields[0] == brand
    assert len(fields) > 1 and fields[1] in catalog[brand], first_line


def test_sampled_lines_are_mostly_real_brand_and_line_pairs(shipped, catalog):
    lines: list[str] = []
    seed = 0
    while len(lines) < 50:
        prompt = BRANDS[seed % len(BRANDS)] + " "
        text = complete(shipped, prompt, 0.5, 120, seed=seed)
        lines += text.split("\n")[:-1]  # the last line may be cut off mid-way
        seed += 1
    lines = lines[:50]
    real = [ln for ln in lines
            if len(ln.split()) > 1 and ln.split()[1] in catalog.get(ln.split()[0], ())]
    assert len(real) >= 40, "\n".join(sorted(set(lines) - set(real)))
    assert len(set(lines)) >= 25  # it learned the data; it does not repeat one line


def test_commands_without_a_checkpoint_use_the_shipped_model(monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    assert default_checkpoint().resolve() == SHIPPED
    assert main(["inspect", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["h_params"]["max_token_value"] == load(SHIPPED, "cpu").h_params["max_token_value"]


def test_default_checkpoint_is_found_from_another_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_checkpoint().resolve() == SHIPPED
