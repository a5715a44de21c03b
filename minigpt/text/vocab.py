"""Choosing a tokenizer for a checkpoint, offline only.

Book checkpoints use cl100k_base. nanoGPT ones use gpt2 (when an installed package
provides it offline) or a character vocabulary from the dataset's ``meta.pkl``,
which is read without executing anything: only plain dicts of str/int are allowed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from minigpt.errors import PromptError, TokenizerError
from minigpt.paths import require_regular_file
from minigpt.text.tokenizer import TiktokenTokenizer, Tokenizer, cl100k

GPT2_SIZES = (50257, 50304)
R50K_PATTERN = (r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)"""
                r"""|\s""")


class CharTokenizer:
    """A nanoGPT character-level vocabulary (``stoi``/``itos`` from meta.pkl)."""

    def __init__(self, stoi: dict[str, int], itos: dict[int, str], name: str):
        self.stoi, self.itos, self.name = stoi, itos, name
        self.n_vocab = len(itos)

    def encode(self, text: str) -> list[int]:
        missing = sorted({ch for ch in text if ch not in self.stoi})
        if missing:
            raise PromptError(f"characters not in this model's vocabulary: "
                              f"{''.join(missing)[:20]!r}")
        return [self.stoi[ch] for ch in text]

    def special_name(self, token_id: int) -> str | None:
        return None

    def token_bytes(self, token_id: int) -> bytes:
        return self.itos.get(token_id, "").encode("utf-8")


class MissingTokenizer:
    """Stands in where a command needs no vocabulary (``inspect``): says why there is
    none if anything asks it to encode."""

    def __init__(self, reason: str):
        self.reason = reason
        self.name = "none available offline"
        self.n_vocab = 0

    def encode(self, text: str) -> list[int]:
        raise TokenizerError(self.reason)

    def special_name(self, token_id: int) -> str | None:
        return None

    def token_bytes(self, token_id: int) -> bytes:
        return b""


class _RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global (it could run code): not a damaged file."""


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: plain containers, str and int need none."""

    def find_class(self, module: str, name: str):
        raise _RefusedGlobal(f"refused {module}.{name}")


MAX_META_BYTES = 64 << 20


def read_meta_pkl(path: Path) -> CharTokenizer:
    require_regular_file(path, "meta.pkl", TokenizerError)
    if path.stat().st_size > MAX_META_BYTES:
        raise TokenizerError(f"{path}: too large for a meta.pkl ({path.stat().st_size:,} bytes)")
    try:
        meta = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except _RefusedGlobal as exc:
        raise TokenizerError(f"{path}: refused for safety: meta.pkl may only hold plain dicts "
                             f"of str/int ({exc})") from None
    except pickle.UnpicklingError:  # truncated or damaged: nothing was refused
        raise TokenizerError(f"{path}: not a readable meta.pkl (truncated or damaged)") \
            from None
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, RecursionError) as exc:
        raise TokenizerError(f"{path}: not a readable meta.pkl ({type(exc).__name__})") from None
    stoi, itos = (meta.get("stoi"), meta.get("itos")) if isinstance(meta, dict) else (None, None)
    if not (isinstance(stoi, dict) and isinstance(itos, dict)
            and all(isinstance(k, str) and isinstance(v, int) for k, v in stoi.items())
            and all(isinstance(k, int) and isinstance(v, str) for k, v in itos.items())):
        raise TokenizerError(f"{path}: meta.pkl needs 'stoi' (str→int) and 'itos' (int→str)")
    bad = [i for i in (*stoi.values(), *itos) if i < 0]
    if bad:
        raise TokenizerError(f"{path}: meta.pkl holds negative token ids (e.g. {bad[0]})")
    return CharTokenizer(stoi, itos, f"char ({path.name}, {len(itos)} symbols)")


def read_tiktoken_file(path: Path) -> TiktokenTokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    require_regular_file(path, ".tiktoken vocabulary", TokenizerError)
    try:
        ranks = load_tiktoken_bpe(str(path))
    except Exception:  # tiktoken's error quotes the line: never echo a file's content
        raise TokenizerError(f"{path}: not a .tiktoken vocabulary (each line must be a "
                             "base64 token and its rank)") from None
    if len(ranks) <= 50257:  # gpt2 / r50k style
        encoding = tiktoken.Encoding(path.stem, pat_str=R50K_PATTERN, mergeable_ranks=ranks,
                                     special_tokens={"<|endoftext|>": len(ranks)})
    else:
        base = cl100k()._encoding
        encoding = tiktoken.Encoding(path.stem, pat_str=base._pat_str, mergeable_ranks=ranks,
                                     special_tokens={})
    return TiktokenTokenizer(encoding, path.stem)


