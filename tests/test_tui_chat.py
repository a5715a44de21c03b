"""Chat mode in the explorer: labelled turns in the model's own template, each reply the
engine's steps, the next prompt the next user message, undo back into the message."""

import pytest
from textual.widgets import Input

from conftest import screen_text, settle
from hf_models import write_chat_model
from test_chat import reference_ids

SIZES = [(80, 24), (120, 40)]


@pytest.fixture(scope="module")
def chatml(tmp_path_factory):
    return write_chat_model(tmp_path_factory.mktemp("chat") / "chatml", "chatml")


@pytest.fixture
def chat_app(chatml, engine_client, monkeypatch):
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    monkeypatch.chdir(chatml.parent)  # the header names it "chatml" on every machine

    def factory(**options):
        settings = SamplingSettings(temperature=0, max_new_tokens=5)
        return make_app("chatml", settings, device="cpu", client=engine_client, **options)
    return factory


async def send(app, pilot, text):
    prompt = app.query_one("#prompt", Input)
    prompt.focus()
    prompt.value = text
    await pilot.press("enter")
    await settle(app, pilot)


async def test_two_user_turns_make_one_conversation(chat_app, chatml):
    app = chat_app(system="be brief")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        assert app.chat_mode and "chat: type a message" in str(app.query_one("#status").render())
        await send(app, pilot, "hello 农夫")
        first = app.turn
        assert first.messages == ({"role": "system", "content": "be brief"},
                                  {"role": "user", "content": "hello 农夫"})
        assert list(first.prompt_ids) == reference_ids(chatml, list(first.messages))
        assert app.query_one("#prompt", Input).value == ""  # sent: the box is empty again
        reply = "".join(s.text for s in first.steps if not s.chosen.special)
        await send(app, pilot, "the cat")
        second = app.turn
        assert second.messages[2] == {"role": "assistant", "content": reply}
        assert second.messages[3] == {"role": "user", "content": "the cat"}
        assert list(second.prompt_ids) == reference_ids(chatml, list(second.messages))
        shown = screen_text(app)
        assert "user › hello 农夫" in shown and "user › the cat" in shown
        assert "assistant ›" in shown and "<|im_start|>" in shown  # the template, dimmed


async def test_undo_past_a_replys_start_edits_that_message(chat_app, chatml):
    app = chat_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hi")
        await send(app, pilot, "the cat")
        app.query_one("#candidates").focus()
        for _ in range(len(app.history)):
            await pilot.press("backspace")
            await settle(app, pilot)
        assert not app.history
        await pilot.press("backspace")  # past the start: the message comes back
        await settle(app, pilot)
        prompt = app.query_one("#prompt", Input)
        assert prompt.value == "the cat"
        # The real-model pass: focus moved to the prompt, so the next u was typed into the
        # message ("Write a haiku about the sea.u"). It stays; the status says where.
        assert app.focused is app.query_one("#candidates")
        assert "back in the prompt" in str(app.query_one("#status").render())
        await pilot.press("u", "u")
        await settle(app, pilot)
        assert prompt.value == "the cat" and "nothing more to undo" in str(
            app.query_one("#status").render())
        await pilot.press("i")
        assert app.focused is prompt
        prompt.value = "the dog"
        await pilot.press("enter")
        await settle(app, pilot)
        assert [m["content"] for m in app.turn.messages][::2] == ["hi", "the dog"]
        assert len(app.turn.messages) == 3  # replaced, not appended
        assert "user › the cat" not in screen_text(app)
        # The hands-on pass: the edited turn repeated the whole conversation, dimmed.
        from tui.widgets import Transcript
        header = app.query_one(Transcript).current.header.plain
        assert "hi" not in header and header.startswith("<|im_end|>") and \
            "user › the dog" in header


