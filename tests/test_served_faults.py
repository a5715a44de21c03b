"""A server that is down, slow, failing or hostile: one line each (exit 1: a fault, not the
user's), bounded memory, nothing raw on the terminal — and what a server sends is checked
before it is used. The real llama-server tests are in test_served_llama.py."""

import json
import time

import pytest

from conftest import run_cli
from fake_servers import VOCAB, FakeServer, llama_props, llama_reply, llama_routes

TRACE = ("trace", "--prompt", "hi", "--max-new-tokens", 2, "--json")


def one_line(code, err, fragment, expected=1):
    assert code == expected, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert fragment in err, err


def test_a_server_that_is_down_is_one_line(capsys):
    from llama_server import free_port

    code, out, err = run_cli(capsys, *TRACE, "--server", f"http://127.0.0.1:{free_port()}")
    one_line(code, err, "connection refused")


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://x", "http://:80", "http://h:99999"])
def test_a_mistyped_address_is_one_line(capsys, url):
    code, out, err = run_cli(capsys, *TRACE, "--server", url)
    one_line(code, err, "not a server address", expected=2)


def test_a_checkpoint_and_a_server_at_once_is_one_line(capsys, tiny_ckpt):
    code, out, err = run_cli(capsys, "trace", tiny_ckpt, "--prompt", "hi",
                             "--server", "http://127.0.0.1:1")
    one_line(code, err, "give one", expected=2)


def test_a_slow_server_is_said_after_the_read_timeout(capsys):
    def slow(body):
        time.sleep(3)
        return llama_reply()

    with FakeServer(llama_routes(slow)) as server:
        started = time.monotonic()
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url, "--read-timeout", 0.5)
    one_line(code, err, "did not answer /completion within 0.5 s")
    assert time.monotonic() - started < 3


@pytest.mark.parametrize("status, body, fragment", [
    (500, {"error": {"code": 500, "message": "boom inside"}}, "(HTTP 500): boom inside"),
    (400, {"detail": "bad ids"}, "(HTTP 400): bad ids"),
    (503, b"<html>down</html>", "(HTTP 503): <html>down</html>"),
])
def test_an_error_reply_is_one_line_with_the_servers_message(capsys, status, body, fragment):
    with FakeServer(llama_routes(lambda b: (status, body))) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
    one_line(code, err, fragment)


