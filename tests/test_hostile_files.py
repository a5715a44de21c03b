"""Strings from files and paths reach the terminal as text: no Rich markup, no escape
sequences, no traceback — in the CLI, the explorer, inspect, errors and toasts."""

import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import screen_text, settle, write_book_checkpoint
from minigpt.cli.main import main as cli

NASTY = "[/oops]\x1b[2J\x1b]0;pwned\x07"


@pytest.fixture(scope="module")
def hostile_ckpt(tmp_path_factory, tiny_hp):
    folder = tmp_path_factory.mktemp("hostile") / "ck" / "[exp1]" / "x["  # then "/x]…"
    folder.mkdir(parents=True)
    hp = {**tiny_hp, "note": NASTY, "blob": b"\x00\x1b", "c": complex(1, 2), "s": {1, 2},
          3: "int key", "t": torch.zeros(2)}
    return write_book_checkpoint(folder / "x]\x1b]0;t\x07.ckpt", hp)


def no_raw_escapes(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "Traceback" not in text


def test_inspect_shows_markup_and_escapes_as_text(hostile_ckpt, capsys):
    assert cli(["inspect", str(hostile_ckpt), "--device", "cpu"]) == 0
    out, err = capsys.readouterr()
    no_raw_escapes(out + err)
    assert "[/oops]‹1b›[2J" in out and "[exp1]" in out and "x[/x]‹1b›" in out
    assert "b'\\x00\\x1b'" in out and "(1+2j)" in out and "{1, 2}" in out


def test_inspect_json_gets_string_forms(hostile_ckpt, capsys):
    assert cli(["inspect", str(hostile_ckpt), "--device", "cpu", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    hp = report["h_params"]
    assert hp["note"] == NASTY and hp["3"] == "int key" and hp["c"] == "(1+2j)"
    assert hp["s"] == "{1, 2}" and hp["blob"] == "b'\\x00\\x1b'" and "tensor" in hp["t"]


def test_errors_quoting_a_hostile_path_are_one_clean_line(tmp_path, capsys):
    bad = tmp_path / "[" / "x]" / "bad\x1b[2J.ckpt"  # …/[/x]/bad…
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"junk" * 100)
    assert cli(["inspect", str(bad)]) == 2
    out, err = capsys.readouterr()
    no_raw_escapes(err)
    assert err.count("\n") == 1 and "[/x]/bad‹1b›[2J.ckpt" in err


def test_explorer_with_a_hostile_path_and_h_params(hostile_ckpt, engine_client):
    """Header, model screen (m), status and toasts stay text; the app keeps running."""
    import asyncio

    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    async def run():
        app = make_app(hostile_ckpt, SamplingSettings(temperature=0, max_new_tokens=3),
                       device="cpu", client=engine_client)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)
            header = str(app.query_one("#header").render())
            assert "[exp1]" in header and "‹1b›" in header and "\x1b" not in header
            app.query_one("#transcript").focus()
            await pilot.press("m")
            await pilot.pause()
            shown = screen_text(app)
            assert "[/oops]‹1b›[2J" in shown and "\x1b" not in shown
            await pilot.press("escape")
            app.show_error(f"quoting {NASTY}")
            status = str(app.query_one("#status").render())
            assert "[/oops]" in status and "\x1b" not in status
            assert app.is_running

    asyncio.run(run())


def test_explorer_command_line_with_a_hostile_bad_file(tmp_path):
    bad = tmp_path / "[" / "x]" / "bad\x1b[2J.ckpt"  # …/[/x]/bad…
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"junk" * 100)
    code = "import sys; from tui.__main__ import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, str(bad), "--device", "cpu"],
                            capture_output=True, text=True, timeout=120,
                            env=dict(os.environ, TERM="dumb"))
    assert result.returncode == 2
    [line] = [ln for ln in result.stderr.splitlines() if "minigpt-tui: error:" in ln]
    no_raw_escapes(line[line.index("minigpt-tui: error:"):])
    assert "[/x]/bad‹1b›[2J.ckpt" in line


def test_h_params_nested_20000_deep_are_one_page_not_a_recursion_error(tmp_path, tiny_hp,
                                                                       capsys, engine_client):
    """inspect printed a 3,002-line RecursionError and the explorer sat at loading with
    'internal error: RecursionError'."""
    import asyncio

    from minigpt.settings import SamplingSettings
    from tui.app import make_app

    deep = []
    for _ in range(20_000):
        deep = [deep]
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # for pickling it; reading it back needs none
    try:
        path = write_book_checkpoint(tmp_path / "deep.ckpt", {**tiny_hp, "nested": deep})
    finally:
        sys.setrecursionlimit(limit)
    for args in ([], ["--json"]):
        assert cli(["inspect", str(path), "--device", "cpu", *args]) == 0
        out, err = capsys.readouterr()
        assert "nested deeper than 16" in out and "Traceback" not in out + err

    async def run():
        app = make_app(path, SamplingSettings(temperature=0, max_new_tokens=2), device="cpu",
                       client=engine_client)
        async with app.run_test(size=(120, 40)) as pilot:
            await settle(app, pilot)  # fails if the model did not load
            assert app.engine_state == "ready" and "6.5M params" in screen_text(app)

    asyncio.run(run())


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_a_non_utf8_path_prints_as_escapes_on_a_strict_utf8_stdout(tmp_path, tiny_ckpt, args):
    """PYTHONIOENCODING=utf-8 minigpt inspect $'\\xff\\xfe_bad.ckpt' was a UnicodeEncodeError."""
    import shutil

    name = os.fsdecode(bytes(tmp_path) + b"/\xff\xfe_bad.ckpt")
    shutil.copy(tiny_ckpt, name)
    exe = os.path.join(os.path.dirname(sys.executable), "minigpt")
    done = subprocess.run([exe, "inspect", name, "--device", "cpu", *args], capture_output=True,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    out = done.stdout.decode("utf-8")
    assert done.returncode == 0 and b"Traceback" not in done.stderr
    assert "‹ff›‹fe›_bad.ckpt" in out
