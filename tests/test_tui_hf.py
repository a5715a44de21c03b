"""The explorer on a Hugging Face directory, and compare across two of them."""

import json

import pytest
from textual.widgets import Input

from conftest import screen_text, settle
from hf_models import write_model
from minigpt.cli.main import main


@pytest.fixture(scope="module")
def hf_pair(tmp_path_factory):
    """gpt2 and qwen2 share one trained byte-level vocabulary; llama has its own."""
    root = tmp_path_factory.mktemp("hf")
    return {kind: write_model(root / kind, kind) for kind in ("gpt2", "qwen2", "llama")}


async def test_the_explorer_steps_a_llama_directory(hf_pair, engine_client):
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    settings = SamplingSettings(temperature=0, max_new_tokens=6, ignore_eos=True)
    app = make_app(str(hf_pair["llama"]), settings, device="cpu", client=engine_client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.info.format.startswith("Hugging Face LlamaForCausalLM")
        app.query_one("#prompt", Input).value = "the 农夫"
        await pilot.press("enter")
        await settle(app, pilot)
        mirror = Engine.from_loaded(load(hf_pair["llama"], device="cpu"), settings)
        mirror.reset("the 农夫")
        expected = list(mirror.run())
        assert [s.chosen.id for s in app.history] == [s.chosen.id for s in expected]
        assert [c.id for c in app.preview.candidates] == [c.id for c in mirror.peek().candidates]
        app.query_one("#candidates").focus()
        await pilot.press("backspace")  # undo works as on the book's model
        await settle(app, pilot)
        assert len(app.history) == 5
        shown = screen_text(app)
        assert "\ufffd" not in shown and "<0x" not in shown
        assert f"pos {len(mirror.tokens) - 1}/16" in shown


def test_compare_two_directories_with_one_vocabulary(capsys, hf_pair):
    code = main(["compare", str(hf_pair["gpt2"]), str(hf_pair["qwen2"]), "--prompt", "the cat",
                 "--max-new-tokens", "3", "--temperature", "0", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert len([json.loads(line) for line in out.splitlines()]) == 3
    code = main(["compare", str(hf_pair["gpt2"]), str(hf_pair["llama"]), "--prompt", "the",
                 "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and "compare needs the same" in err and len(err.splitlines()) == 1


async def test_views_a_backend_cannot_fill_say_so_in_one_line(make_tui):
    """The backend seam: a view asks the model's capabilities first; what cannot be shown
    (a server's top-N only, no attention) is one line, never a blank panel."""
    from dataclasses import replace

    from minigpt.steps import Capabilities

    app = make_tui()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.info.capabilities == Capabilities()  # ours: everything
        app.info = replace(app.info, capabilities=Capabilities(  # no top-N either: no why
            full_logits=False, attention=False, scoring=False, top_n=None))
        app.query_one("#candidates").focus()
        for key, said, shown in (("a", "attention needs an in-process model", "attention_shown"),
                                 ("w", "needs the distribution or its top-N", "why_shown"),
                                 ("c", "needs the whole distribution", "complete_shown")):
            await pilot.press(key)
            assert said in str(app.query_one("#status").render()) and not getattr(app, shown)
        await pilot.press("f2")
        assert "scoring needs" in str(app.query_one("#status").render())
        assert app.screen is app.screen_stack[0]  # no score screen opened
