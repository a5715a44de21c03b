"""llama.cpp's ``llama-server``: ``/completion`` with token ids, ``n_probs`` and its prompt
cache (a step re-evaluates only the ids the cache does not hold), its own tokenizer
(``/tokenize``, ``/detokenize``) and chat template (``/apply-template``). Torch-free.
"""

from __future__ import annotations

from pathlib import PurePath

from minigpt.backends.http import JSONClient, ServerError
from minigpt.backends.served_api import (Option, ServedStep, ServerInfo, as_bytes, as_dict,
                                         as_int, as_list, as_log_prob, log_of_prob)
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import printable

FORCE_BIAS = 1e9  # added to a forced token's logit: past any other (logits are tens)


class LlamaServer:
    name = "llama-server"

    def __init__(self, client: JSONClient, props: dict, model: str | None = None):
        self.client, self.url = client, client.url
        self.model = model  # a router holding several: which one (``--model``)
        listed = client.get(self.with_model("/v1/models"), missing_ok=True) or {}
        meta = next((m.get("meta") for m in listed.get("data", [])
                     if isinstance(m, dict) and isinstance(m.get("meta"), dict)), {}) \
            if isinstance(listed, dict) and isinstance(listed.get("data"), list) else {}
        settings = as_dict(props.get("default_generation_settings", {}), "/props", self.url)
        n_ctx = settings.get("n_ctx", meta.get("n_ctx"))
        vocab = meta.get("n_vocab")
        if not isinstance(n_ctx, int) or n_ctx < 2:
            raise ServerError(f"{self.url}: /props gives no context size (n_ctx)")
        if not isinstance(vocab, int) or vocab < 1:
            raise ServerError(f"{self.url}: /v1/models gives no vocabulary size (n_vocab)")
        path = str(props.get("model_path") or "")
        alias = str(props.get("model_alias") or "")
        quant = quant_of(props, meta, path)
        name = model or short_name(alias or path, quant)
        eos = []
        for text in (props.get("eos_token"),):
            if isinstance(text, str) and text:
                ids = self.tokenize(text, special=False)
                if len(ids) == 1:
                    eos.append(ids[0])
        self.info = ServerInfo(
            "llama-server", printable(name)[:80], quant,
            # A step's request holds the window and the token it asks for.
            n_ctx - 1, vocab, tuple(eos), bool(props.get("chat_template")),
            printable(str(props.get("build_info") or ""))[:40],
            meta.get("n_params") if isinstance(meta.get("n_params"), int) else 0)

    def with_model(self, path: str) -> str:
        if self.model is None:
            return path
        from urllib.parse import quote

        return f"{path}?model={quote(self.model, safe='')}"

    def body(self, body: dict) -> dict:
        return {**body, "model": self.model} if self.model is not None else body

    def tokenize(self, text: str, special: bool) -> list[int]:
        reply = as_dict(self.client.post("/tokenize", self.body(
            {"content": text, "add_special": special, "parse_special": True})),
            "/tokenize", self.url)
        return [as_int(i, "a token id", self.url) for i in
                as_list(reply.get("tokens"), "/tokenize", self.url)]

    def detokenize(self, ids: list[int]) -> str:
        reply = as_dict(self.client.post("/detokenize", self.body({"tokens": ids})),
                        "/detokenize", self.url)
        content = reply.get("content")
        if not isinstance(content, str):
            raise ServerError(f"{self.url}: /detokenize sent no text")
        return content

    def render_chat(self, messages: list[dict], add_generation_prompt: bool) -> str:
        reply = as_dict(self.client.post("/apply-template", self.body(
            {"messages": messages, "add_generation_prompt": add_generation_prompt})),
            "/apply-template", self.url)
        prompt = reply.get("prompt")
        if not isinstance(prompt, str):
            raise ServerError(f"{self.url}: /apply-template sent no prompt")
        return prompt

    def request(self, ids: list[int], settings: SamplingSettings, seed: int, top_n: int,
                force: int | None, after: bool, waiting=None) -> dict:
        s = settings
        body = {
            "prompt": ids, "n_predict": 1, "n_probs": top_n, "cache_prompt": True,
            "return_tokens": True, "post_sampling_probs": after, "seed": seed,
            "temperature": 0.0 if force is not None else s.temperature,
            "top_k": s.top_k or 0, "top_p": 1.0 if s.top_p is None else s.top_p,
            # Off what we have no knob for: llama.cpp's defaults filter (min_p 0.05).
            "min_p": 0.0, "typical_p": 1.0, "xtc_probability": 0.0, "dry_multiplier": 0.0,
            "repeat_penalty": s.repetition_penalty, "repeat_last_n": len(ids),  # the window
            "presence_penalty": 0.0, "frequency_penalty": 0.0, "mirostat": 0,
            "ignore_eos": False,  # the server then says when a token ends the text
        }
        if force is not None:
            body["logit_bias"] = [[force, FORCE_BIAS]]
        return as_dict(self.client.post("/completion", self.body(body), waiting=waiting),
                       "/completion", self.url)

    def step(self, ids: list[int], settings: SamplingSettings, seed: int, top_n: int,
             force: int | None = None, after: bool = False, waiting=None) -> ServedStep:
        reply = self.request(ids, settings, seed, top_n, force, False, waiting)
        chosen, top = self.probabilities(reply, False)
        sampled = None
        if after:
            again = self.request(ids, settings, seed, top_n, force, True)
            sampled = self.probabilities(again, True)[1]
        timings = reply.get("timings")
        prompt_n = timings.get("prompt_n") if isinstance(timings, dict) else None
        if force is not None and chosen.id != force:
            raise ServerError(f"{self.url} did not take the token asked for ({force})")
        return ServedStep(chosen, top, sampled,
                          prompt_n if isinstance(prompt_n, int) else None,
                          reply.get("stop_type") == "eos")

    def probabilities(self, reply: dict, after: bool) -> tuple[Option, tuple[Option, ...]]:
        entries = as_list(reply.get("completion_probabilities"), "/completion", self.url)
        if not entries:
            raise ServerError(f"{self.url}: /completion sent no token (is the window full?)")
        entry = as_dict(entries[0], "/completion", self.url)
        vocab = self.info.vocab_size if hasattr(self, "info") else None
        prob_key, top_key = ("prob", "top_probs") if after else ("logprob", "top_logprobs")

        def option(item) -> Option:
            item = as_dict(item, "/completion", self.url)
            value = item.get(prob_key)
            log_prob = log_of_prob(value, "a probability", self.url) if after else \
                as_log_prob(value, "a log-probability", self.url)
            return Option(as_int(item.get("id"), "a token id", self.url, vocab),
                          as_bytes(item.get("bytes"), self.url), log_prob)

        top = tuple(option(item) for item in
                    as_list(entry.get(top_key), "/completion", self.url, 1000))
        return option(entry), top


def short_name(name: str, quant: str) -> str:
    """A model file's path as its name: ``SmolLM2-135M-Instruct`` for
    ``/models/SmolLM2-135M-Instruct.Q4_1.gguf`` (the file type is said beside it)."""
    if "/" not in name and not name.endswith(".gguf"):
        return name or "model"  # an alias the server was given (--alias)
    stem = PurePath(name).name.removesuffix(".gguf")
    for separator in (".", "-", "_"):
        if quant and stem.upper().endswith(separator + quant.upper()):
            return stem[:-len(quant) - 1]
    return stem or "model"


def quant_of(props: dict, meta: dict, path: str) -> str:
    """The file type the server reports ("Q4_1"), else the one the file's name says."""
    for value in (props.get("model_ftype"), meta.get("ftype")):
        if isinstance(value, str) and value and len(value) < 40:
            return printable(value.replace("MOSTLY_", "").split(" ")[0])
    stem = PurePath(path).stem.upper()
    for part in reversed(stem.replace("-", ".").split(".")):
        if part[:1] in ("Q", "F", "B", "I") and any(c.isdigit() for c in part) and len(part) < 12:
            return printable(part)
    return ""
