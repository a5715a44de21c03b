"""A model's shape as a typed record (torch-free).

The book's checkpoints keep these numbers in a plain dict, ``h_params``, and call the
vocabulary size ``max_token_value``. Files are still read and written that way
(``from_book`` / ``book_dict``); inside the code a model's shape is an ``HParams``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping


@dataclass(frozen=True)
class HParams:
    d_model: int
    context_length: int  # the longest window the model attends over
    num_blocks: int
    num_heads: int
    vocab_size: int  # ids the output layer scores (the book's max_token_value)
    dropout: float = 0.0
    embedding_rows: int | None = None  # the first edition embeds one id more than it outputs
    bias: bool = True  # nanoGPT's bias=False drops the linear and LayerNorm biases

    @classmethod
    def from_book(cls, h_params: Mapping) -> "HParams":
        """From the book's dict (extra keys such as a training run's are ignored)."""
        rows = h_params.get("embedding_rows")
        return cls(int(h_params["d_model"]), int(h_params["context_length"]),
                   int(h_params["num_blocks"]), int(h_params["num_heads"]),
                   int(h_params["max_token_value"]), float(h_params.get("dropout", 0.0)),
                   None if rows is None else int(rows), bool(h_params.get("bias", True)))

    @classmethod
    def of(cls, h_params: "HParams | Mapping") -> "HParams":
        return h_params if isinstance(h_params, HParams) else cls.from_book(h_params)

    def book_dict(self) -> dict:
        """The dict the book's ``train.py`` writes, for a checkpoint it can read."""
        out = {"d_model": self.d_model, "context_length": self.context_length,
               "num_blocks": self.num_blocks, "num_heads": self.num_heads,
               "max_token_value": self.vocab_size, "dropout": self.dropout}
        if self.embedding_rows is not None:
            out["embedding_rows"] = self.embedding_rows
        if not self.bias:
            out["bias"] = False
        return out

    @property
    def prompt_vocab_size(self) -> int:
        """Ids a prompt may hold: the embedding's rows."""
        return self.embedding_rows or self.vocab_size