async def test_stepping_an_edited_message_starts_its_turn(chat_app):
    """The hands-on pass: space while the message was back in the prompt stepped the
    removed turn on screen into the previous reply. It starts the edited turn now."""
    from tui.widgets import Transcript

    app = chat_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hi")
        first_reply = list(app.query_one(Transcript).current.segments)
        await send(app, pilot, "the cat")
        app.query_one("#candidates").focus()
        for _ in range(len(app.history) + 1):
            await pilot.press("backspace")
            await settle(app, pilot)
        assert app.query_one("#prompt", Input).value == "the cat" and app.preview is None
        await pilot.press("escape", "space")
        await settle(app, pilot)
        turns = list(app.query_one(Transcript).query("Turn"))
        assert turns[-2].segments == first_reply  # the previous reply is untouched
        assert len(app.history) == 1 and len(app.turn.messages) == 3
        assert app.turn.messages[-1]["content"] == "the cat"


async def test_no_chat_types_raw_text(chat_app):
    app = chat_app(chat=False)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hello")
        assert not app.chat_mode and app.turn.messages is None and app.turn.prompt == "hello"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_turns_snapshot(snap_compare, chat_app, size):
    async def two_turns(pilot):
        app = pilot.app
        await settle(app, pilot)
        await send(app, pilot, "hello")
        await send(app, pilot, "the cat")
        await pilot.press("escape", "backspace")  # undo one: no tok/s (a speed) on screen
        await settle(app, pilot)

    assert snap_compare(chat_app(system="be brief"), terminal_size=size, run_before=two_turns)


