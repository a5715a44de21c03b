"""What the explorer asks of an inference server, whatever its kind, and what comes back.

A step is one request: the window's token ids in, one token out with the server's raw
top-N (softmax of the raw logits) and, where the server can, the top-N after its
sampler chain. Everything a server sends is checked here before use: ids in range,
probabilities in [0, 1], pieces as bytes — a malformed reply is one ``ServerError``.
Torch-free.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from minigpt.backends.http import ServerError
from minigpt.settings import SamplingSettings



@dataclass(frozen=True)
class Option:
    """A token as the server reports it."""

    id: int
    piece: bytes | None  # its bytes, where the server gives them (None: ask the tokenizer)
    log_prob: float  # raw: log softmax of the logits, before the sampler's filters and
    # temperature (kept as a log: a forced token's may be far below float's smallest)

    @property
    def prob(self) -> float:
        return math.exp(self.log_prob)


@dataclass(frozen=True)
class ServedStep:
    chosen: Option
    top: tuple[Option, ...]  # the raw top-N, most likely first
    after: tuple[Option, ...] | None = None  # after the sampler chain, where reported
    prompt_n: int | None = None  # prompt tokens the server evaluated (its cache did the rest)
    end: bool = False  # the server says the token ends the text (an end-of-generation id)


@dataclass(frozen=True)
class ServerInfo:
    api: str  # "llama-server", "vllm", "sglang"
    model: str  # the name the server reports
    quant: str  # its file type where reported ("Q4_1"), else ""
    context_length: int  # tokens a request may hold (the server's slot)
    vocab_size: int
    eos_ids: tuple[int, ...] = ()
    chat: bool = False  # the server renders a chat template
    version: str = ""
    parameters: int = 0  # where the server reports them (llama-server does)


class ServerAPI(Protocol):
    info: ServerInfo

    def tokenize(self, text: str, special: bool) -> list[int]:
        """Ids as the server tokenizes ``text`` (``special``: add BOS where the model does)."""

    def detokenize(self, ids: list[int]) -> str: ...

    def render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        """The conversation in the server's own chat template."""

    def step(self, ids: list[int], settings: SamplingSettings, seed: int, top_n: int,
             force: int | None = None, after: bool = False, waiting=None) -> ServedStep:
        """One token after ``ids``: drawn by the server's sampler, or ``force`` (its raw
        probability reported all the same). ``after``: also the sampler's top-N.
        ``waiting()``: called while the reply is slow to begin; it may raise to stop."""


def as_int(value, what: str, url: str, below: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or \
            (below is not None and value >= below):
        raise ServerError(f"{url} sent {what} {str(value)[:40]!r}, not a token id")
    return value


def log_of_prob(value, what: str, url: str) -> float:
    """A probability's log (-inf for 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not 0.0 <= float(value) <= 1.0 + 1e-6:
        raise ServerError(f"{url} sent {what} {str(value)[:40]!r}, not a probability")
    return math.log(value) if value > 0 else -math.inf


def as_log_prob(value, what: str, url: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            math.isnan(value) or value > 1e-6:
        raise ServerError(f"{url} sent {what} {str(value)[:40]!r}, not a log-probability")
    return min(0.0, float(value))


def as_bytes(value, url: str) -> bytes | None:
    """A piece as a list of byte values (llama-server) or a string; None when absent."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8", errors="surrogatepass")[:256]
    if isinstance(value, list) and len(value) <= 256 and \
            all(isinstance(b, int) and not isinstance(b, bool) and 0 <= b < 256 for b in value):
        return bytes(value)
    raise ServerError(f"{url} sent a token piece that is not bytes")


def as_dict(value, what: str, url: str) -> dict:
    if not isinstance(value, dict):
        raise ServerError(f"{url} answered {what} without the fields it should have")
    return value


def as_list(value, what: str, url: str, limit: int = 1 << 20) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise ServerError(f"{url} answered {what} without the list it should have")
    return value
