"""The README's quoted CLI sessions are what the commands print (on the shipped model).

Timings are masked, bars dropped, and 4-decimal probabilities may differ by a last-digit
rounding (another CPU sums in another order); everything else must match line by line.

The quotes are written by the code, never by hand: ``python tests/test_readme.py``
runs each quoted command and puts what it prints in the README (an elided tail, "…",
stays elided).
"""

import re
import shlex
from pathlib import Path

import pytest

from minigpt.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
BARS = re.compile(r"[█▏▎▍▌▋▊▉]+")
TIMES = re.compile(r"\b\d+(\.\d+)? (s|tok/s)\b")


def quoted_sessions() -> list[tuple[str, list[str]]]:
    """(command, the lines quoted under it) of each ```console block that runs minigpt."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    sessions = []
    for block in re.findall(r"```console\n(.*?)```", text, re.S):
        lines = block.rstrip("\n").splitlines()
        if lines and lines[0].startswith("$ minigpt "):
            sessions.append((lines[0][len("$ "):], lines[1:]))
    return sessions


def normalised(line: str) -> str:
    return TIMES.sub(r"T \2", BARS.sub("", line)).rstrip()


def same_line(got: str, quoted: str) -> bool:
    got_words, quoted_words = normalised(got).split(), normalised(quoted).split()
    if len(got_words) != len(quoted_words):
        return False
    for g, q in zip(got_words, quoted_words):
        if g != q and not (re.fullmatch(r"\d\.\d{4}", g) and re.fullmatch(r"\d\.\d{4}", q)
                           and abs(float(g) - float(q)) <= 2e-4):
            return False
    return True


SESSIONS = quoted_sessions()


def test_the_readme_quotes_the_cli():
    assert {command.split()[1] for command, _ in SESSIONS} >= {"generate", "trace", "inspect"}


def printed(command: str) -> list[str]:
    """What ``command`` prints, stdout then stderr, run as the README's reader runs it
    (from the checkout, 100 columns, on the CPU). Call with the working directory and
    COLUMNS set (the test's monkeypatch, or ``update_readme``)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*shlex.split(command)[1:], "--device", "cpu"])
    assert code == 0, err.getvalue()
    return [line.rstrip() for line in (out.getvalue() + err.getvalue()).splitlines()]


def update_readme() -> None:
    """Each quoted session replaced by what its command prints now."""
    import os

    os.chdir(ROOT)
    os.environ["COLUMNS"] = "100"
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")

    def requote(match: re.Match) -> str:
        lines = match[1].rstrip("\n").splitlines()
        if not lines or not lines[0].startswith("$ minigpt "):
            return match[0]
        got = printed(lines[0][len("$ "):])
        elided = next((i for i, line in enumerate(lines[1:]) if line.startswith("…")), None)
        if elided is not None:
            got = [*got[:elided], *lines[1 + elided:]]
        return "```console\n" + "\n".join([lines[0], *got]) + "\n```"

    path.write_text(re.sub(r"```console\n(.*?)```", requote, text, flags=re.S),
                    encoding="utf-8")


@pytest.mark.parametrize("command, quoted", SESSIONS, ids=[c for c, _ in SESSIONS])
def test_a_quoted_session_is_what_the_command_prints(command, quoted, monkeypatch):
    monkeypatch.chdir(ROOT)  # the default checkpoint: the shipped model, as quoted
    monkeypatch.setenv("COLUMNS", "100")
    got = printed(command)
    quoted = [line for line in quoted if normalised(line)]
    got = [line for line in got if normalised(line)]
    elided = next((i for i, line in enumerate(quoted) if line.startswith("…")), None)
    if elided is not None:  # "…  (all 109 tensors follow)": the rest is not quoted
        quoted, got = quoted[:elided], got[:elided]
    assert len(got) == len(quoted), "\n".join(got)
    for g, q in zip(got, quoted):
        assert same_line(g, q), f"printed {g!r}\nquoted  {q!r}"


if __name__ == "__main__":
    update_readme()
