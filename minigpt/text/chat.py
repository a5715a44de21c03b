"""Chat templates of instruct models, rendered as transformers' ``apply_chat_template``
does (torch-free).

The template is the directory's ``chat_template.jinja``, or ``tokenizer_config.json``'s
``chat_template`` (a string, or named templates with a ``default``). It runs in Jinja2's
immutable sandbox with transformers' settings (``trim_blocks``, ``lstrip_blocks``, loop
controls, its ``tojson``, ``raise_exception``, ``strftime_now``) and variables (the
messages, ``add_generation_prompt``, the named special tokens). The text it renders is then
tokenized without adding special tokens: the template already holds them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from minigpt.errors import PromptError, TokenizerError

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token")
MESSAGES_LIMIT = 4 << 20  # bytes of a --messages file
ROLES_SEEN = ("system", "user", "assistant")  # roles the explorer writes; files may hold others


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    tokens: tuple[tuple[str, str], ...]  # ("bos_token", "<s>"), … as the template sees them

    def render(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        """The conversation as the model sees it; a template error is one ``PromptError``."""
        import jinja2

        try:
            return _compiled(self.source).render(messages=messages, tools=None, documents=None,
                                                 add_generation_prompt=add_generation_prompt,
                                                 **dict(self.tokens))
        except jinja2.TemplateError as exc:
            raise PromptError(f"the chat template refused this conversation: {exc}") from None
        except Exception as exc:  # a template bug (a None it did not expect, …)
            raise PromptError(f"the chat template failed: {type(exc).__name__}: {exc}") from None


def _raise_exception(message):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters; transformers' does not.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


@lru_cache(maxsize=8)
def _compiled(source: str):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:
        raise TokenizerError(f"the chat template does not parse: {exc}") from None


def _json_object(path: Path) -> dict:
    from minigpt.paths import read_json_object

    return read_json_object(path, path.name, TokenizerError) if path.is_file() else {}


def find_chat_template(directory: Path) -> ChatTemplate | None:
    """The directory's chat template, or None when it has none."""
    config = _json_object(directory / "tokenizer_config.json")
    source = None
    jinja_path = directory / "chat_template.jinja"
    if jinja_path.is_file():
        source = jinja_path.read_text(encoding="utf-8")
    else:
        source = config.get("chat_template")
        if isinstance(source, list):  # named templates: transformers takes "default"
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
    if not isinstance(source, str) or not source.strip():
        return None
    from minigpt.text.hf_tokenizer import special_token_texts

    names = special_token_texts(directory)  # special_tokens_map.json fills what is missing
    tokens = tuple((name, text) for name in SPECIAL_NAMES
                   if isinstance(text := names.get(name), str))
    _compiled(source)  # a template that does not parse is said at load, in one line
    return ChatTemplate(source, tokens)


def read_messages(path: str) -> list[dict]:
    """An OpenAI-style JSON list of {"role", "content"} from a file (- for stdin)."""
    import sys

    from minigpt.paths import read_bounded, read_text_file

    try:
        text = read_bounded(sys.stdin.buffer, MESSAGES_LIMIT, "the messages on stdin",
                            PromptError) if path == "-" else \
            read_text_file(Path(path), MESSAGES_LIMIT, "messages file", PromptError)
    except OSError as exc:
        raise PromptError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PromptError(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return check_messages(value, path)


def check_messages(value, where: str = "messages") -> list[dict]:
    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list) or not value:
        raise PromptError(f"{where}: expected a non-empty JSON list of "
                          '{"role": …, "content": …} messages')
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise PromptError(f"{where}: message {i} is not "
                              '{"role": "user|assistant|system", "content": "text"}')
    return [{"role": m["role"], "content": m["content"]} for m in value]
