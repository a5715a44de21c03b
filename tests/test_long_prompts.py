"""Prompts longer than the window: the prefill is counted and stoppable, the window
slides by a chunk for Hugging Face models (the cost per token stays flat), and the
default window is the model's own when its KV cache fits. The real-model pass: a 103 KB
paste showed nothing for 75 s, then cost 26 s a token."""

import json

import pytest
import torch
from textual.widgets import Input

from conftest import run_cli, settle
from hf_models import WINDOW, reference_model, write_model
from minigpt.engine.window import window_of, window_start
from minigpt.host import protocol as p
from minigpt.models.hf import Memory, window_of as default_window


def test_the_window_rule():
    assert [window_start(n, 8, 1) for n in (8, 9, 10)] == [0, 1, 2]  # the book's crop
    assert [window_start(n, 8, 4) for n in (8, 9, 12, 13, 16, 17)] == [0, 4, 4, 8, 8, 12]
    assert window_of(list(range(13)), 8, 4) == list(range(8, 13))


def test_the_default_window_is_the_models_own_when_its_cache_fits():
    per_position = 30 * 2 * 3 * 64  # SmolLM2-135M: layers × keys and values × heads × dims
    size, notes = default_window(8192, None, per_position, Memory(2**30, 4))
    assert size == 8192 and "8,192 (the model's positions)" in notes[0]
    size, notes = default_window(8192, None, per_position, Memory(100 * 2**20, 4))
    assert size == 2048 and "over a quarter of the memory free" in notes[0]
    assert default_window(8192, 1000, per_position, Memory(1, 4))[0] == 1000  # --window
    assert default_window(8192, None, per_position, Memory(None, 4))[0] == 8192


def test_a_model_opens_with_all_its_positions(tmp_path, monkeypatch):
    """It was 4,096 at most, whatever the model and the machine."""
    from minigpt.models import checkpoint

    directory = write_model(tmp_path / "llama", "llama", positions=8192)
    assert checkpoint.load(directory, device="cpu").context_length == 8192
    per_position = 2 * 2 * 2 * 8 * 4  # layers × keys and values × KV heads × dims × float32
    monkeypatch.setattr(checkpoint, "kv_cache_budget",
                        lambda device, weights: 2000 * per_position)
    loaded = checkpoint.load(directory, device="cpu")
    assert loaded.context_length == 1792  # the most positions that fit, a multiple of 256
    assert loaded.slide == loaded.context_length // 2


async def test_the_status_line_counts_a_prefill_and_says_a_slide(tmp_path, engine_client,
                                                                 monkeypatch):
    from minigpt.settings import SamplingSettings
    from tui.app import make_app
    from tui.messages import EngineReplies

    directory = write_model(tmp_path / "llama", "llama")  # window 16: slides by 8
    monkeypatch.chdir(tmp_path)
    app = make_app("llama", SamplingSettings(temperature=0, max_new_tokens=20,
                                             ignore_eos=True), device="cpu",
                   client=engine_client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "the cat sat"
        await pilot.press("enter")
        await settle(app, pilot)
        status = app.query_one("#status").full_text  # what it says before it is fitted
        assert "window slid by 8 (--slide)" in status
        contexts = [s.context for s in app.history]
        assert min(contexts[contexts.index(WINDOW) + 1:]) == WINDOW - 8 + 1
        seen = app.history[-1].context + 1
        assert seen == WINDOW or f"(sees {seen}/{WINDOW})" in status
        # A long prefill's progress, as the engine reports it between chunks.
        app.post_message(EngineReplies([p.Prefilling(app.last_engine_seq, 1024, 4500)]))
        await pilot.pause()
        status = str(app.query_one("#status").render())
        assert "re-encoding the window 1,024 / 4,500 tokens · esc stops" in status
        app.history.clear()  # a new turn's prompt, longer than the window
        app.turn.prompt_ids = tuple(range(6000))
        app.post_message(EngineReplies([p.Prefilling(app.last_engine_seq, 256, 4500)]))
        await pilot.pause()
        assert "prefill 256 / 4,500 tokens (the last of 6,000) · esc stops" in \
            app.query_one("#status").full_text


def test_a_long_prompt_on_the_real_model_sees_the_slid_window(smollm2, capsys):
    """1,100 tokens into a 1,024-token window sliding by 512: the model sees the last 588,
    exactly as transformers computes them."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    text = " ".join(f"item {i}: the quick brown fox." for i in range(200))
    ids = tokenizer(text)["input_ids"][:1100]
    prompt = tokenizer.decode(ids)
    assert tokenizer(prompt)["input_ids"] == ids
    code, out, err = run_cli(capsys, "trace", smollm2, "--prompt", prompt, "--window", 1024,
                             "--temperature", 0, "--max-new-tokens", 2, "--json",
                             "--device", "cpu")
    assert code == 0, err
    assert "the model sees the last 588 (its window is 1,024, which slides 512" in err
    reference = reference_model(smollm2)
    for line in out.splitlines():
        step = json.loads(line)
        window = ids[512:]
        assert step["context"] == len(window)
        with torch.no_grad():
            logits = reference(torch.tensor([window])).logits[0, -1]
        probs = torch.softmax(logits.double(), dim=-1)
        assert [c["prob"] for c in step["candidates"]] == pytest.approx(
            probs.topk(5).values.tolist(), abs=1e-5)
        ids.append(step["chosen"]["id"])