async def test_a_reopened_session_is_the_same_conversation(chat_app, chatml, tmp_path):
    from minigpt.host.session import read_session

    path = tmp_path / "chat.jsonl"
    app = chat_app(session_path=path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hi")
        await send(app, pilot, "the cat")
        conversation = app.turn.messages
        await pilot.press("ctrl+q")
    record = read_session(path)[-1]
    assert tuple(record["messages"]) == conversation
    reopened = chat_app(session_path=path, resumed=read_session(path))
    async with reopened.run_test(size=(100, 30)) as pilot:
        await settle(reopened, pilot)
        assert reopened.turn.messages == conversation
        assert [s.chosen.id for s in reopened.history] == record["tokens"]
        # The real-terminal pass: the reopened conversation showed several times over
        # (each past turn's whole rendered prompt), the box held the template text, and
        # the typed message went to the table as keys. Each message shows once now, and
        # the next message is typed into the empty, focused box.
        shown = screen_text(reopened)
        assert shown.count("user › hi") == 1 and shown.count("user › the cat") == 1
        assert shown.count("<|im_start|>user") == 2
        prompt = reopened.query_one("#prompt", Input)
        assert prompt.value == "" and reopened.focused is prompt
        await pilot.press(*"and?", "enter")
        await settle(reopened, pilot)
        assert reopened.turn.messages[:4] == conversation + (
            {"role": "assistant", "content": "".join(
                s["text"] for s in record["steps"] if not s["chosen"].get("special"))},)
        assert list(reopened.turn.prompt_ids) == reference_ids(chatml,
                                                               list(reopened.turn.messages))


async def test_a_killed_engine_restores_the_chat_turn(tmp_path):
    """r after a crash restores the conversation's turn exactly (its rendered ids, not the
    rendered text encoded again with a second BOS) and the reply goes on from there."""
    import os
    import signal

    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings
    from tui.app import make_app
    from tui.client import EngineClient

    directory = write_chat_model(tmp_path / "zephyr", "zephyr")  # a template with bos_token
    settings = SamplingSettings(temperature=0, max_new_tokens=4, ignore_eos=True)
    client = EngineClient()
    app = make_app(str(directory), settings, device="cpu", client=client)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(app, pilot)
            await send(app, pilot, "hello")
            kept, ids = list(app.history), app.turn.prompt_ids
            os.kill(client.process.pid, signal.SIGKILL)
            while app.engine_state != "stopped":
                await pilot.pause(0.05)
            app.query_one("#candidates").focus()
            await pilot.press("r")
            await settle(app, pilot)
            assert app.history == kept and app.turn.prompt_ids == ids
            assert app.position == len(ids) + len(kept)  # the engine holds those ids again
            await pilot.press("space")
            await settle(app, pilot)
            mirror = Engine.from_loaded(load(directory, device="cpu"),
                                        settings.with_(max_new_tokens=5))
            mirror.reset("", messages=list(app.turn.messages))
            assert [s.chosen.id for s in app.history] == [s.chosen.id for s in mirror.run()]
    finally:
        client.stop()


def test_the_end_of_turn_token_shows_once_between_turns():
    """Real model, two turns: 'Paris.‹<|im_end|>›', a blank line, then '<|im_end|>' again
    (the reply's own end-of-turn token, then the template's copy of it in the next
    turn's header). The header starts after what the reply already showed."""
    from types import SimpleNamespace

    from tui.chat import conversation_header, shown_reply

    def step(text, special=False):
        return SimpleNamespace(text=text, chosen=SimpleNamespace(special=special))

    first = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    reply = [step("Paris"), step("."), step("‹<|im_end|>›", special=True)]
    second = first + "Paris.<|im_end|>\n<|im_start|>user\nand?<|im_end|>\n" \
                     "<|im_start|>assistant\n"
    header = conversation_header(second, "and?", first + shown_reply(reply)).plain
    assert header == "<|im_start|>user\nuser › and?<|im_end|>\n<|im_start|>assistant\n" \
                     "assistant › "
    # A reply cut short (max_new_tokens) did not show the token: the header does.
    cut = conversation_header(second, "and?", first + shown_reply(reply[:2])).plain
    assert cut.startswith("<|im_end|>\n<|im_start|>user\n")


async def test_typing_while_a_reopened_session_loads(chat_app, engine_client, tmp_path):
    """Reopen a session, type during the load: the saved knobs were not applied, the last
    turn left the transcript (it stayed in the file), and the status said 'ready · type a
    prompt' during the replay. Now the last turn comes back with its knobs, then the
    typed message continues that conversation."""
    import os
    import signal

    from minigpt.host.session import read_session

    path = tmp_path / "chat.jsonl"
    app = chat_app(session_path=path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        app.query_one("#knob-max_new_tokens", Input).value = "3"
        await send(app, pilot, "hi")
        first = app.turn
    saved = read_session(path)
    assert saved[-1]["settings"]["max_new_tokens"] == 3
    reopened = chat_app(session_path=path, resumed=saved)  # max_new_tokens 5 given
    statuses = []
    shown_status = reopened.set_status
    reopened.set_status = lambda text: (statuses.append(text), shown_status(text))
    os.kill(engine_client.process.pid, signal.SIGSTOP)  # still loading, however fast
    async with reopened.run_test(size=(100, 30)) as pilot:
        try:
            await pilot.press(*"the cat", "enter")
            assert reopened.info is None and reopened.deferred
        finally:
            os.kill(engine_client.process.pid, signal.SIGCONT)
        await settle(reopened, pilot)
        assert reopened.settings.max_new_tokens == 3  # the session's knobs
        assert reopened.turn.messages == (
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "".join(
                s.text for s in first.steps if not s.chosen.special)},
            {"role": "user", "content": "the cat"})
        shown = screen_text(reopened)
        assert "user › hi" in shown and "user › the cat" in shown
        assert not any("type a prompt" in status for status in statuses)
        assert any("reopening the session's last turn" in status for status in statuses)


async def test_f2_in_a_chat_scores_the_assistant_messages_as_the_cli(chat_app, chatml):
    """f2 scored the whole rendered turn, system prompt included, while `score --messages`
    scores assistant tokens only. Both score the assistant's messages now, the same
    numbers, and an edited reply is scored in its place."""
    from minigpt.engine.score import score_messages
    from minigpt.models.checkpoint import load
    from test_tui_score import assert_same_score, summary, wait_scored
    from tui.scoring import ScoreScreen

    app = chat_app(system="be brief")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hi")
        await send(app, pilot, "the cat")
        await pilot.press("f2")
        await wait_scored(app, pilot)
        screen = app.screen
        assert isinstance(screen, ScoreScreen) and screen.conversation
        reply = app.reply_text()
        assert screen.query_one("TextArea").text == reply
        loaded = load(chatml, device="cpu")
        messages = [*app.turn.messages, {"role": "assistant", "content": reply}]
        expected, _ = score_messages(loaded.model, loaded.tokenizer, loaded.chat, messages,
                                     loaded.vocab_size, loaded.context_length)
        assert_same_score(screen.score, expected)
        assert "assistant tokens scored" in summary(screen)
        screen.query_one("TextArea").text = "the end"
        await pilot.press("f2")
        await wait_scored(app, pilot)
        messages[-1] = {"role": "assistant", "content": "the end"}
        expected, _ = score_messages(loaded.model, loaded.tokenizer, loaded.chat, messages,
                                     loaded.vocab_size, loaded.context_length)
        assert_same_score(screen.score, expected)


async def test_escape_stops_a_template_that_never_ends(chatml, engine_client, tmp_path,
                                                       monkeypatch):
    """A template that never finishes spun the engine while the status said "ready" and
    escape did nothing. The status says the turn is starting; escape ends the rendering
    with a message, and the explorer goes on."""
    import shutil

    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    directory = shutil.copytree(chatml, tmp_path / "endless")
    (directory / "chat_template.jinja").write_text(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
    monkeypatch.chdir(tmp_path)
    app = make_app("endless", SamplingSettings(temperature=0, max_new_tokens=3), device="cpu",
                   client=engine_client)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "hi"
        await pilot.press("enter")
        assert "starting the turn" in str(app.query_one("#status").render())
        await pilot.press("escape")
        await settle(app, pilot)
        status = str(app.query_one("#status").render())
        # Escape ended it (or, on a slow machine, kept it from starting), not the 5 s limit.
        assert "did not finish" not in status and "stopped" in status, status
        assert not app.history and app.engine_state == "ready"


async def test_escape_while_loading_drops_the_typed_message(chat_app, engine_client):
    """A message typed during the load, then escape: it does not run once the model is
    ready (escape only stopped ops already sent)."""
    import os
    import signal

    app = chat_app()
    os.kill(engine_client.process.pid, signal.SIGSTOP)
    async with app.run_test(size=(100, 30)) as pilot:
        try:
            await pilot.press(*"hello", "enter")
            assert app.deferred and app.running
            await pilot.press("escape")
            assert not app.deferred and "will not run" in str(
                app.query_one("#status").render())
        finally:
            os.kill(engine_client.process.pid, signal.SIGCONT)
        await settle(app, pilot)
        assert not app.turn.prompt and not app.history
        assert app.query_one("#prompt", Input).value == "hello"  # kept, to send again


async def test_a_message_undone_into_the_prompt_and_replaced_is_gone_on_reopen(chat_app,
                                                                                tmp_path):
    """The hands-on pass: a turn undone back into the prompt and replaced by another
    message came back on reopen (the model no longer saw it)."""
    from minigpt.host.session import read_session

    path = tmp_path / "chat.jsonl"
    app = chat_app(session_path=path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(app, pilot)
        await send(app, pilot, "hi")
        await send(app, pilot, "the cat")
        app.query_one("#candidates").focus()
        for _ in range(len(app.history) + 1):
            await pilot.press("backspace")
            await settle(app, pilot)
        assert app.query_one("#prompt", Input).value == "the cat"
        await send(app, pilot, "the dog")
        await pilot.press("ctrl+q")
    turns = read_session(path)
    assert [t["messages"][-1]["content"] for t in turns] == ["hi", "the dog"]
    reopened = chat_app(session_path=path, resumed=turns)
    async with reopened.run_test(size=(100, 30)) as pilot:
        await settle(reopened, pilot)
        shown = screen_text(reopened)
        assert "user › the cat" not in shown and "user › the dog" in shown
