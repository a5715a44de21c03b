"""End to end on a real trained model, SmolLM2-135M-Instruct (``real_model.py``): what a
new user met in ten minutes with it, in the explorer as the user drives it."""

import os
import signal

import pytest
from textual.widgets import Input

from conftest import screen_text, settle
from test_chat import reference_ids

FRANCE = "What is the capital of France?"


@pytest.fixture
def real_app(smollm2, engine_client, monkeypatch):
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    monkeypatch.chdir(smollm2.parent)

    def factory(max_new_tokens=24, **options):
        settings = SamplingSettings(temperature=0, max_new_tokens=max_new_tokens)
        return make_app(smollm2.name, settings, device="cpu", client=engine_client, **options)
    return factory


def pause_engine(client):
    """SIGSTOP the engine process: what the app does until ``resume_engine`` happens while
    the model is still loading, however fast the machine (or a warm engine) is."""
    os.kill(client.process.pid, signal.SIGSTOP)


def resume_engine(client):
    os.kill(client.process.pid, signal.SIGCONT)


async def test_a_message_typed_while_the_model_loads_is_a_chat_turn(real_app, smollm2,
                                                                   engine_client):
    """It was sent as raw text: '› What is the capital of France?‹<|im_end|>›', 'end of
    text · 1 token'. It is the first chat turn now, with the ids it gets when sent later."""
    app = real_app()
    pause_engine(engine_client)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press(*FRANCE, "enter")
            assert app.info is None and app.deferred  # typed and sent while loading
            resume_engine(engine_client)
            await settle(app, pilot, timeout=120)
            assert app.chat_mode
            assert app.turn.messages == ({"role": "user", "content": FRANCE},)
            assert list(app.turn.prompt_ids) == reference_ids(smollm2,
                                                              list(app.turn.messages))
            assert "Paris" in app.reply_text()
            shown = screen_text(app)
            assert f"user › {FRANCE}" in shown and "Paris" in shown
            assert app.query_one("#prompt", Input).value == ""
    finally:
        resume_engine(engine_client)


async def test_two_turns_at_80x24_show_each_reply_to_its_end(real_app):
    """The reply's last line ('Berlin.‹<|im_end|>›', wrapped) stayed hidden until a
    resize; the end-of-turn token showed twice between turns."""
    app = real_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot, timeout=120)
        for message in (FRANCE, "And of Germany?"):
            prompt = app.query_one("#prompt", Input)
            prompt.value = message
            await pilot.press("enter")
            await settle(app, pilot, timeout=120)
            assert app.history[-1].chosen.special  # the reply ended at <|im_end|>
            last_words = app.reply_text().split()[-1]
            shown = screen_text(app)
            assert f"{last_words}‹<|im_end|>›" in shown.replace("\n", ""), shown
            transcript = app.query_one("#transcript")
            assert transcript.scroll_y == transcript.max_scroll_y
        transcript_rows = [line.split("│")[-1].strip() for line in shown.splitlines()]
        assert "<|im_end|>" not in transcript_rows  # the template's copy, on a line alone


def test_generate_json_keeps_the_end_of_turn_token_out_of_the_completion(smollm2, tmp_path,
                                                                         capsys):
    import json

    from conftest import run_cli

    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "user", "content": FRANCE}]))
    code, out, err = run_cli(capsys, "generate", smollm2, "--messages", messages,
                             "--temperature", 0, "--max-new-tokens", 24, "--json",
                             "--device", "cpu")
    assert code == 0, err
    result = json.loads(out)
    assert result["stop_reason"] == "eos" and "Paris" in result["completion"]
    assert "im_end" not in result["completion"]  # it read "…Paris.‹<|im_end|>›"
    assert result["special_tokens"] == [{"step": len(result["token_ids"]),
                                         "id": result["token_ids"][-1],
                                         "text": "‹<|im_end|>›"}]