def offline_encoding(name: str) -> TiktokenTokenizer | None:
    """A registered encoding that ships its file (plugins named ``*_offline``)."""
    import tiktoken

    if name == "cl100k_base":
        return cl100k()
    candidates = [name] if name.endswith("_offline") else [f"{name}_offline"]
    for candidate in candidates:
        if candidate in tiktoken.list_encoding_names():
            return TiktokenTokenizer(tiktoken.get_encoding(candidate), name)
    return None


def resolve_tokenizer(spec: str | None, default: str, vocab_size: int, ckpt: Path,
                      dataset: str | None = None) -> Tokenizer:
    """``spec`` is --tokenizer (a name, a .tiktoken file, a meta.pkl, a tokenizer.json or
    its directory); else the layout's default: ``cl100k_base`` for the book, ``nanogpt``
    for nanoGPT, the directory's own for Hugging Face models."""
    if spec:
        path = Path(spec)
        if path.name == "tokenizer.json" or (path.is_dir() and (path / "tokenizer.json").is_file()):
            from minigpt.text.hf_tokenizer import load_hf_tokenizer
            return load_hf_tokenizer(path if path.is_dir() else path.parent)
        if path.suffix == ".pkl":
            return check_ids(read_meta_pkl(path), vocab_size)
        if path.suffix == ".tiktoken" or path.exists():  # a FIFO too: refused, not read
            return read_tiktoken_file(path)
        found = offline_encoding(spec)
        if found is None:
            raise TokenizerError(f"tokenizer {spec!r} is not available offline: pass a "
                                 ".tiktoken file or a meta.pkl with --tokenizer")
        return found
    if default == "hf":
        from minigpt.text.hf_tokenizer import load_hf_tokenizer
        return load_hf_tokenizer(ckpt)
    if default != "nanogpt":
        return cl100k()
    for meta in _meta_candidates(ckpt, dataset):
        if meta.is_file():
            return check_ids(read_meta_pkl(meta), vocab_size)
    if vocab_size in GPT2_SIZES:
        gpt2 = offline_encoding("gpt2") or offline_encoding("r50k_base")
        if gpt2 is not None:
            return gpt2
        raise TokenizerError("this nanoGPT checkpoint uses the gpt2 vocabulary, which is not "
                             "installed offline: pass --tokenizer r50k_base.tiktoken (the gpt2 "
                             "file, fetched once where there is network from "
                             "https://openaipublic.blob.core.windows.net/encodings/"
                             "r50k_base.tiktoken) or the dataset's meta.pkl")
    raise TokenizerError(f"no vocabulary for this nanoGPT checkpoint ({vocab_size} tokens): "
                         "put its meta.pkl next to it or pass --tokenizer FILE")


def check_ids(tokenizer: CharTokenizer, vocab_size: int) -> CharTokenizer:
    """A character vocabulary must fit the model: an id past its embedding would read
    the wrong row (or fail mid-generation)."""
    top = max([*tokenizer.stoi.values(), *tokenizer.itos], default=-1)
    if top >= vocab_size:
        raise TokenizerError(f"{tokenizer.name}: token id {top} is outside this model's "
                             f"vocabulary of {vocab_size}")
    return tokenizer


def _meta_candidates(ckpt: Path, dataset: str | None) -> list[Path]:
    here = ckpt.resolve().parent
    out = [here / "meta.pkl"]
    # A dataset is a folder name under data/ (nanoGPT's "shakespeare_char"): an absolute
    # path or ".." in a checkpoint's config must not send us to read files elsewhere.
    if dataset and (Path(dataset).is_absolute() or ".." in Path(dataset).parts):
        dataset = None
    if dataset:
        out += [here / "data" / dataset / "meta.pkl", here.parent / "data" / dataset / "meta.pkl",
                Path("data") / dataset / "meta.pkl"]
    return out
