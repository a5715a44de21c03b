"""A model a server holds (``--server URL``): what ``load`` returns for it, with the
server's own tokenizer and chat template behind the interfaces the engine already uses.

The kind of server is found by asking (``GET /props``: llama-server; ``GET /v1/models``:
vLLM or SGLang, by who owns the model) or named (``--api``). Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from minigpt.backends.http import JSONClient, ServerError, Timeouts
from minigpt.backends.served_api import ServerAPI
from minigpt.errors import MiniGPTError
from minigpt.steps import Capabilities
from minigpt.text.tokenizer import check_text

APIS = ("llama", "vllm", "sglang")
TOP_N = 20  # candidates a step asks for: the table shows 5; ranks, scores and compare use all


def is_server_url(path) -> bool:
    return isinstance(path, str) and path.startswith(("http://", "https://"))


class ServedTokenizer:
    """The server's tokenizer: ids from its ``/tokenize``; a token's bytes as the server
    reported them with a step (every candidate comes with its bytes), else from
    ``/detokenize`` (or from ``--tokenizer DIR``, where given)."""

    def __init__(self, api: ServerAPI, local=None):
        self.api, self.local = api, local
        self.name = f"{api.info.api} · {api.info.model}" if local is None else local.name
        self.n_vocab = api.info.vocab_size
        self.pieces: dict[int, bytes] = {}
        self.names: dict[int, str | None] = {}

    def learn(self, token_id: int, piece: bytes | None) -> None:
        if piece is not None and len(self.pieces) < 1 << 20:
            self.pieces.setdefault(token_id, piece)

    def encode(self, text: str) -> list[int]:
        check_text(text)
        return self.local.encode(text) if self.local is not None else \
            self.api.tokenize(text, special=True)

    def encode_chat(self, text: str) -> list[int]:
        return self.local.encode_chat(text) if self.local is not None else \
            self.api.tokenize(text, special=True)

    def token_bytes(self, token_id: int) -> bytes:
        if self.local is not None:
            return self.local.token_bytes(token_id)
        piece = self.pieces.get(token_id)
        if piece is None:
            text = self.api.detokenize([token_id])
            # A piece that is part of a character comes back as U+FFFD: no bytes known.
            piece = b"" if "\ufffd" in text else text.encode("utf-8", errors="surrogatepass")
            self.pieces[token_id] = piece
        return piece

    def special_name(self, token_id: int) -> str | None:
        if self.local is not None:
            return self.local.special_name(token_id)
        if token_id not in self.names:
            text = self.api.detokenize([token_id])
            self.names[token_id] = text if text and "\ufffd" not in text and len(text) < 64 \
                else None
        return self.names[token_id]

    def decode(self, ids: list[int]) -> str:
        return self.api.detokenize(ids)


class ServedChat:
    """The server's chat template (llama-server's ``/apply-template``)."""

    def __init__(self, api: ServerAPI):
        self.api = api

    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               should_stop=None) -> str:
        return self.api.render_chat(list(messages), add_generation_prompt)


@dataclass
class ServedModel:
    """What ``load`` returns for a server (the fields a ``LoadedModel`` has that the
    engine, CLI and TUI read)."""

    api: ServerAPI
    tokenizer: ServedTokenizer
    url: str
    chat: object = None  # ServedChat, or the --tokenizer directory's ChatTemplate
    slide: int = 1
    top_n: int = TOP_N
    inferred: list[str] = field(default_factory=list)
    backend: str = "served"
    chat_error: str = ""
    dtype = "served"  # as the server holds them: its file type is in ``format``
    device = "server"
    tensors: tuple = ()

    @property
    def num_parameters(self) -> int:
        return self.api.info.parameters

    @property
    def path(self) -> Path | str:
        return self.url

    @property
    def format(self) -> str:
        info = self.api.info
        return " · ".join(part for part in ("served", info.api, info.model, info.quant) if part)

    @property
    def h_params(self) -> dict:
        info = self.api.info
        return {"api": info.api, "model": info.model, "quantization": info.quant,
                "context_length": info.context_length, "vocab_size": info.vocab_size,
                "server": self.url, "version": info.version}

    @property
    def eos_ids(self) -> tuple[int, ...]:
        return self.api.info.eos_ids

    @property
    def vocab_size(self) -> int:
        return self.api.info.vocab_size

    @property
    def context_length(self) -> int:
        return self.api.info.context_length

    @property
    def model(self) -> "ServedModel":
        """What scoring runs on (``minigpt.engine.score``): the server, through ``predictions``."""
        return self

    def predictions(self, ids: list[int], context_length: int, slide: int):
        """(index, log-prob, rank or None past the top-N, context) of every token after the
        first: each one forced in a request holding the window generation would see (the
        server's prompt cache makes each one token of work). The log-probability is the
        raw model's, whatever the sampler's knobs."""
        from minigpt.engine.window import window_start
        from minigpt.settings import SamplingSettings

        greedy = SamplingSettings(temperature=0.0)
        for index in range(1, len(ids)):
            start = window_start(index, context_length, slide)
            reply = self.api.step(ids[start:index], greedy, 0, self.top_n, force=ids[index])
            rank = next((r for r, o in enumerate(reply.top, 1) if o.id == ids[index]), None)
            yield index, reply.chosen.log_prob, rank, index - start

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(full_logits=False, attention=False, scoring=True,
                            top_n=self.top_n, own_sampler=True)


def connect(url: str, api: str | None = None, model: str | None = None,
            tokenizer: str | None = None, slide: int | None = None,
            timeouts: Timeouts = Timeouts(), progress=None) -> ServedModel:
    """The server at ``url``, its kind found or ``api`` ("llama", "vllm", "sglang")."""
    from minigpt.settings import check_slide

    if api is not None and api not in APIS:
        raise MiniGPTError(f"--api {api!r}: one of {', '.join(APIS)}")
    (progress or (lambda stage: None))("ask the server")
    client = JSONClient(url, timeouts)
    served = open_api(client, api, model)
    local = None
    if tokenizer is not None:
        from minigpt.text.vocab import resolve_tokenizer

        local = resolve_tokenizer(tokenizer, None, served.info.vocab_size, Path(tokenizer), None)
        if served.info.api != "llama-server":  # these servers do not say their vocabulary
            served.info = replace(served.info, vocab_size=local.n_vocab)
    elif served.info.api != "llama-server":  # it sends no token bytes: the model's own
        raise MiniGPTError(f"{served.info.api} at {client.url} sends no token bytes: give the "
                           "Hugging Face directory it serves with --tokenizer DIR")
    size = served.info.context_length
    slide = check_slide(max(1, size // 2) if slide is None else slide, size)
    inferred = [f"served by {served.info.api} at {client.url}: the server samples; a step "
                f"brings its raw top-{TOP_N}, the table shows 5",
                "why this token shows the top-20 and entropy bounds; complete characters need "
                "the whole distribution, the attention strip an in-process model"]
    chat = ServedChat(served) if served.info.chat else None
    if chat is None and tokenizer is not None and Path(tokenizer).is_dir():
        from minigpt.text.chat import find_chat_template

        chat = find_chat_template(Path(tokenizer))  # the served model's own directory's
    return ServedModel(served, ServedTokenizer(served, local), client.url, chat, slide,
                       inferred=inferred)


def open_api(client: JSONClient, api: str | None, model: str | None) -> ServerAPI:
    from minigpt.backends.llama_server import LlamaServer

    if api in (None, "llama"):
        from urllib.parse import quote

        props = client.get("/props" if model is None else f"/props?model={quote(model)}",
                           missing_ok=api is None)
        if isinstance(props, dict) and "default_generation_settings" in props:
            return LlamaServer(client, props, model)
        if api == "llama":
            raise ServerError(f"{client.url} is not a llama-server (/props has no "
                              "default_generation_settings)")
    from minigpt.backends.openai_servers import open_openai_server

    return open_openai_server(client, api, model)
