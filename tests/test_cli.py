"""The headless CLI: JSON shapes, determinism, and one-line errors with exit status 2."""

import io
import json
import subprocess
import sys

import pytest
import torch

from conftest import run_cli
from minigpt.cli.main import main
from reference import book_logits, random_book_state_dict


def test_generate_json(capsys, tiny_ckpt):
    code, out, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", "农夫山泉 ",
                             "--max-new-tokens", 7, "--json")
    assert code == 0
    data = json.loads(out)
    assert set(data) >= {"prompt", "completion", "token_ids", "seconds"}
    assert data["prompt"] == "农夫山泉 " and len(data["token_ids"]) == 7
    assert "\ufffd" not in data["completion"]


def test_generate_streams_text(capsys, tiny_ckpt):
    code, out, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", "Hello",
                             "--max-new-tokens", 5, "--temperature", 0)
    assert code == 0 and out.startswith("Hello")
    assert "5 tokens" in err


def test_trace_json_matches_reference(capsys, tiny_ckpt, tiny_hp):
    code, out, _ = run_cli(capsys, "trace", tiny_ckpt, "--prompt", "one two three four five six",
                           "--max-new-tokens", 25, "--temperature", 0, "--json",
                           "--device", "cpu")  # the reference runs on the CPU
    assert code == 0
    sd = random_book_state_dict(tiny_hp)
    from minigpt.text.tokenizer import cl100k
    ids = cl100k().encode("one two three four five six")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["step"] for line in lines] == list(range(1, 26))
    for line in lines:
        probs = torch.softmax(book_logits(sd, tiny_hp, ids)[-1], -1)
        top = torch.topk(probs, 5)
        assert [c["id"] for c in line["candidates"]] == top.indices.tolist()
        assert [c["prob"] for c in line["candidates"]] == pytest.approx(top.values.tolist(),
                                                                        abs=1e-5)
        assert line["chosen"]["id"] == top.indices[0].item()
        assert set(line["chosen"]) >= {"id", "text", "prob"}
        ids.append(line["chosen"]["id"])
    assert lines[-1]["text"].startswith("one two three four five six")


def test_same_seed_same_tokens(capsys, tiny_ckpt):
    args = ("generate", tiny_ckpt, "--prompt", "abc", "--max-new-tokens", 12, "--temperature",
            1.0, "--json")
    first = json.loads(run_cli(capsys, *args, "--seed", 5)[1])["token_ids"]
    second = json.loads(run_cli(capsys, *args, "--seed", 5)[1])["token_ids"]
    other = json.loads(run_cli(capsys, *args, "--seed", 6)[1])["token_ids"]
    assert first == second != other


def test_inspect_json(capsys, tiny_ckpt, tiny_hp):
    code, out, _ = run_cli(capsys, "inspect", tiny_ckpt, "--json", "--device", "cpu")
    data = json.loads(out)
    assert data["h_params"] == tiny_hp and data["format"].startswith("book")
    names = {t["name"]: t["shape"] for t in data["tensors"]}
    assert names["token_embedding_lookup_table.weight"] == [100256, 32]
    assert data["parameters"] > 0 and data["device"] == "cpu"


def test_inspect_human(capsys, tiny_ckpt):
    code, out, _ = run_cli(capsys, "inspect", tiny_ckpt)
    assert code == 0 and "transformer_blocks.0.mha.heads.0.Wq.weight" in out


