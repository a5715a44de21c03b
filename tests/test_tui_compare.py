"""minigpt-tui A --compare B: B's probability of A's candidates, B's own top-5 (b),
KL/JS of each step, a divergence tint (p), and B driving after x — each checked
against two engines run in this process."""

import torch
from textual.widgets import Input, Static

from conftest import ENDLESS, screen_text, settle, until_streaming, write_book_checkpoint
from minigpt.models.checkpoint import load
from minigpt.engine.engine import Engine
from minigpt.engine.sampling import exact_softmax
from minigpt.settings import SamplingSettings
from tui.screens import ModelScreen
from tui.lines import OneLine, StatusLine
from tui.widgets import CandidatesTable, Transcript, short_prob

PROMPT = "hello world, "


def engines(a_path, b_path):
    settings = SamplingSettings(temperature=0, max_new_tokens=40)
    return (Engine.from_loaded(load(a_path, device="cpu"), settings),
            Engine.from_loaded(load(b_path, device="cpu"), settings))


def reference(a_path, b_path, tokens):
    """B's view of the position after ``tokens``: probabilities and raw logits, and A's."""
    a, b = engines(a_path, b_path)
    with torch.inference_mode():
        la = a.decoder.last_logits(tokens[-a.context_length:])
        lb = b.decoder.last_logits(tokens[-b.context_length:])
    return exact_softmax(la), exact_softmax(lb), la.double(), lb.double()


def kl_js(la, lb):
    pa, pb = torch.softmax(la, -1), torch.softmax(lb, -1)
    m = (pa + pb) / 2
    kl = torch.sum(pa * (torch.log(pa) - torch.log(pb))).item()
    js = 0.5 * (torch.sum(pa * torch.log(pa / m)) + torch.sum(pb * torch.log(pb / m))).item()
    return kl, js


def rows(app):
    table = app.query_one(CandidatesTable)
    return [[str(cell) for cell in table.get_row_at(r)] for r in range(table.row_count)]


def labels(app):
    return [str(c.label) for c in app.query_one(CandidatesTable).columns.values()]


async def generate(app, pilot, count=None):
    await settle(app, pilot)
    app.query_one("#prompt", Input).value = PROMPT
    await pilot.press("enter")
    await settle(app, pilot)


async def test_each_step_shows_b_beside_a(make_tui, tiny_ckpt, other_ckpt):
    app = make_tui(compare=other_ckpt, max_new_tokens=20)  # past both windows
    # 1e-5, as conftest's assert_close: the engine process may use another thread count
    async with app.run_test(size=(120, 40)) as pilot:
        await generate(app, pilot)
        step = app.history[-1]
        tokens = list(app.turn.prompt_ids) + [s.chosen.id for s in app.history[:-1]]
        pa, pb, la, lb = reference(tiny_ckpt, other_ckpt, tokens)
        versus = step.versus
        assert versus.other == "B" and step.chosen.id == int(torch.argmax(la))
        ids = [c.id for c in step.candidates]
        assert max(abs(x - pb[i].item()) for x, i in zip(versus.probs, ids)) < 1e-5
        assert [c.id for c in versus.top] == torch.topk(pb, 5).indices.tolist()
        assert max(abs(x - pa[c.id].item()) for x, c in zip(versus.top_driver_probs,
                                                          versus.top)) < 1e-5
        kl, js = kl_js(la, lb)
        assert abs(versus.kl - kl) < 1e-5 and abs(versus.js - js) < 1e-5
        # On screen: the browsed step's B column, and KL/JS on the title and status line.
        await pilot.press("escape", "[")
        await settle(app, pilot)
        assert labels(app)[3:] == ["A", "B"]
        assert [r[4] for r in rows(app)] == [short_prob(x) for x in versus.probs]
        title = str(app.query_one("#candidates-title", OneLine).render())
        assert f"KL(A‖B) {versus.kl:.3f} JS {versus.js:.3f}" in title
        last = app.history[-1].versus  # the status line speaks of the step just taken
        assert f"last step KL(A‖B) {last.kl:.3f} JS {last.js:.3f}" in str(
            app.query_one(StatusLine).render())


