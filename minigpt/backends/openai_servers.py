"""vLLM and SGLang: a step is one request with the window's token ids and one token to
draw, log-probabilities of the top-N back (both report the raw model's by default).

vLLM: ``/v1/completions`` with ``prompt`` as ids, ``logprobs`` N and
``return_tokens_as_token_ids`` (candidates come back as ``token_id:123``); its
``/tokenize`` and ``/detokenize``. SGLang: ``/generate`` with ``input_ids``,
``return_logprob`` and ``top_logprobs_num``. Neither sends a token's bytes: they come
from the served model's tokenizer (``--tokenizer DIR``), or from ``/detokenize``.
Torch-free.
"""

from __future__ import annotations

from minigpt.backends.http import JSONClient, ServerError
from minigpt.backends.served_api import (Option, ServedStep, ServerInfo, as_dict, as_int,
                                         as_list, as_log_prob)
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import printable

FORCE_BIAS = 100.0  # the OpenAI API's largest logit bias; with temperature 0 it decides


def open_openai_server(client: JSONClient, api: str | None, model: str | None):
    listed = client.get("/v1/models", missing_ok=True)
    data = listed.get("data") if isinstance(listed, dict) else None
    if not isinstance(data, list) or not data:
        raise ServerError(f"{client.url} is neither a llama-server (no /props) nor an "
                          "OpenAI-style server (no /v1/models): --api names the kind")
    entries = [m for m in data if isinstance(m, dict) and isinstance(m.get("id"), str)]
    if model is not None:
        entries = [m for m in entries if m["id"] == model]
        if not entries:
            raise ServerError(f"{client.url} serves no model {printable(model)!r}")
    elif len(entries) > 1:
        names = ", ".join(printable(m["id"])[:40] for m in entries[:6])
        raise ServerError(f"{client.url} serves {len(entries)} models ({names}): --model NAME")
    entry = entries[0]
    owner = str(entry.get("owned_by", "")).lower()
    kind = api or ("sglang" if "sglang" in owner else "vllm")
    return (SGLang if kind == "sglang" else VLLM)(client, entry)


def check_forced(chosen: int, force: int | None, url: str) -> None:
    """A logit bias capped at 100 may lose to a token far ahead: said, never scored wrong."""
    if force is not None and chosen != force:
        raise ServerError(f"{url} did not take the token asked for ({force}): its logit bias "
                          "could not outweigh the top one")


class OpenAIStyleServer:
    name = "vllm"

    def __init__(self, client: JSONClient, entry: dict):
        self.client, self.url, self.model = client, client.url, entry["id"]
        size = entry.get("max_model_len") or entry.get("context_length")
        if not isinstance(size, int) or size < 2:
            raise ServerError(f"{self.url}: /v1/models gives no max_model_len for "
                              f"{printable(self.model)!r}")
        vocab = self.vocab_size()
        self.info = ServerInfo(self.name, printable(self.model)[:80], "", size - 1, vocab,
                               (), False, "")

    def vocab_size(self) -> int:
        """Not reported by these servers: the tokenizer's size, once it is known; until
        then ids are checked against a bound no real vocabulary reaches."""
        return 1 << 22

    def tokenize(self, text: str, special: bool) -> list[int]:
        reply = as_dict(self.client.post("/tokenize", {
            "model": self.model, "prompt": text, "add_special_tokens": special}),
            "/tokenize", self.url)
        return [as_int(i, "a token id", self.url) for i in
                as_list(reply.get("tokens"), "/tokenize", self.url)]

    def detokenize(self, ids: list[int]) -> str:
        reply = as_dict(self.client.post("/detokenize", {"model": self.model, "tokens": ids}),
                        "/detokenize", self.url)
        text = reply.get("prompt", reply.get("text"))
        if not isinstance(text, str):
            raise ServerError(f"{self.url}: /detokenize sent no text")
        return text

    def render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        raise ServerError(f"{self.name}'s chat template is read from the directory it serves: "
                          "--tokenizer DIR")

    @staticmethod
    def knobs(settings: SamplingSettings, force: int | None) -> dict:
        s = settings
        return {"temperature": 0.0 if force is not None else s.temperature,
                "top_k": s.top_k or -1, "top_p": 1.0 if s.top_p is None else s.top_p,
                "min_p": 0.0, "repetition_penalty": s.repetition_penalty}