def endless(handler):
    """A reply that never ends (no length, the connection kept open): 64 MiB of '['."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.end_headers()
    chunk = b"[" * (1 << 20)
    try:
        for _ in range(64):
            handler.wfile.write(chunk)
    except OSError:
        pass  # the client stopped reading: as it should
    handler.close_connection = True


def cut_short(handler):
    handler.send_response(200)
    handler.send_header("Content-Length", "5000")
    handler.end_headers()
    handler.wfile.write(b'{"completion_probabilities": [')
    handler.close_connection = True


@pytest.mark.parametrize("reply, fragment", [
    (lambda b: b"{not json", "not JSON"),
    (lambda b: b"[" * 200_000 + b"]" * 200_000, "not JSON"),
    (lambda b: lambda h: endless(h), "more than 32 MiB"),
    (lambda b: lambda h: cut_short(h), "closed the connection mid-reply"),
    (lambda b: {"completion_probabilities": "x"}, "without the list"),
    (lambda b: {**llama_reply(), "completion_probabilities": []}, "sent no token"),
])
def test_a_malformed_reply_is_one_line_in_bounded_memory(capsys, reply, fragment):
    import tracemalloc

    with FakeServer(llama_routes(reply)) as server:
        tracemalloc.start()
        try:
            code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
            peak = tracemalloc.get_traced_memory()[1] / 2**20
        finally:
            tracemalloc.stop()
    one_line(code, err, fragment)
    assert peak < 100, f"{peak:.0f} MiB for one bad reply"  # the server's side counted too


def bad_entry(**changes):
    reply = llama_reply()
    reply["completion_probabilities"][0]["top_logprobs"][0].update(changes)
    return reply


@pytest.mark.parametrize("changes, fragment", [
    ({"id": -3}, "not a token id"),
    ({"id": VOCAB + 5}, "not a token id"),
    ({"id": "7"}, "not a token id"),
    ({"logprob": 2.5}, "not a log-probability"),
    ({"logprob": "nan"}, "not a log-probability"),
    ({"bytes": [300]}, "not bytes"),
    ({"bytes": "x" * 100}, None),  # a long piece is cut, not refused
])
def test_what_a_server_sends_is_checked_before_use(capsys, changes, fragment):
    with FakeServer(llama_routes(lambda b: bad_entry(**changes))) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
    if fragment is None:
        assert code == 0, err
    else:
        one_line(code, err, fragment)


def test_escape_sequences_in_token_text_show_as_escapes(capsys):
    hyperlink = b"\x1b]8;;https://evil.example/\x07CLICK\x1b]8;;\x07\x1b[31m"
    with FakeServer(llama_routes(lambda b: llama_reply(piece=hyperlink))) as server:
        for fmt in ((), ("--json",)):
            code, out, err = run_cli(capsys, "trace", "--server", server.url, "--prompt", "hi",
                                     "--max-new-tokens", 1, *fmt)
            assert code == 0, err
            assert "\x1b" not in out and "\x07" not in out
            assert "‹1b›" in out or "\\u001b" not in out and "1b" in out


def test_the_cli_table_says_a_servers_probabilities_are_raw(capsys):
    with FakeServer(llama_routes(lambda b: llama_reply())) as server:
        code, out, err = run_cli(capsys, "trace", "--server", server.url, "--prompt", "hi",
                                 "--max-new-tokens", 1)
    assert code == 0 and "raw p" in out.splitlines()[1], out


def test_the_kind_of_server_is_found_by_asking(capsys):
    with FakeServer(llama_routes(lambda b: llama_reply(),
                                 props=llama_props(model_ftype="MOSTLY_Q4_1"))) as server:
        code, out, err = run_cli(capsys, "inspect", "--server", server.url, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["format"] == "served · llama-server · tiny · Q4_1"
    assert report["backend"] == "served" and report["h_params"]["vocab_size"] == VOCAB
    assert report["window"] == 63  # the slot's 64, less the token a step asks for


def test_neither_kind_of_server_is_one_line(capsys):
    with FakeServer({"GET /health": lambda b: {"status": "ok"}}) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
    one_line(code, err, "neither a llama-server")


def test_escape_gives_up_a_request_the_server_is_slow_to_answer():
    """A long prompt the server is still encoding: the explorer says so, and escape closes
    the connection (llama-server then drops the task) instead of waiting for it."""
    import threading

    from minigpt.host import protocol as p
    from test_host import SETTINGS, HostHarness, steps_of

    release = threading.Event()

    def slow(body):
        release.wait(20)
        return llama_reply()

    with FakeServer(llama_routes(slow)) as server:
        h = HostHarness(server.url)
        try:
            seq = h.send(p.Generate, prompt="a long paste", count=None, settings=SETTINGS)
            started = time.monotonic()
            while True:  # the host says the server is at it, then escape
                assert h.ours.poll(10), "no word while the server was slow"
                reply = h.ours.recv()
                if isinstance(reply, p.Prefilling):
                    h.stop_all.value = seq
                    break
            replies = h.replies_until(seq)
            [run] = [r for r in replies if isinstance(r, p.RunFinished)]
            assert run.reason == "stopped" and not steps_of(replies)
            assert time.monotonic() - started < 5  # not the 20 s the server would take
        finally:
            release.set()
            h.close()


def test_an_openai_base_address_is_taken_as_the_server(capsys):
    with FakeServer(llama_routes(lambda b: llama_reply())) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url + "/v1/")
    assert code == 0, err


def test_an_empty_error_reply_ends_without_an_empty_colon(capsys):
    with FakeServer(llama_routes(lambda b: (404, b""))) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
    one_line(code, err, "refused /completion (HTTP 404)\n")


def test_the_explorer_refuses_a_served_model_with_compare_in_one_line(tiny_ckpt):
    from minigpt.host import protocol as p
    from test_host import SETTINGS
    import multiprocessing
    import threading

    from minigpt.host.engine_host import Host

    with FakeServer(llama_routes(lambda b: llama_reply())) as server:
        ours, theirs = multiprocessing.Pipe()
        host = Host(theirs, multiprocessing.RawValue("q", 0), multiprocessing.RawValue("q", 0))
        thread = threading.Thread(target=host.loop, daemon=True)
        ours.send(p.Open(1, path=server.url, device="cpu", settings=SETTINGS,
                         compare=str(tiny_ckpt)))
        thread.start()
        replies = []
        while not (replies and isinstance(replies[-1], p.OpDone)):
            assert ours.poll(30)
            replies.append(ours.recv())
        [failed] = [r for r in replies if isinstance(r, p.LoadFailed)]
        assert "compared from the command line" in failed.message
        ours.send(p.Shutdown(2))
        thread.join(10)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/ü", "http://127.0.0.1:8080/a b",
                                 "http://127.0.0.1:8080/?x=1"])
def test_an_address_with_an_odd_path_is_one_line(capsys, url):
    code, out, err = run_cli(capsys, *TRACE, "--server", url)
    one_line(code, err, "not a server address", expected=2)


def test_a_non_ascii_content_length_is_one_line(capsys):
    def odd_length(handler):
        handler.send_response(200)
        handler.send_header("Content-Length", "²")
        handler.end_headers()
        handler.close_connection = True

    with FakeServer(llama_routes(lambda b: odd_length)) as server:
        code, out, err = run_cli(capsys, *TRACE, "--server", server.url)
    assert code == 1 and "Traceback" not in err and err.count("\n") == 1, err


def test_a_seed_past_32_bits_samples_and_restores(capsys):
    from minigpt.engine.engine import Engine
    from minigpt.models.checkpoint import load
    from minigpt.settings import SamplingSettings

    with FakeServer(llama_routes(lambda b: llama_reply())) as server:
        engine = Engine.from_loaded(load(server.url), SamplingSettings(seed=2**40 + 3))
        engine.reset("hi")
        engine.step()
        state = engine.sampler_state()
        engine.restore("hi", tuple(engine.steps), state)
        assert engine.sampler_state() == state


def test_a_served_model_cannot_drive_compare(capsys, tiny_ckpt):
    with FakeServer(llama_routes(lambda b: llama_reply())) as server:
        code, out, err = run_cli(capsys, "compare", server.url, tiny_ckpt, "--prompt", "hi")
    one_line(code, err, "minigpt compare DIR URL", expected=2)