async def test_b_shows_bs_own_top5_and_back(make_tui, other_ckpt):
    app = make_tui(compare=other_ckpt, max_new_tokens=4)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape")
        preview = app.preview.versus
        await pilot.press("b")
        assert labels(app)[3:] == ["B", "A"]
        assert "table: B's own top-5" in str(app.query_one(StatusLine).render())
        assert [int(r[2]) for r in rows(app)] == [c.id for c in preview.top]
        assert [r[4] for r in rows(app)] == [short_prob(x) for x in preview.top_driver_probs]
        before = len(app.history)
        await pilot.press("1")  # a pick would take A's first, not the B token shown
        await settle(app, pilot)
        assert len(app.history) == before and "b first" in str(
            app.query_one(StatusLine).render())
        await pilot.press("b")
        assert labels(app)[3:] == ["A", "B"]
        assert [int(r[2]) for r in rows(app)] == [c.id for c in app.preview.candidates]
        assert [r[3] for r in rows(app)] == [short_prob(c.prob) for c in app.preview.candidates]


async def test_x_lets_b_drive_from_the_next_token(make_tui, tiny_ckpt, other_ckpt):
    app = make_tui(compare=other_ckpt, max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape", "x")
        await settle(app, pilot)
        assert app.driver == "B" and "B drives" in str(app.query_one("#header").render())
        await pilot.press("space", "space")
        await settle(app, pilot)
        tokens = list(app.turn.prompt_ids) + [s.chosen.id for s in app.history]
        assert [s.versus.other for s in app.history] == ["B"] * 3 + ["A"] * 2
        for step in app.history[3:]:  # B's argmax at its own window, A beside it
            _, _, la, lb = reference(tiny_ckpt, other_ckpt, tokens[:step.position])
            assert step.chosen.id == int(torch.argmax(lb))
        await pilot.press("x")
        await settle(app, pilot)
        assert app.driver == "A"


async def test_p_cycles_probability_divergence_and_off(make_tui, other_ckpt):
    app = make_tui(compare=other_ckpt, max_new_tokens=6)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        turn = app.query_one(Transcript).current
        await pilot.press("escape")  # out of the prompt: p is a key, not a letter
        seen = []
        for _ in range(3):
            await pilot.press("p")
            seen.append((app.tint, turn.tint))
            shown = str(app.query_one(StatusLine).render())
            assert shown.startswith({"probability": "tint p: green ≥.5",
                                     "divergence": "tint JS: red ≥.4", "": "tint off"}[app.tint])
        assert seen == [("probability",) * 2, ("divergence",) * 2, ("", "")]
        assert all(js is not None for _, _, js in turn.segments)


async def test_without_compare_p_toggles_and_x_says_how(make_tui):
    app = make_tui(max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        await pilot.press("escape", "p", "p")
        assert app.tint == ""
        await pilot.press("x")
        assert "--compare" in str(app.query_one(StatusLine).render())
        assert app.history[-1].versus is None


async def test_a_foreign_vocabulary_is_one_line(make_tui, tmp_path, tiny_hp):
    foreign = write_book_checkpoint(tmp_path / "foreign.ckpt",
                                    {**tiny_hp, "max_token_value": 5000})
    app = make_tui(compare=foreign)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(600):
            await pilot.pause(0.05)
            if not app.is_running:
                break
    assert "has 100,256 tokens" in app.load_error and "has 5,000" in app.load_error
    assert "\n" not in app.load_error


async def test_a_restarted_engine_keeps_b_driving(tiny_ckpt, other_ckpt):
    """The engine dies after x: r loads both checkpoints again and B still drives."""
    import os
    import signal

    from tui.app import make_app
    from tui.client import EngineClient

    client = EngineClient()
    app = make_app(tiny_ckpt, SamplingSettings(temperature=0, max_new_tokens=3), device="cpu",
                   client=client, compare=other_ckpt)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await generate(app, pilot)
            await pilot.press("escape", "x")
            await settle(app, pilot)
            kept = list(app.history)
            os.kill(client.process.pid, signal.SIGKILL)
            for _ in range(200):
                await pilot.pause(0.05)
                if app.engine_state == "stopped":
                    break
            await pilot.press("r")
            await settle(app, pilot)
            assert app.driver == "B" and app.history == kept
            await pilot.press("space")
            await settle(app, pilot)
            assert app.history[-1].versus.other == "A"  # chosen by B, A beside it
    finally:
        client.stop()


async def test_the_session_file_keeps_bs_view_of_each_step(make_tui, other_ckpt, tmp_path):
    from minigpt.host.session import read_session

    path = tmp_path / "s.jsonl"
    app = make_tui(compare=other_ckpt, session_path=path, max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await generate(app, pilot)
        steps = list(app.history)
    [record] = read_session(path)
    for saved, step in zip(record["steps"], steps, strict=True):
        v = saved["versus"]
        assert v["model"] == "B" and v["chosen_prob"] == step.versus.chosen_prob
        assert v["candidate_probs"] == list(step.versus.probs)
        assert [c["id"] for c in v["top"]] == [c.id for c in step.versus.top]
        assert (v["kl"], v["js"]) == (step.versus.kl, step.versus.js)


async def test_x_mid_run_lets_the_other_model_drive_the_run_on(make_tui, other_ckpt):
    app = make_tui(compare=other_ckpt, max_new_tokens=ENDLESS)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = PROMPT
        await pilot.press("enter")
        await until_streaming(app, pilot)
        app.query_one(CandidatesTable).focus()  # x is a key here, not a letter
        await pilot.press("x")  # swap while it runs
        for _ in range(3):  # B drives, and the same run goes on
            await until_streaming(app, pilot, steps=len(app.history) + 1)
        await pilot.press("escape")
        await settle(app, pilot)
        drivers = [s.versus.other for s in app.history]  # "B" beside A, "A" beside B
        assert app.driver == "B" and drivers[0] == "B" and drivers[-1] == "A"
        swap = drivers.index("A")
        assert set(drivers[:swap]) == {"B"} and set(drivers[swap:]) == {"A"}
        assert app.turn.prompt == PROMPT and len(app.history) - swap >= 3
        # KL names its direction, and turns with the driver: B's distribution to A's now.
        assert "last step KL(B‖A) " in app.query_one(StatusLine).full_text


def test_a_missing_compare_file_is_one_line_before_the_screen_opens(tiny_ckpt, tmp_path,
                                                                   capsys):
    from tui.__main__ import main

    code = main([str(tiny_ckpt), "--compare", str(tmp_path / "nope.ckpt"),
                 "--session", str(tmp_path / "s.jsonl")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "nope.ckpt: no such file" in err


async def test_the_title_keeps_the_chosen_token_at_80_columns(make_tui, other_ckpt):
    """KL/JS take room in the candidates' title; the last chosen token must still show
    (it was cut off after 'last chose' when the title also said 'next token')."""
    app = make_tui(compare=other_ckpt, max_new_tokens=3)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press(*"ab", "enter")
        await settle(app, pilot)
        [title] = [line for line in screen_text(app).splitlines() if "last chose" in line]
        assert title.rstrip().endswith(f"last chose {app.history[-1].chosen.text!r}")
        await pilot.press("escape", "[")  # browsing: the keys' reminder goes before a cut
        await settle(app, pilot)
        [title] = [line for line in screen_text(app).splitlines() if " · chose " in line]
        chose = f"chose {app.history[-1].chosen.text!r}"
        assert title.rstrip().endswith((f"{chose} · ([ ])", chose)), title


async def test_the_model_screen_shows_both_checkpoints(make_tui, other_ckpt):
    """m with --compare: A's report, then B's (it showed A alone)."""
    app = make_tui(compare=other_ckpt)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(app, pilot)
        await pilot.press("escape", "m")
        await settle(app, pilot)
        assert isinstance(app.screen, ModelScreen)
        text = "\n".join(str(w.render()) for w in app.screen.query(Static))
        assert "Models · A, then B" in text
        a_at, b_at = text.index("tiny.ckpt · book"), text.index(f"{other_ckpt} · book")
        assert a_at < b_at and "\nB\n" in text[a_at:b_at]


async def test_b_at_another_precision_is_named_in_the_header(tiny_ckpt, engine_client,
                                                             monkeypatch):
    """--dtype-b: the model against itself in bfloat16, B's precision in the header."""
    from tui.app import make_app

    monkeypatch.chdir(tiny_ckpt.parent)
    app = make_app(tiny_ckpt.name, SamplingSettings(temperature=0, max_new_tokens=3),
                   device="cpu", client=engine_client, compare=tiny_ckpt.name,
                   compare_dtype="bfloat16")
    async with app.run_test(size=(120, 30)) as pilot:
        await generate(app, pilot)
        assert app.other_info.dtype == "bfloat16" and app.info.dtype == "float32"
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Compare: swap models" in commands  # with --compare, its commands are there
        assert "(cpu · bf16)" in screen_text(app).splitlines()[0]
        step = app.history[0]
        assert step.versus.chosen_prob != step.chosen.prob and step.versus.kl > 0
