"""Hugging Face tokenizers (the ``tokenizers`` library), torch-free.

A prompt is encoded exactly as the tokenizer's own ``encode`` does: its normaliser,
pre-tokeniser, added and special tokens (a typed ``<|endoftext|>`` becomes that token)
and post-processor (a BOS where it adds one). For display every token is turned back
into the bytes it stands for — byte-level pieces through GPT-2's byte alphabet,
``<0xE5>`` byte-fallback pieces as that byte, metaspace ``▁`` as a space — so the
stream decoder and the ``‹e5 86›`` escapes work as they do for cl100k.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import lru_cache
from pathlib import Path

from minigpt.errors import TokenizerError

BYTE_FALLBACK = re.compile(r"<0x([0-9A-Fa-f]{2})>")


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[str, int]:
    """GPT-2's printable stand-in character for each byte, inverted: char -> byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def _decoder_kinds(spec: dict | None) -> set[str]:
    """The decoder types in a tokenizer.json's ``decoder`` (a Sequence flattened)."""
    if not isinstance(spec, dict):
        return set()
    kinds = {str(spec.get("type"))}
    for inner in spec.get("decoders") or ():
        kinds |= _decoder_kinds(inner)
    return kinds


class HFTokenizer:
    """A ``tokenizers.Tokenizer`` behind the explorer's ``Tokenizer`` protocol."""

    def __init__(self, tokenizer, source: str, decoder_kinds: set[str]):
        self._tokenizer = tokenizer
        # Named by its vocabulary, not its folder: a base model and its instruct tune
        # that read the same ids compare; two different vocabularies never do.
        vocab = sorted(tokenizer.get_vocab(with_added_tokens=True).items())
        digest = hashlib.sha256(json.dumps(vocab, ensure_ascii=False).encode()).hexdigest()
        self.name = f"{source} · vocab sha256 {digest[:10]}"
        self.n_vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        self.byte_level = "ByteLevel" in decoder_kinds
        self.byte_fallback = "ByteFallback" in decoder_kinds
        added = tokenizer.get_added_tokens_decoder()
        # A byte-fallback piece (<0xA6>) is that byte wherever the file lists it: some
        # tokenizers list all 256 among their special tokens, shown as ‹<0xA6>› then.
        byte = lambda content: self.byte_fallback and BYTE_FALLBACK.fullmatch(content)  # noqa: E731
        self.specials = {i: t.content for i, t in added.items()
                         if t.special and not byte(t.content)}
        self.added = {i: t.content for i, t in added.items()
                      if not t.special and not byte(t.content)}
        self._bytes: dict[int, bytes] = {}

    def encode(self, text: str) -> list[int]:
        return self._encode(text, True)

    def encode_chat(self, text: str) -> list[int]:
        """A rendered chat template's text: it holds its special tokens already, so the
        post-processor adds none (as ``apply_chat_template`` tokenizes)."""
        return self._encode(text, False)

    def _encode(self, text: str, special: bool) -> list[int]:
        from minigpt.errors import PromptError
        from minigpt.text.tokenizer import check_text

        check_text(text)  # a lone surrogate: the library raised a TypeError
        try:
            return self._tokenizer.encode(text, add_special_tokens=special).ids
        except (KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except BaseException as exc:  # noqa: BLE001  a Rust panic is a BaseException
            raise PromptError(f"the tokenizer could not encode this text "
                              f"({type(exc).__name__}: {str(exc)[:200]})") from None

    def special_name(self, token_id: int) -> str | None:
        return self.specials.get(token_id)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token adds to the text; b"" for special tokens and unknown ids."""
        cached = self._bytes.get(token_id)
        if cached is None:
            cached = self._bytes[token_id] = self._piece_bytes(token_id)
        return cached

    def _piece_bytes(self, token_id: int) -> bytes:
        if token_id in self.specials:
            return b""
        if token_id in self.added:
            return self.added[token_id].encode("utf-8")
        piece = self._tokenizer.id_to_token(token_id)
        if piece is None:
            return b""
        if self.byte_level:
            alphabet = byte_alphabet()
            if all(ch in alphabet for ch in piece):
                return bytes(alphabet[ch] for ch in piece)
            return piece.encode("utf-8")
        if self.byte_fallback and (match := BYTE_FALLBACK.fullmatch(piece)):
            return bytes([int(match.group(1), 16)])
        return piece.replace("▁", " ").encode("utf-8")

    def decode(self, ids: list[int]) -> str:
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")


def load_hf_tokenizer(directory: Path) -> HFTokenizer:
    """``tokenizer.json``, or ``vocab.json`` + ``merges.txt`` (GPT-2 copies without one)."""
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:  # a dependency: only a broken install lacks it
        raise TokenizerError("the tokenizers package is not installed: pip install "
                             "tokenizers") from exc
    spec_path = directory / "tokenizer.json"
    if spec_path.is_file():
        text = bounded_text(spec_path, TOKENIZER_JSON_LIMIT)
        try:
            spec = json.loads(text)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise TokenizerError(f"{spec_path}: not a readable tokenizer.json "
                                 f"({exc.msg if hasattr(exc, 'msg') else 'nested too deeply'})"
                                 ) from None
        if not isinstance(spec, dict):
            raise TokenizerError(f"{spec_path}: not a readable tokenizer.json (not an object)")
        tokenizer = rust_call(lambda: Tokenizer.from_str(text), spec_path, "tokenizer.json")
        # tokenizer.json's own post-processor decides the BOS, as transformers 5 loads it
        # (an add_bos_token in tokenizer_config.json does not override it there).
        return HFTokenizer(tokenizer, "tokenizer.json",
                           _decoder_kinds(spec.get("decoder")))
    vocab, merges = directory / "vocab.json", directory / "merges.txt"
    if vocab.is_file() and merges.is_file():
        return _gpt2_files(vocab, merges, directory)
    raise TokenizerError(f"{directory}: no tokenizer.json (or vocab.json + merges.txt) "
                         "beside the weights; pass one with --tokenizer")


# The largest tokenizer files of released models: tokenizer.json ~33 MB (Gemma 3),
# vocab.json + merges.txt a few MB. A bigger one is refused before the tokenizers
# library sees it (a 400 MB merges.txt aborted the process in Rust, at 4 GB).
TOKENIZER_JSON_LIMIT = 64 * 2**20
VOCAB_FILES_LIMIT = 32 * 2**20


def bounded_text(path: Path, limit: int) -> str:
    from minigpt.paths import read_text_file

    try:
        return read_text_file(path, limit, path.name, TokenizerError)
    except OSError as exc:
        raise TokenizerError(f"{path}: cannot read ({exc.strerror or exc})") from None


def rust_call(make, path: Path, what: str):
    """``make()``, whose failures inside the tokenizers library — exceptions, and Rust
    panics, which Python sees as a BaseException — become one line."""
    try:
        return make()
    except (KeyboardInterrupt, SystemExit, MemoryError):
        raise
    except BaseException as exc:  # noqa: BLE001  pyo3's PanicException is a BaseException
        first = str(exc).strip().splitlines()
        raise TokenizerError(f"{path}: not a readable {what} "
                             f"({first[0][:200] if first else type(exc).__name__})") from None


def special_token_texts(directory: Path, error=TokenizerError) -> dict:
    """``tokenizer_config.json``'s settings, its named special tokens as plain text (an
    AddedToken written out as a dict gives its content), falling back to
    ``special_tokens_map.json`` for names it lacks."""
    from minigpt.paths import read_json_object

    def read(name: str) -> dict:
        path = directory / name
        return read_json_object(path, name, error) if path.is_file() else {}

    merged = {**read("special_tokens_map.json"),
              **{k: v for k, v in read("tokenizer_config.json").items() if v is not None}}
    for key, value in merged.items():
        if isinstance(value, dict) and isinstance(value.get("content"), str):
            merged[key] = value["content"]
    return merged


def _gpt2_files(vocab: Path, merges: Path, directory: Path) -> HFTokenizer:
    """GPT-2's byte-level BPE from its two files, as transformers' GPT2Tokenizer: no
    prefix space, ``<|endoftext|>`` special."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers
    from tokenizers.models import BPE

    for path in (vocab, merges):  # bounded before the library reads them
        if path.stat().st_size > VOCAB_FILES_LIMIT:
            raise TokenizerError(f"{path}: {path.stat().st_size / 2**20:,.0f} MiB is over the "
                                 f"{VOCAB_FILES_LIMIT >> 20} MiB a {path.name} may hold")
    tokenizer = Tokenizer(rust_call(lambda: BPE.from_file(str(vocab), str(merges)), directory,
                                    "vocab.json + merges.txt"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    if tokenizer.token_to_id("<|endoftext|>") is not None:
        tokenizer.add_special_tokens(["<|endoftext|>"])
    return HFTokenizer(tokenizer, "vocab.json + merges.txt", {"ByteLevel"})
