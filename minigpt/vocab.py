"""Choosing a tokenizer for a checkpoint, offline only.

Book checkpoints use cl100k_base. nanoGPT ones use gpt2 (when an installed package
provides it offline) or a character vocabulary from the dataset's ``meta.pkl``,
which is read without executing anything: only plain dicts of str/int are allowed.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path

from .errors import PromptError, TokenizerError
from .tokenizer import TiktokenTokenizer, Tokenizer, cl100k

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

    def token_bytes(self, token_id: int) -> bytes:
        return self.itos.get(token_id, "").encode("utf-8")


class _PlainUnpickler(pickle.Unpickler):
    """Refuses every global: plain containers, str and int need none."""

    def find_class(self, module: str, name: str):
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def read_meta_pkl(path: Path) -> CharTokenizer:
    try:
        meta = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as exc:
        raise TokenizerError(f"{path}: refused for safety: meta.pkl may only hold plain dicts "
                             f"of str/int ({exc})") from None
    except (OSError, EOFError, ValueError, TypeError, IndexError, KeyError, AttributeError,
            MemoryError, RecursionError) as exc:
        raise TokenizerError(f"{path}: not a readable meta.pkl ({type(exc).__name__})") from None
    stoi, itos = (meta.get("stoi"), meta.get("itos")) if isinstance(meta, dict) else (None, None)
    if not (isinstance(stoi, dict) and isinstance(itos, dict)
            and all(isinstance(k, str) and isinstance(v, int) for k, v in stoi.items())
            and all(isinstance(k, int) and isinstance(v, str) for k, v in itos.items())):
        raise TokenizerError(f"{path}: meta.pkl needs 'stoi' (str→int) and 'itos' (int→str)")
    return CharTokenizer(stoi, itos, f"char ({path.name}, {len(itos)} symbols)")


def read_tiktoken_file(path: Path) -> TiktokenTokenizer:
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    try:
        ranks = load_tiktoken_bpe(str(path))
    except Exception as exc:  # tiktoken raises plain errors for malformed files
        raise TokenizerError(f"{path}: not a .tiktoken vocabulary ({exc})") from None
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
    """``spec`` is --tokenizer (a name, a .tiktoken file or a meta.pkl); else the layout's
    default: ``cl100k_base`` for the book, ``nanogpt`` for nanoGPT."""
    if spec:
        path = Path(spec)
        if path.suffix == ".pkl":
            return read_meta_pkl(path)
        if path.suffix == ".tiktoken" or path.is_file():
            return read_tiktoken_file(path)
        found = offline_encoding(spec)
        if found is None:
            raise TokenizerError(f"tokenizer {spec!r} is not available offline: pass a "
                                 ".tiktoken file or a meta.pkl with --tokenizer")
        return found
    if default != "nanogpt":
        return cl100k()
    for meta in _meta_candidates(ckpt, dataset):
        if meta.is_file():
            return read_meta_pkl(meta)
    if vocab_size in GPT2_SIZES:
        gpt2 = offline_encoding("gpt2") or offline_encoding("r50k_base")
        if gpt2 is not None:
            return gpt2
        raise TokenizerError("this nanoGPT checkpoint uses the gpt2 vocabulary, which is not "
                             "installed offline: pass --tokenizer gpt2.tiktoken (or a meta.pkl)")
    raise TokenizerError(f"no vocabulary for this nanoGPT checkpoint ({vocab_size} tokens): "
                         "put its meta.pkl next to it or pass --tokenizer FILE")


def _meta_candidates(ckpt: Path, dataset: str | None) -> list[Path]:
    here = ckpt.resolve().parent
    out = [here / "meta.pkl"]
    if dataset:
        out += [here / "data" / dataset / "meta.pkl", here.parent / "data" / dataset / "meta.pkl",
                Path("data") / dataset / "meta.pkl"]
    return out
