"""Hostile prompts and knob values: each works or gets a one-line message naming
the problem; the TUI keeps the user's text."""

import json

import pytest
from conftest import settle
from textual.widgets import Input

from conftest import run_cli
from minigpt.engine.engine import Engine
from minigpt.errors import PromptError
from minigpt.settings import SamplingSettings

WORKING_PROMPTS = {
    "cjk": "农夫山泉 东方树叶 茉莉花茶",
    "emoji": "🙂👍🏽🇨🇳 ok",
    "combining marks": "e\u0301 a\u0308\u0323 Z\u0351\u0352\u0353",
    "control characters": "a\x00b\x07c\x1b[31mred\x1b[0m\t\r\n",
    "special-token text": "<|endoftext|><|fim_prefix|><|im_start|>",
    "100,000-character paste": "农夫山泉 天然水 550ml×24瓶 整箱\n" * 4_000,
}


@pytest.mark.parametrize("name", WORKING_PROMPTS)
def test_hostile_prompts_generate(capsys, tiny_ckpt, name):
    prompt = WORKING_PROMPTS[name]
    assert len(prompt) < 100_000 or name.startswith("100,000")
    code, out, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", prompt,
                             "--max-new-tokens", "3", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["prompt"] == prompt and len(result["token_ids"]) == 3


def test_long_prompt_conditions_on_the_last_window(tiny_loaded):
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(temperature=0))
    engine.reset(WORKING_PROMPTS["100,000-character paste"])
    step = engine.step()
    assert step.context == engine.context_length


@pytest.mark.parametrize("prompt, fragment", [
    ("", "prompt is empty"),
    ("ok \ud800 no", "lone surrogate"),
])
def test_unusable_prompts_are_one_line(capsys, tiny_ckpt, prompt, fragment):
    code, _, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", prompt)
    assert code == 2 and fragment in err and err.count("\n") == 1


def test_unusable_prompt_leaves_engine_as_it_was(tiny_loaded):
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(max_new_tokens=2))
    engine.reset("first")
    engine.step()
    with pytest.raises(PromptError):
        engine.reset("\udfff")
    assert engine.prompt == "first" and len(engine.steps) == 1


@pytest.mark.parametrize("args", [
    ["--temperature", "100"],
    ["--top-k", "1000000"],
    ["--top-p", "1"],
    ["--repetition-penalty", "50"],
    ["--temperature", "1000", "--top-k", "1"],
])
def test_extreme_but_valid_knobs_work(capsys, tiny_ckpt, args):
    code, out, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", "hi",
                             "--max-new-tokens", "4", "--json", *args)
    assert code == 0, err
    assert len(json.loads(out)["token_ids"]) == 4


def test_max_new_tokens_100000_is_accepted_and_runs(tiny_loaded):
    engine = Engine.from_loaded(tiny_loaded, SamplingSettings(max_new_tokens=100_000))
    engine.reset("hi")
    assert len(list(engine.run(5))) == 5 and engine.remaining == 100_000 - 5


@pytest.mark.parametrize("field, text", [
    ("temperature", "nan"), ("temperature", "1e999"), ("temperature", "-0.1"),
    ("top_k", "-1"), ("top_k", "2.5"), ("top_p", "2"), ("max_new_tokens", "99999999999"),
    ("max_new_tokens", "ten"), ("seed", "-5"), ("seed", "99999999999999999999999"),
    ("repetition_penalty", "abc"), ("repetition_penalty", "0"),
])
async def test_sidebar_rejects_nonsense_and_keeps_last_good_value(make_tui, field, text):
    app = make_tui()
    async with app.run_test(size=(120, 40)) as pilot:
        before = app.settings
        knob = app.query_one(f"#knob-{field}", Input)
        knob.value = text
        await pilot.pause()
        assert knob.has_class("invalid") and knob.value == text
        assert app.settings == before


@pytest.mark.parametrize("field, text, expected", [
    ("temperature", "100", 100.0), ("top_k", "1000000", 1_000_000),
    ("max_new_tokens", "100000", 100_000),
])
async def test_sidebar_accepts_extreme_valid_values(make_tui, field, text, expected):
    app = make_tui()
    async with app.run_test(size=(120, 40)) as pilot:
        app.query_one(f"#knob-{field}", Input).value = text
        await pilot.pause()
        assert getattr(app.settings, field) == expected


@pytest.mark.parametrize("name", ["100,000-character paste", "control characters", "emoji"])
async def test_tui_generates_from_hostile_prompt_and_keeps_it(make_tui, name):
    app = make_tui(max_new_tokens=3)
    async with app.run_test() as pilot:
        prompt = app.query_one("#prompt", Input)
        prompt.value = WORKING_PROMPTS[name]
        prompt.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert len(app.history) == 3
        assert app.turn.prompt == WORKING_PROMPTS[name]


async def test_tui_keeps_a_prompt_it_cannot_use(make_tui):
    app = make_tui(max_new_tokens=3)
    async with app.run_test() as pilot:
        prompt = app.query_one("#prompt", Input)
        prompt.value = "keep \ud800 me"
        prompt.focus()
        await pilot.press("enter")
        await settle(app, pilot)
        assert prompt.value == "keep \ud800 me" and not app.running
        assert "lone surrogate" in str(app.query_one("#status").render())


def test_unbounded_input_is_refused_in_one_line_before_it_is_read(tiny_ckpt, tmp_path):
    """score --file - </dev/zero took 1.5 GB and died with MemoryError; a 109 MB corpus
    made tiktoken panic. Inputs are read in bounds and refused past a stated size."""
    import os
    import subprocess
    import sys

    exe = os.path.join(os.path.dirname(sys.executable), "minigpt")
    with open("/dev/zero", "rb") as zero:
        done = subprocess.run([exe, "score", str(tiny_ckpt), "--file", "-", "--device", "cpu"],
                              stdin=zero, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "minigpt: error: the text on stdin is over 4 MiB: give a shorter text"]
    huge = tmp_path / "huge.txt"
    with open(huge, "wb") as f:
        f.truncate(200 << 20)  # sparse: refused by its size, never read
    for command in (["score", str(tiny_ckpt), "--file", str(huge)], ["train", str(huge)]):
        done = subprocess.run([exe, *command, "--device", "cpu"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 2 and "MiB is over the" in done.stderr
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
