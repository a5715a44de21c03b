"""``minigpt train``'s settings and options, without torch: ``minigpt --help`` and
argument errors answer before torch could even be imported."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from .errors import SettingsError


@dataclass
class TrainConfig:
    """The book's h_params defaults (chapter 19)."""

    d_model: int = 80
    batch_size: int = 4
    context_length: int = 128
    num_blocks: int = 6
    num_heads: int = 4
    dropout: float = 0.1
    max_iters: int = 500
    learning_rate: float = 1e-3
    eval_interval: int = 50
    eval_iters: int = 20
    seed: int = 1337
    device: str = "auto"
    dtype: str = "float32"

    def validate(self) -> None:
        for name in ("d_model", "batch_size", "context_length", "num_blocks", "num_heads",
                     "max_iters", "eval_interval", "eval_iters"):
            if getattr(self, name) < 1:
                raise SettingsError(f"--{name.replace('_', '-')} must be ≥ 1")
        if self.d_model % self.num_heads:
            raise SettingsError(f"--d-model {self.d_model} must be divisible by "
                                f"--num-heads {self.num_heads}")
        if not 0 <= self.dropout < 1:
            raise SettingsError("--dropout must be in [0, 1)")
        if not (math.isfinite(self.learning_rate) and self.learning_rate > 0):
            raise SettingsError("--learning-rate must be a positive number")
        if self.dtype not in ("float32", "float16"):
            raise SettingsError("--dtype must be float32 or float16")



def add_train_parser(sub) -> None:
    d = TrainConfig()
    p = sub.add_parser("train", help="train the book's model on a text file")
    p.add_argument("data", type=Path, metavar="DATA", help="UTF-8 text file")
    p.add_argument("--out", type=Path, default=Path("model/model.ckpt"), metavar="PATH",
                   help="where the trained model goes (default: model/model.ckpt in the "
                        "current directory, as the book's train.py); an existing file is "
                        "never replaced without --force")
    p.add_argument("--force", action="store_true",
                   help="replace an existing --out file (and ckpt-iterN.ckpt snapshots)")
    for name, kind in (("d_model", int), ("num_blocks", int), ("num_heads", int),
                       ("context_length", int), ("batch_size", int), ("max_iters", int),
                       ("learning_rate", float), ("eval_interval", int), ("eval_iters", int),
                       ("dropout", float), ("seed", int)):
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(d, name),
                       help="default %(default)s")
    p.add_argument("--device", default="auto")
    p.add_argument("--save-every", type=int, default=0, metavar="N",
                   help="also keep ckpt-iterN.ckpt (book format) every N iterations, next "
                        "to --out, to compare snapshots of the run")
    p.add_argument("--dtype", choices=("float32", "float16"), default="float32",
                   help="storage precision of the saved tensors")