@pytest.mark.parametrize("args, fragment", [
    (["--temperature", "-1"], "temperature must be ≥ 0"),
    (["--temperature", "nan"], "temperature must be a finite number"),
    (["--top-k", "0"], "top_k must be an integer ≥ 1"),
    (["--top-p", "0"], "top_p must be in (0, 1]"),
    (["--top-p", "1.5"], "top_p must be in (0, 1]"),
    (["--max-new-tokens", "-3"], "max_new_tokens must be an integer ≥ 0"),
    (["--device", "tpu"], "unknown device 'tpu'"),
    (["--top-k", "many"], "not an integer"),
    (["--temperature", "1e999"], "finite"),
    (["--temperature", "abc"], "not a number"),
    (["--max-new-tokens", "99999999999"], "max_new_tokens must be ≤"),
    (["--seed", "-1"], "seed must be"),
    (["--repetition-penalty", "0"], "repetition_penalty must be in [0.01, 100]"),
    (["--temperature", "1e-40"], "temperature must be 0 (greedy) or ≥ 0.0001"),
    (["--repetition-penalty", "1e-300"], "repetition_penalty must be in [0.01, 100]"),
    (["--top-p", "nan"], "top_p must be a finite number"),
    (["--top-k", "-5"], "top_k must be an integer ≥ 1"),
])
def test_bad_knobs_one_line(capsys, tiny_ckpt, args, fragment):
    code, out, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", "hi", *args)
    assert code == 2 and fragment in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_empty_prompt(capsys, tiny_ckpt):
    code, _, err = run_cli(capsys, "generate", tiny_ckpt, "--prompt", "")
    assert code == 2 and "prompt is empty" in err


def test_prompt_outside_vocabulary(capsys, tmp_path, tiny_hp):
    hp = dict(tiny_hp, max_token_value=1000)
    torch.save({"model_state_dict": random_book_state_dict(hp), "h_params": hp}, tmp_path / "s.ckpt")
    code, _, err = run_cli(capsys, "generate", tmp_path / "s.ckpt", "--prompt", "hello")
    assert code == 2 and "'hello' is token 15339" in err and "1000 tokens" in err


