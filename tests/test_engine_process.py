"""The engine in its own process: ordered ops, no stuck states, crash isolation, no torch
in the UI process."""

import asyncio
import os
import signal
import subprocess
import sys
import textwrap

import pytest
from textual.widgets import Input

from conftest import mirror_engine, settle
from minigpt.engine.engine import Engine
from tui.client import EngineClient
from tui.lines import StatusLine
from tui.widgets import CandidatesTable, Transcript


def status(app) -> str:
    return str(app.query_one(StatusLine).render())


async def wait_until(pilot, predicate, timeout=60.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "timed out"
        await pilot.pause(0.02)


async def test_fifteen_rapid_steps_give_fifteen_tokens_then_idle(make_tui):
    """Holding the space bar: every press is a token, and the app ends idle (it used to
    stay 'generating' forever when queued workers were cancelled before they ran)."""
    app = make_tui(max_new_tokens=100)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        app.query_one("#prompt", Input).value = "农夫山泉 "
        await pilot.press("escape", *["space"] * 15)  # no waiting between presses
        await settle(app, pilot)
        assert len(app.history) == 15 and not app.running
        assert status(app).startswith("step · 15 tokens")
        await pilot.press("u", "u")  # two quick undos: two fewer
        await settle(app, pilot)
        assert len(app.history) == 13 and not app.running
        assert status(app).startswith("undo · 13 tokens")
        assert app.query_one(Transcript).plain == "农夫山泉 " + app.turn.completion


async def test_rapid_undo_pick_step_mix_ends_consistent(make_tui, tiny_loaded):
    app = make_tui(max_new_tokens=6)
    async with app.run_test() as pilot:
        await settle(app, pilot)
        await pilot.press(*"hello", "enter")
        await settle(app, pilot)
        await pilot.press("escape", "u", "u", "1", "space", "u", "3", "space", "2")
        await settle(app, pilot)
        # the same keys, one at a time, on an engine in this process
        engine = Engine.from_loaded(tiny_loaded, app.settings)
        engine.reset("hello")
        list(engine.run())
        engine.undo()
        engine.undo()
        engine.step(engine.peek().candidates[0].id)
        engine.step()
        engine.undo()
        engine.step(engine.peek().candidates[2].id)
        engine.step()
        engine.step(engine.peek().candidates[1].id)
        assert [s.chosen.id for s in app.history] == [s.chosen.id for s in engine.steps]
        assert not app.running and app.idle
        assert app.query_one(Transcript).plain == "hello" + engine.completion
        assert app.position == len(engine.tokens)


async def test_typing_while_the_model_loads_runs_when_ready(tiny_ckpt):
    """A fresh engine process: the first frame comes at once, enter is accepted while
    torch imports, and the run starts when the model is ready."""
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    client = EngineClient()
    app = make_app(tiny_ckpt, SamplingSettings(temperature=0, max_new_tokens=4), device="cpu",
                   client=client)
    try:
        async with app.run_test() as pilot:
            assert app.engine_state == "loading"
            assert "loading model" in str(app.query_one("#header").render())
            await pilot.press(*"hi", "enter")
            assert app.engine_state == "loading" and app.running
            await settle(app, pilot)
            assert len(app.history) == 4 and app.engine_state == "ready"
            assert "6.5M params" in str(app.query_one("#header").render())
    finally:
        client.stop()


async def test_engine_killed_mid_run_then_r_restores_the_same_path(tiny_ckpt, tiny_loaded,
                                                                  tmp_path):
    from minigpt.host.session import read_session
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    client = EngineClient()
    session = tmp_path / "s.jsonl"
    app = make_app(tiny_ckpt, SamplingSettings(temperature=1.0, max_new_tokens=100_000),
                   session, device="cpu", client=client)
    try:
        async with app.run_test() as pilot:
            await settle(app, pilot)
            await pilot.press(*"hello", "enter")
            await wait_until(pilot, lambda: len(app.history) >= 5)
            os.kill(client.process.pid, signal.SIGKILL)
            await wait_until(pilot, lambda: app.engine_state == "stopped")
            assert "engine stopped: killed by signal 9" in status(app)
            assert "r restarts" in status(app) and not app.running
            kept = list(app.history)
            assert app.query_one("#prompt", Input).value == "hello"  # nothing lost
            assert app.query_one(Transcript).plain == "hello" + app.turn.completion
            [record] = read_session(session)  # the turn was saved when the engine died
            assert record["tokens"] == [s.chosen.id for s in kept]
            assert isinstance(app.focused, CandidatesTable)  # so r restarts, not types
            # The table on the transcript's last step, not the one it drew ≤ 1/8 s before.
            title = str(app.query_one("#candidates-title").render())
            assert title.startswith(f"step {kept[-1].index} · chose"), title
            table = app.query_one(CandidatesTable)
            assert [int(str(table.get_row_at(r)[2])) for r in range(table.row_count)] == \
                [c.id for c in kept[-1].candidates]
            await pilot.press("space")  # nothing to send it to: said, not lost
            assert "engine stopped" in status(app)
            await pilot.press("r")
            await settle(app, pilot)
            assert app.engine_state == "ready" and app.history == kept  # same steps
            assert "engine restarted" in status(app)  # not the restore's prefill count
            assert [c.id for c in app.preview.candidates] == \
                [c.id for c in mirror_engine(tiny_loaded, app).peek().candidates]
            await pilot.press("space")  # and it goes on from there
            await settle(app, pilot)
            assert app.history[:-1] == kept and len(app.history) == len(kept) + 1
    finally:
        client.stop()


async def test_a_stopped_engine_is_said_and_escape_and_r_work(tiny_ckpt, tiny_loaded):
    """A SIGSTOPped engine left 'generating · 58 tokens · 4 tok/s' on screen for ever and
    escape did nothing. Silence past unresponsive_after (heartbeats stop) is said; escape
    stops waiting; r restarts the engine with the turn as it was."""
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    client = EngineClient()
    app = make_app(tiny_ckpt, SamplingSettings(temperature=0, max_new_tokens=100_000),
                   device="cpu", client=client)
    app.unresponsive_after = 2.0  # the test's own patience (5 s by default)
    stopped = None
    try:
        async with app.run_test() as pilot:
            await settle(app, pilot)
            await pilot.press(*"hello", "enter")
            await wait_until(pilot, lambda: len(app.history) >= 3)
            stopped = client.process.pid
            os.kill(stopped, signal.SIGSTOP)
            await wait_until(pilot, lambda: app.unresponsive)
            shown = status(app)  # at 80 columns: the keys are in the part that fits
            assert "engine silent" in shown and "r restarts it, esc stops waiting" in shown
            assert app.running
            await pilot.press("escape")
            assert not app.running and "stopped waiting" in status(app)
            kept = list(app.history)
            await pilot.press("r")
            await settle(app, pilot)
            assert client.process.pid != stopped and app.engine_state == "ready"
            assert app.history == kept and not app.unresponsive
            assert [c.id for c in app.preview.candidates] == \
                [c.id for c in mirror_engine(tiny_loaded, app).peek().candidates]
            await pilot.press("space")
            await settle(app, pilot)
            assert app.history[:-1] == kept
    finally:
        if stopped is not None:
            try:
                os.kill(stopped, signal.SIGCONT)
            except ProcessLookupError:
                pass
        client.stop()


async def test_a_restarted_engine_continues_the_seeded_stream(tiny_ckpt):
    """The sampler's state comes back too: after a crash, the next sampled tokens are
    those the same keys give when nothing crashed."""
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    client = EngineClient()
    app = make_app(tiny_ckpt, SamplingSettings(temperature=1.0, max_new_tokens=8, seed=7),
                   device="cpu", client=client)
    try:
        async with app.run_test() as pilot:
            app.query_one("#prompt", Input).value = "hello"
            runs = []
            for crash in (False, True):
                await settle(app, pilot)
                app.query_one("#prompt", Input).focus()
                await pilot.press("enter")  # a new turn re-seeds the sampler
                await settle(app, pilot)
                await pilot.press("escape", "u", "u", "u")
                await settle(app, pilot)
                if crash:
                    os.kill(client.process.pid, signal.SIGKILL)
                    await wait_until(pilot, lambda: app.engine_state == "stopped")
                    await pilot.press("r")
                    await settle(app, pilot)
                await pilot.press("g")
                await settle(app, pilot)
                runs.append([s.chosen.id for s in app.history])
            assert runs[0] == runs[1] and len(runs[0]) == 8
    finally:
        client.stop()


def test_the_ui_process_never_imports_torch(tiny_ckpt, tmp_path):
    """A whole session (generate, why, attention, completions, score, branches, model) in a
    fresh interpreter: torch is loaded in the engine process only."""
    script = textwrap.dedent(f"""
        import asyncio, os, sys
        from minigpt.settings import SamplingSettings
        from tui.app import make_app

        async def main():
            app = make_app({str(tiny_ckpt)!r}, SamplingSettings(temperature=0,
                           max_new_tokens=5), {str(tmp_path / "s.jsonl")!r}, device="cpu")
            async with app.run_test(size=(120, 40)) as pilot:
                async def idle():
                    while not app.idle:
                        await pilot.pause(0.02)
                await idle()
                await pilot.press(*"农夫", "enter")
                await idle()
                await pilot.press("escape", "w", "a", "c", "1", "[", "2")
                await idle()
                await pilot.press("t")
                await idle()
                await pilot.press("escape", "m", "escape", "f2")
                await idle()
                await pilot.press("escape", "ctrl+s")
                engine_pid = app.client.process.pid
                with open(f"/proc/{{engine_pid}}/maps") as f:
                    engine_maps = f.read()
                assert len(app.history) == 6, len(app.history)
                assert "libtorch" in engine_maps, "the engine process has no torch?"
            with open("/proc/self/maps") as f:
                own_maps = f.read()
            torch_modules = [m for m in sys.modules if m == "torch" or m.startswith("torch.")]
            print("TORCH_MODULES", torch_modules, "LIBTORCH", "libtorch" in own_maps)

        asyncio.run(main())
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH_MODULES [] LIBTORCH False" in result.stdout


@pytest.mark.parametrize("path_text", ["missing.ckpt"])
async def test_a_model_that_does_not_load_exits_with_one_line(tmp_path, path_text):
    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    client = EngineClient()
    app = make_app(tmp_path / path_text, SamplingSettings(), device="cpu", client=client)
    try:
        async with app.run_test() as pilot:
            await wait_until(pilot, lambda: not app.is_running or app.engine_state == "failed")
    finally:
        client.stop()
    assert app.return_code == 2 and "no such file" in app.load_error
