"""Every finished or stopped turn is in the session file when it finishes, whatever the
stop reason — a kill -9 a moment later loses nothing. The real-model pass lost a chat
reply that ended at its end-of-turn token: it was written only when the next turn
started, or on quit."""

import pytest
import torch

from conftest import ENDLESS, eventually, settle, until_streaming, write_book_checkpoint
from hf_models import set_eos, write_chat_model
from minigpt.host.session import read_session
from reference import book_logits, random_book_state_dict


def saved_tokens(path) -> list[int] | None:
    turns = read_session(path) if path.exists() else []
    return turns[-1]["tokens"] if turns else None


def shown_tokens(app) -> list[int]:
    return [s.chosen.id for s in app.history]


async def test_a_run_that_reaches_max_new_tokens_is_saved_when_it_ends(make_tui, tmp_path):
    path = tmp_path / "s.jsonl"
    app = make_tui(session_path=path, max_new_tokens=4)
    async with app.run_test() as pilot:
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        assert read_session(path)[-1]["reason"] == "max_new_tokens"
        assert saved_tokens(path) == shown_tokens(app) and len(app.history) == 4


async def test_a_run_stopped_with_escape_is_saved_when_it_stops(make_tui, tmp_path):
    path = tmp_path / "s.jsonl"
    app = make_tui(session_path=path, max_new_tokens=ENDLESS)
    async with app.run_test() as pilot:
        await pilot.press(*"hi", "enter")
        await until_streaming(app, pilot, steps=3)
        await pilot.press("escape")
        await settle(app, pilot)
        assert read_session(path)[-1]["reason"] == "stopped"
        assert saved_tokens(path) == shown_tokens(app)


async def test_a_reply_that_ends_at_its_end_token_is_saved_when_it_ends(tmp_path,
                                                                       engine_client):
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    directory = write_chat_model(tmp_path / "chatml", "chatml")
    settings = SamplingSettings(temperature=1.0, seed=5, max_new_tokens=20)
    engine = Engine.from_loaded(load(directory, device="cpu"), settings.with_(ignore_eos=True))
    engine.reset("", messages=[{"role": "user", "content": "hi"}])
    drawn = [s.chosen.id for s in engine.run()]
    end = next(i for i in range(2, len(drawn)) if drawn[i] not in drawn[:i])
    set_eos(directory, [drawn[end]])  # a token not drawn before ends the reply there
    expected = drawn[:end + 1]
    path = tmp_path / "s.jsonl"
    app = make_app(str(directory), settings, path, device="cpu", client=engine_client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        assert shown_tokens(app) == expected
        record = read_session(path)[-1]
        assert record["reason"] == "end of text" and record["tokens"] == expected
        assert record["messages"] == [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def fails_at_step_two(tmp_path_factory, tiny_hp):
    """A book checkpoint whose first expected token after "hi" has a NaN embedding: step 1
    is fine, step 2 (which embeds that token) fails."""
    from minigpt.text.tokenizer import cl100k

    sd = random_book_state_dict(tiny_hp)
    prompt = cl100k().encode("hi")
    first = int(book_logits(sd, tiny_hp, prompt)[-1].argmax())
    assert first not in prompt
    sd["token_embedding_lookup_table.weight"][first] = float("nan")
    path = tmp_path_factory.mktemp("nan") / "nan.ckpt"
    torch.save({"model_state_dict": sd, "h_params": tiny_hp}, path)
    return path, first


async def test_a_run_that_fails_midway_is_saved_when_it_fails(fails_at_step_two, tmp_path,
                                                               engine_client):
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    checkpoint, first = fails_at_step_two
    path = tmp_path / "s.jsonl"
    app = make_app(str(checkpoint), SamplingSettings(temperature=0, max_new_tokens=8), path,
                   device="cpu", client=engine_client)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        assert shown_tokens(app) == [first]
        assert "NaN" in str(app.query_one("#status").render())
        record = read_session(path)[-1]
        assert record["reason"] == "error" and record["tokens"] == [first]


async def test_single_steps_are_saved_once_the_keys_pause(make_tui, tmp_path):
    path = tmp_path / "s.jsonl"
    app = make_tui(session_path=path, max_new_tokens=2)
    async with app.run_test() as pilot:
        await pilot.press(*"hi", "enter")
        await settle(app, pilot)
        app.query_one("#candidates").focus()
        await pilot.press("space", "space", "3")
        await settle(app, pilot)
        assert len(app.history) == 5
        assert await eventually(pilot, lambda: saved_tokens(path) == shown_tokens(app))
        assert read_session(path)[-1]["reason"] == "picked"