def test_missing_checkpoint_in_a_real_process(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "minigpt.cli", "inspect",
                           str(tmp_path / "missing.ckpt")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().endswith("no such file") and proc.stderr.count("\n") == 1


def test_help_and_usage_errors_import_no_torch():
    """`minigpt --help` and argument errors answer before torch could load."""
    import subprocess
    import sys
    code = ("import sys\nfrom minigpt.cli.main import main\n"
            "for argv in (['--help'], ['train', '--help'], ['generate', '--top-k', 'x']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('TORCH', 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    assert "TORCH False" in out and "--max-iters" in out


def test_building_a_model_imports_no_dynamo(tiny_ckpt):
    import subprocess
    import sys
    code = ("import sys\nimport torch\nfrom minigpt.models.checkpoint import load\n"
            f"load({str(tiny_ckpt)!r}, device='cpu')\n"
            "print('DYNAMO', any(m.startswith('torch._dynamo.convert_frame') "
            "for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120).stdout
    assert "DYNAMO False" in out


def test_inspect_in_a_narrow_terminal_wraps_tensor_names(tiny_ckpt):
    """At 40 columns the names wrap instead of ending in the same
    'transformer_blocks.0.mha…' for every tensor of a block."""
    from rich.console import Console

    from minigpt.models.checkpoint import load
    from minigpt.cli.render import inspect_renderables, inspect_report

    console = Console(width=40, record=True, file=io.StringIO())
    for renderable in inspect_renderables(inspect_report(load(tiny_ckpt, "cpu"))):
        console.print(renderable)
    text = console.export_text()
    assert "…" not in text and "Wq.weight" in text


def test_a_default_that_is_not_the_shipped_model_is_named(capsys, tiny_ckpt, tmp_path,
                                                          monkeypatch):
    """No checkpoint named, a model/model.ckpt in the current directory (a quick train
    there): every command says which file it opened; the shipped model needs no note."""
    import shutil

    (tmp_path / "model").mkdir()
    shutil.copy(tiny_ckpt, tmp_path / "model" / "model.ckpt")
    monkeypatch.chdir(tmp_path)
    for command in (["inspect"], ["generate", "--prompt", "hi", "--max-new-tokens", 1],
                    ["trace", "--prompt", "hi", "--max-new-tokens", 1]):
        code, out, err = run_cli(capsys, *command, "--device", "cpu")
        assert code == 0
        assert f"minigpt: using {tmp_path / 'model' / 'model.ckpt'} (this directory's " \
               "model/model.ckpt, not the shipped model)" in err, command
    monkeypatch.chdir(tmp_path / "model")  # no model/ here: the shipped model
    code, out, err = run_cli(capsys, "inspect", "--device", "cpu")
    assert code == 0 and "not the shipped model" not in err


async def test_the_explorer_says_it_opened_another_default(make_tui):
    app = make_tui()
    app.opening_note = "using /x/model/model.ckpt (this directory's model/model.ckpt, not " \
                       "the shipped model)"
    from conftest import settle
    from tui.lines import StatusLine
    async with app.run_test(size=(160, 30)) as pilot:
        await settle(app, pilot)
        assert "ready · using /x/model/model.ckpt" in app.query_one(StatusLine).full_text


def test_minigpt_tui_opens_another_default_by_its_full_path(tiny_ckpt, tmp_path, monkeypatch):
    import shutil
    from types import SimpleNamespace

    import tui.app
    from tui.__main__ import main as tui_main

    opened = {}

    def fake_make_app(path, *args, **kwargs):
        opened.update(path=path, note=kwargs["opening_note"])
        return SimpleNamespace(run=lambda: None, load_error="", return_code=0, exit_note="")

    monkeypatch.setattr(tui.app, "make_app", fake_make_app)
    monkeypatch.setattr("tui.paste.install", lambda: None)
    monkeypatch.setattr("tui.terminal.remember_modes", lambda: None)
    (tmp_path / "model").mkdir()
    shutil.copy(tiny_ckpt, tmp_path / "model" / "model.ckpt")
    monkeypatch.chdir(tmp_path)
    assert tui_main(["--session", str(tmp_path / "s.jsonl")]) == 0
    assert opened["path"] == tmp_path / "model" / "model.ckpt" and "not the shipped" in opened["note"]


def test_help_names_every_command_and_the_sampling_defaults(capsys):
    assert main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "generate, trace, score, compare, inspect and train" in text
    assert main(["generate", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for option, default in (("--max-new-tokens N", "default 200"), ("--top-k K", "default: off"),
                            ("--top-p P", "default: off"), ("--temperature T", "default 0.5")):
        after = text.split(option)[-1]
        assert default in after.split("--")[0], option


@pytest.mark.parametrize("command", [["generate", "--prompt", "hi", "--max-new-tokens", "3"],
                                     ["trace", "--prompt", "hi", "--max-new-tokens", "2",
                                      "--json"],
                                     ["inspect"]])
def test_a_full_stdout_is_one_line_and_a_failure(tiny_ckpt, command):
    """>/dev/full gave an OSError traceback and, for some commands, exit 0."""
    import os
    from pathlib import Path

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    exe = Path(sys.executable).with_name("minigpt")
    with open("/dev/full", "w") as full:
        done = subprocess.run([str(exe), command[0], str(tiny_ckpt), *command[1:], "--device",
                               "cpu"], stdout=full, stderr=subprocess.PIPE, text=True)
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "minigpt: error: cannot write the output: No space left on device"]


@pytest.mark.parametrize("argv, expected", [
    (["generate", "--promt", "hi"], "unknown option --promt (did you mean --prompt?)"),
    (["trace", "--prompt", "hi", "--temprature", "0"],
     "unknown option --temprature (did you mean --temperature?)"),
    (["--bogus"], "unknown option --bogus"),
    (["gen", "--prompt", "x"], "invalid choice: 'gen'"),  # the subcommand's options: not ours
    (["trace", "--prompt", "-- x", "--temperature", "abc"], "not a number: 'abc'"),  # a value
])
def test_a_mistyped_option_is_named(capsys, argv, expected):
    """The real-model pass: --promt hi said only that --prompt or --messages was missing."""
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and expected in err and len(err.strip().splitlines()) == 1
