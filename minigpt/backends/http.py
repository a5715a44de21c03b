"""JSON over HTTP to an inference server, bounded: the standard library's ``http.client``
on one kept-alive connection (a step is one small request: a new connection each time
cost more than the step), a connect and a read timeout, and a cap on what a reply may
hold. Every failure is a ``ServerError`` of one line that names the server. Torch-free.
"""

from __future__ import annotations

import http.client
import json
import select
import socket
import time
import urllib.parse
from dataclasses import dataclass

from minigpt.errors import MiniGPTError, SettingsError, clip
from minigpt.text.tokenizer import printable

MAX_REPLY = 32 << 20  # bytes of one reply (a step's is about a kilobyte)
WAIT_TICK = 0.25  # while no reply has come: how often ``waiting`` is called


class ServerError(MiniGPTError):
    """The server is down, slow, refused the request, or answered nonsense."""

    exit_code = 1  # a fault of the server's, not of what the user typed


@dataclass(frozen=True)
class Timeouts:
    """Seconds (``--connect-timeout``, ``--read-timeout``)."""

    connect: float = 5.0  # a server that does not take the connection: down
    read: float = 120.0  # a reply's wait: a long prompt's first prefill can take a while


def check_url(url: str) -> str:
    """``http://host:port`` (a path prefix is kept), or a one-line refusal."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"not a server address: {printable(url)!r} "
                          "(expected http://HOST:PORT)")
    try:
        parts.port
    except ValueError:
        raise SettingsError(f"not a server address: {printable(url)!r} (bad port)") from None
    if not parts.path.isascii() or any(c.isspace() for c in parts.path) or parts.query:
        raise SettingsError(f"not a server address: {printable(url)!r} (give http://HOST:PORT, "
                            "with at most a plain path)")
    # The OpenAI base address people copy ends in /v1: the paths we ask carry it already.
    return url.rstrip("/").removesuffix("/v1")


class JSONClient:
    def __init__(self, url: str, timeouts: Timeouts = Timeouts()):
        self.url = check_url(url)
        parts = urllib.parse.urlsplit(self.url)
        self.https = parts.scheme == "https"
        self.host, self.port = parts.hostname, parts.port
        self.prefix = parts.path
        self.timeouts = timeouts
        self.connection: http.client.HTTPConnection | None = None

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def get(self, path: str, missing_ok: bool = False):
        return self.request("GET", path, None, missing_ok)

    def post(self, path: str, body: dict, missing_ok: bool = False, waiting=None):
        return self.request("POST", path, body, missing_ok, waiting)

    def request(self, method: str, path: str, body: dict | None, missing_ok: bool = False,
                waiting=None):
        """The reply's JSON; None for a 404 where ``missing_ok`` (probing an API).
        ``waiting()`` is called every WAIT_TICK while the reply has not begun (a long
        prompt's prefill): it may raise to give up, and the connection is then closed,
        which makes the server drop the request."""
        data = None if body is None else json.dumps(body).encode()
        for attempt in (0, 1):  # a kept-alive connection the server closed: once more
            fresh = self.connection is None
            try:
                status, reply = self._exchange(method, path, data, waiting)
                break
            except (http.client.RemoteDisconnected, BrokenPipeError,
                    ConnectionResetError) as exc:
                self.close()
                if fresh or attempt:
                    raise ServerError(f"{self.url} closed the connection mid-reply "
                                      f"({type(exc).__name__})") from None
            except socket.timeout:
                self.close()
                raise ServerError(f"{self.url} did not answer {path} within "
                                  f"{self.timeouts.read:g} s (--read-timeout)") from None
            except ConnectionRefusedError:
                self.close()
                raise ServerError(f"no server answers at {self.url} (connection refused): "
                                  "is it running?") from None
            except OSError as exc:
                self.close()
                raise ServerError(f"cannot reach {self.url}: "
                                  f"{clip(exc.strerror or str(exc), 120)}") from None
            except http.client.HTTPException as exc:
                self.close()
                raise ServerError(f"{self.url} answered {path} with something that is not "
                                  f"HTTP ({type(exc).__name__})") from None
        if status == 404 and missing_ok:
            return None
        if status >= 400:  # an error page need not be JSON: its message is said either way
            try:
                parsed = json.loads(reply)
            except (ValueError, RecursionError):
                parsed = None
        else:
            parsed = parse_json(reply, self.url, path) if reply else None
        if status >= 400:
            said = printable(clip(error_text(parsed, reply), 200)).strip()
            raise ServerError(f"{self.url} refused {path} (HTTP {status})"
                              + (f": {said}" if said else ""))
        return parsed

    def _exchange(self, method: str, path: str, data: bytes | None,
                  waiting=None) -> tuple[int, bytes]:
        if self.connection is None:
            kind = http.client.HTTPSConnection if self.https else http.client.HTTPConnection
            self.connection = kind(self.host, self.port, timeout=self.timeouts.connect)
            try:
                self.connection.connect()
            except socket.timeout:
                self.close()
                raise ServerError(f"{self.url} did not take the connection within "
                                  f"{self.timeouts.connect:g} s (--connect-timeout)") from None
            self.connection.sock.settimeout(self.timeouts.read)
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.connection.request(method, self.prefix + path, body=data, headers=headers)
        self._wait_for_reply(waiting)
        response = self.connection.getresponse()
        declared = response.getheader("Content-Length")
        if declared is not None and declared.isascii() and declared.isdigit() and int(declared) > MAX_REPLY:
            self.close()
            raise ServerError(f"{self.url} sent a {int(declared):,}-byte reply to {path} "
                              f"(at most {MAX_REPLY >> 20} MiB is read)")
        reply = response.read(MAX_REPLY + 1)
        if len(reply) > MAX_REPLY:  # an endless or huge body: stop reading, drop the line
            self.close()
            raise ServerError(f"{self.url} sent more than {MAX_REPLY >> 20} MiB in reply to "
                              f"{path}: not read further")
        if declared is not None and declared.isascii() and declared.isdigit() and len(reply) < int(declared):
            self.close()
            raise http.client.RemoteDisconnected("the reply ended early")
        if response.will_close:
            self.close()
        return response.status, reply


    def _wait_for_reply(self, waiting) -> None:
        """Until the reply's first byte (or the read timeout), asking ``waiting``."""
        if waiting is None:
            return
        sock, deadline = self.connection.sock, time.monotonic() + self.timeouts.read
        while not select.select([sock], [], [], WAIT_TICK)[0]:
            if time.monotonic() > deadline:
                raise socket.timeout()
            try:
                waiting()
            except BaseException:
                self.close()  # the server sees the connection go and drops the request
                raise


def parse_json(reply: bytes, url: str, path: str):
    try:  # json's decoder raises RecursionError on deep nesting, never overflows
        return json.loads(reply)
    except (ValueError, RecursionError):
        raise ServerError(f"{url} answered {path} with something that is not JSON") from None


def error_text(parsed, raw: bytes) -> str:
    """The message in an error reply (``{"error": {"message": …}}``, ``{"detail": …}``,
    ``{"message": …}``), else its start."""
    if isinstance(parsed, dict):
        inner = parsed.get("error", parsed)
        for key in ("message", "detail", "error"):
            value = inner.get(key) if isinstance(inner, dict) else inner
            if isinstance(value, str):
                return value
    return raw[:200].decode("utf-8", errors="replace")
