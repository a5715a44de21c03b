"""Servers on 127.0.0.1 that answer as we tell them: hostile ones (huge, malformed or
endless replies, escape sequences in token text, errors, silence) and the reply shapes
vLLM and SGLang document, where no such server can run on this machine. The real
llama-server tests use the real binary (``llama_server.py``)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Routes(BaseHTTPRequestHandler):
    routes: dict = {}  # "GET /path" -> callable(body dict | None) -> (status, bytes) | bytes
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        route = self.routes.get(f"{method} {self.path.split('?')[0]}")
        if route is None:
            self.send(404, b'{"error": "not found"}')
            return
        result = route(body)
        if callable(result):  # it writes the reply itself (endless, cut short)
            result(self)
            return
        status, data = result if isinstance(result, tuple) else (200, result)
        self.send(status, data if isinstance(data, bytes) else json.dumps(data).encode())

    def send(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self.answer("GET")

    def do_POST(self) -> None:
        self.answer("POST")


class FakeServer:
    def __init__(self, routes: dict):
        handler = type("Handler", (Routes,), {"routes": routes})
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.handle_error = lambda request, address: None  # a client that hung up
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


VOCAB = 300


def llama_props(**changes) -> dict:
    props = {"default_generation_settings": {"n_ctx": 64, "params": {}},
             "model_path": "/models/tiny-Q8_0.gguf", "model_alias": "tiny",
             "chat_template": "", "eos_token": "", "build_info": "b1"}
    return {**props, **changes}


def llama_routes(completion, props=None, tokens=(5, 6, 7)) -> dict:
    """A llama-server-shaped server whose ``/completion`` answers with ``completion``."""
    return {
        "GET /props": lambda body: props or llama_props(),
        "GET /v1/models": lambda body: {"data": [{"id": "tiny", "meta": {"n_vocab": VOCAB}}]},
        "POST /tokenize": lambda body: {"tokens": list(tokens)},
        "POST /detokenize": lambda body: {"content": "x"},
        "POST /completion": completion,
    }


def llama_reply(chosen: int = 5, top=((5, -0.5), (6, -1.5)), piece=b"ok") -> dict:
    entry = lambda i, lp: {"id": i, "logprob": lp, "token": "t", "bytes": list(piece)}  # noqa: E731
    return {"content": "t", "tokens": [chosen], "stop_type": "limit",
            "completion_probabilities": [{**entry(chosen, top[0][1]),
                                          "top_logprobs": [entry(i, lp) for i, lp in top]}],
            "timings": {"prompt_n": 1}}
