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
import os
import re
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path

from minigpt.errors import PromptError, TokenizerError, clip

SPECIAL_NAMES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                 "mask_token")
MESSAGES_LIMIT = 4 << 20  # bytes of a --messages file
MAX_MESSAGES = 10_000  # messages in one conversation
ROLES_SEEN = ("system", "user", "assistant")  # roles the explorer writes; files may hold others
# What a template may cost (real ones are a few KB and render in milliseconds): its
# source, the text it renders, and the time it takes. Past them, one line.
TEMPLATE_LIMIT = 1 << 20  # bytes of template source
RENDER_LIMIT = 16 << 20  # characters it renders
RENDER_SECONDS = 5.0
RENDER_MEMORY = 256 << 20  # bytes of peak memory it may add
BIG_NUMBER = 1 << 20  # a number past this in a template's arithmetic or call builds a giant
WIDE = re.compile(r"\d{7}")  # a width or precision of a million or more in a format string


class TemplateStopped(PromptError):
    """Rendering was stopped from outside (escape in the explorer)."""


@dataclass(frozen=True)
class ChatTemplate:
    source: str
    tokens: tuple[tuple[str, str], ...]  # ("bos_token", "<s>"), … as the template sees them

    def render(self, messages: list[dict], add_generation_prompt: bool = True,
               should_stop=None) -> str:
        """The conversation as the model sees it; a template error is one ``PromptError``.
        Bounded: at most ``RENDER_LIMIT`` characters in ``RENDER_SECONDS`` (a template can
        loop for ever); ``should_stop()`` is asked as it runs (escape)."""
        import jinja2

        template = _compiled(self.source)
        variables = dict(messages=messages, tools=None, documents=None,
                         add_generation_prompt=add_generation_prompt, **dict(self.tokens))
        try:
            with time_limit(RENDER_SECONDS, should_stop):
                return bounded_join(template.generate(**variables))
        except TemplateStopped:
            raise
        except jinja2.TemplateError as exc:
            raise PromptError(f"the chat template refused this conversation: "
                              f"{clip(str(exc))}") from None
        except RecursionError:
            raise PromptError("the chat template recursed too deeply: it is refused") from None
        except PromptError:
            raise
        except Exception as exc:  # a template bug (a None it did not expect, …)
            raise PromptError(f"the chat template failed: {type(exc).__name__}: "
                              f"{clip(str(exc))}") from None


class ResidentMemory:
    """How much this process's resident memory grew since it was made: /proc/self/statm
    where there is one (read with pread, kept open), else the peak (ru_maxrss), which
    only says something once the process passes its earlier peak."""

    def __init__(self):
        self.fd = None
        try:
            self.fd = os.open("/proc/self/statm", os.O_RDONLY)
            self.page = os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, AttributeError):
            self.fd = None
        self.start = self.now()

    def now(self) -> int:
        if self.fd is not None:
            return int(os.pread(self.fd, 64, 0).split()[1]) * self.page
        try:
            import resource
            import sys
        except ImportError:
            return 0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024  # macOS counts bytes

    def grown(self) -> int:
        return self.now() - self.start

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


CHARS_PER_TOKEN = 16  # a conversation longer than this many characters a token of the
CONVERSATION_FLOOR = 64 << 10  # window (or this floor) is left out, not encoded: a 4 MB
# message took 63 s and 1 GB to encode, and the model would see its last window only.


def conversation_limit(window: int) -> int:
    return max(CONVERSATION_FLOOR, window * CHARS_PER_TOKEN)


def fit_conversation(messages: list[dict], render, window: int,
                     drop: bool) -> tuple[str, int]:
    """(the rendered conversation, how many early messages were left out). One longer
    than ``conversation_limit`` is refused with the numbers, or with ``drop`` (the
    explorer's chat) loses its earliest messages — a system message stays — until it
    fits, as the model would see only its last window anyway."""
    limit = conversation_limit(window)
    text = render(messages)
    if len(text) <= limit:
        return text, 0
    too_long = (f"the conversation renders to {len(text):,} characters; a window of "
                f"{window:,} tokens sees at most about {limit:,} of them")
    if not drop:
        raise PromptError(f"{too_long}: leave out its earliest messages")
    head = 1 if messages[0]["role"] == "system" else 0
    # Cut only before a user message: templates that want roles to alternate refuse a
    # conversation that starts with the assistant.
    cuts = [i for i in range(head + 1, len(messages)) if messages[i]["role"] == "user"]
    low, high, best = 0, len(cuts) - 1, None
    while low <= high:  # the fewest messages dropped, in log(n) renderings
        middle = (low + high) // 2
        text = render([*messages[:head], *messages[cuts[middle]:]])
        if len(text) <= limit:
            best, high = (text, cuts[middle] - head), middle - 1
        else:
            low = middle + 1
    if best is None:
        kept = "the system message and the last user message" if head else \
            "the last user message and what follows it"
        raise PromptError(f"{too_long}, and {kept} alone are longer: shorten them")
    return best


def bounded_join(chunks) -> str:
    out, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > RENDER_LIMIT:
            raise PromptError(f"the chat template renders over {RENDER_LIMIT >> 20} M "
                              "characters: it is refused")
        out.append(chunk)
    return "".join(out)