class VLLM(OpenAIStyleServer):
    name = "vllm"

    def step(self, ids: list[int], settings: SamplingSettings, seed: int, top_n: int,
             force: int | None = None, after: bool = False, waiting=None) -> ServedStep:
        body = {"model": self.model, "prompt": ids, "max_tokens": 1, "logprobs": top_n,
                "seed": seed, "return_tokens_as_token_ids": True,
                "skip_special_tokens": False, **self.knobs(settings, force)}
        if force is not None:
            body["logit_bias"] = {str(force): FORCE_BIAS}
        reply = as_dict(self.client.post("/v1/completions", body, waiting=waiting),
                        "/v1/completions", self.url)
        choice = as_dict((as_list(reply.get("choices"), "/v1/completions", self.url)
                          or [None])[0], "/v1/completions", self.url)
        logprobs = as_dict(choice.get("logprobs"), "/v1/completions", self.url)
        token = as_list(logprobs.get("tokens"), "/v1/completions", self.url)
        chosen_lp = as_list(logprobs.get("token_logprobs"), "/v1/completions", self.url)
        tops = as_list(logprobs.get("top_logprobs"), "/v1/completions", self.url)
        if not token or not chosen_lp or not tops:
            raise ServerError(f"{self.url}: /v1/completions sent no token")
        chosen = Option(self.token_id(token[0]), None,
                        as_log_prob(chosen_lp[0], "a log-probability", self.url))
        top = sorted((Option(self.token_id(key), None,
                             as_log_prob(value, "a log-probability", self.url))
                      for key, value in as_dict(tops[0], "/v1/completions", self.url).items()),
                     key=lambda o: -o.prob)
        usage = reply.get("usage") if isinstance(reply.get("usage"), dict) else {}
        details = usage.get("prompt_tokens_details")
        cached = details.get("cached_tokens") if isinstance(details, dict) else None
        prompt_n = len(ids) - cached if isinstance(cached, int) else None
        check_forced(chosen.id, force, self.url)
        return ServedStep(chosen, tuple(top[:top_n]), None, prompt_n,
                          choice.get("finish_reason") == "stop")

    def token_id(self, key) -> int:
        digits = key[9:] if isinstance(key, str) and key.startswith("token_id:") else ""
        if not (digits.isascii() and digits.isdigit() and len(digits) < 10) or \
                int(digits) >= self.info.vocab_size:
            raise ServerError(f"{self.url} sent a token as {str(key)[:40]!r}, not an id "
                              "(return_tokens_as_token_ids)")
        return int(key[9:])


class SGLang(OpenAIStyleServer):
    name = "sglang"

    def step(self, ids: list[int], settings: SamplingSettings, seed: int, top_n: int,
             force: int | None = None, after: bool = False, waiting=None) -> ServedStep:
        params = {"max_new_tokens": 1, "sampling_seed": seed, **self.knobs(settings, force)}
        if force is not None:
            params["logit_bias"] = {str(force): FORCE_BIAS}
        reply = as_dict(self.client.post("/generate", {
            "input_ids": ids, "sampling_params": params, "return_logprob": True,
            "top_logprobs_num": top_n, "logprob_start_len": -1}, waiting=waiting),
            "/generate", self.url)
        meta = as_dict(reply.get("meta_info"), "/generate", self.url)
        out = as_list(meta.get("output_token_logprobs"), "/generate", self.url)
        tops = as_list(meta.get("output_top_logprobs"), "/generate", self.url)
        if not out or not tops:
            raise ServerError(f"{self.url}: /generate sent no token")
        chosen = self.option(out[0])
        top = tuple(self.option(item) for item in as_list(tops[0], "/generate", self.url))
        cached = meta.get("cached_tokens")
        finish = meta.get("finish_reason")
        ended = isinstance(finish, dict) and finish.get("type") == "stop"
        check_forced(chosen.id, force, self.url)
        return ServedStep(chosen, top[:top_n], None,
                          len(ids) - cached if isinstance(cached, int) else None, ended)

    def option(self, item) -> Option:
        """``[logprob, id, text]`` as SGLang reports a token."""
        item = as_list(item, "/generate", self.url, 3)
        if len(item) < 2:
            raise ServerError(f"{self.url}: /generate sent a token without its id")
        return Option(as_int(item[1], "a token id", self.url, self.info.vocab_size), None,
                      as_log_prob(item[0], "a log-probability", self.url))