class time_limit:
    """Stop a template's Python (its compiled code, ``<template>`` frames) once
    ``seconds`` have passed or ``should_stop()`` says so, by raising from a trace hook:
    a Jinja loop has no other place to be stopped."""

    def __init__(self, seconds: float, should_stop=None):
        self.seconds, self.should_stop = seconds, should_stop

    def __enter__(self):
        import sys
        import time

        self.deadline = time.monotonic() + self.seconds
        self.memory = ResidentMemory()
        self.previous = sys.gettrace()
        sys.settrace(self.calls)
        return self

    def __exit__(self, *exc):
        import sys

        sys.settrace(self.previous)
        self.memory.close()
        return False

    def calls(self, frame, event, arg):
        return self.lines if frame.f_code.co_filename == "<template>" else None

    def lines(self, frame, event, arg):
        import time

        if self.memory.grown() > RENDER_MEMORY:  # a text doubled in a loop: every line
            # checks (a microsecond or two; templates are short)
            raise PromptError(f"the chat template took over {RENDER_MEMORY >> 20} MB of "
                              "memory: it is refused")
        if time.monotonic() > self.deadline:
            raise PromptError(f"the chat template did not finish in {self.seconds:g} s: it "
                              "is refused (a loop that never ends?)")
        if self.should_stop is not None and self.should_stop():
            raise TemplateStopped("stopped while the chat template was rendering")
        return self.lines


def _raise_exception(message):
    import jinja2

    raise jinja2.exceptions.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # Jinja's own tojson escapes HTML characters; transformers' does not.
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _sandbox():
    """transformers' immutable sandbox, with arithmetic or calls that would build a giant
    ({{ 'x' * 10**8 }} took 4 GB) refused before they run."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def too_big(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and abs(value) > BIG_NUMBER

    def repeated_size(left, right) -> int:
        """Characters or items ``left * right`` would hold (0 for numbers)."""
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int):
                return len(seq) * n
        return 0

    class BoundedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "%"])

        def call_binop(self, context, operator, left, right):
            if operator == "*" and repeated_size(left, right) > RENDER_LIMIT:
                raise PromptError("the chat template builds a text too large: it is refused")
            if operator == "**" and isinstance(left, int) and isinstance(right, int) \
                    and abs(left) > 1 and right > 0 and abs(left).bit_length() * right > 1 << 20:
                raise PromptError("the chat template computes a number too large: it is "
                                  "refused")  # one C call the trace hook cannot stop
            if operator == "%" and isinstance(left, str):
                check_widths(left)
            return super().call_binop(context, operator, left, right)

        def wrap_str_format(self, value):
            wrapped = super().wrap_str_format(value)
            if wrapped is not None:  # '{:>999999999}'.format('') builds a gigabyte at once
                check_widths(value.__self__)
            return wrapped

        def call(self, __context, __obj, *args, **kwargs):
            check_sizes(args, kwargs)
            return super().call(__context, __obj, *args, **kwargs)

    def check_widths(text: str) -> None:
        if WIDE.search(text):
            raise PromptError("the chat template asks for a size too large: it is refused")

    def check_sizes(args, kwargs) -> None:
        if any(too_big(a) for a in (*args, *kwargs.values())):
            raise PromptError("the chat template asks for a size too large: it is refused")

    def guarded(name, function):
        """A filter whose numbers are checked first ('x'|center(10**9) built 1 GB)."""
        def filter_(*args, **kwargs):
            check_sizes(args, kwargs)
            return function(*args, **kwargs)
        filter_.__dict__.update(getattr(function, "__dict__", {}))  # pass_context & co
        filter_.__name__ = name
        return filter_

    return BoundedSandbox, guarded


@lru_cache(maxsize=8)
def _compiled(source: str):
    import jinja2.ext

    sandbox, guarded = _sandbox()
    env = sandbox(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters = {name: guarded(name, f) for name, f in env.filters.items()}
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
    """The directory's chat template, or None when it has none; ``TokenizerError`` when
    it has one that cannot be used (too large, not UTF-8, does not parse)."""
    from minigpt.paths import read_text_file

    config = _json_object(directory / "tokenizer_config.json")
    source = None
    jinja_path = directory / "chat_template.jinja"
    if jinja_path.is_file():
        try:
            source = read_text_file(jinja_path, TEMPLATE_LIMIT, "chat template",
                                    TokenizerError)
        except OSError as exc:
            raise TokenizerError(f"{jinja_path}: cannot read ({exc.strerror or exc})") from None
    else:
        source = config.get("chat_template")
        if isinstance(source, list):  # named templates: transformers takes "default"
            named = {t.get("name"): t.get("template") for t in source if isinstance(t, dict)}
            source = named.get("default")
    if not isinstance(source, str) or not source.strip():
        return None
    if len(source.encode("utf-8", "surrogatepass")) > TEMPLATE_LIMIT:
        raise TokenizerError(f"the chat template is over {TEMPLATE_LIMIT >> 20} MiB")
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
    except RecursionError:  # '[' * 100000: a list of messages is two levels deep
        raise PromptError(f"{path}: JSON nested too deeply to be a list of messages") from None
    return check_messages(value, path)


def check_messages(value, where: str = "messages") -> list[dict]:
    from minigpt.text.tokenizer import check_text

    if isinstance(value, dict) and isinstance(value.get("messages"), list):
        value = value["messages"]
    if not isinstance(value, list) or not value:
        raise PromptError(f"{where}: expected a non-empty JSON list of "
                          '{"role": …, "content": …} messages')
    if len(value) > MAX_MESSAGES:
        raise PromptError(f"{where}: {len(value):,} messages, over the {MAX_MESSAGES:,} a "
                          "conversation may hold")
    for i, message in enumerate(value, 1):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise PromptError(f"{where}: message {i} is not "
                              '{"role": "user|assistant|system", "content": "text"}')
        check_text(message["role"], f"{where}: message {i}'s role")
        check_text(message["content"], f"{where}: message {i}")
    return [{"role": m["role"], "content": m["content"]} for m in value]
