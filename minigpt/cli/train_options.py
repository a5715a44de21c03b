"""``minigpt train``'s settings and options, without torch: ``minigpt --help`` and
argument errors answer before torch could even be imported."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from minigpt.errors import SettingsError


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



def training_bytes(config: TrainConfig, vocab: int) -> int:
    """A rough upper estimate of what training takes, in bytes (float32): weights,
    gradients and AdamW's two moments (the [C, C] masks too), plus one step's
    activations (logits and their softmax and gradient, attention maps, block outputs)."""
    d, C, B = config.d_model, config.context_length, config.batch_size
    L, H = config.num_blocks, config.num_heads
    params = 2 * vocab * d + vocab + L * (12 * d * d + 13 * d) + 2 * d + L * H * C * C
    activations = B * C * (3 * vocab + L * (3 * H * C + 20 * d))
    return 4 * (4 * params + activations)


def available_memory() -> int | None:
    """Bytes this machine can still give (MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_training_fits(config: TrainConfig, vocab: int, memory: int | None) -> None:
    """Refuse, before anything is allocated, settings whose training cannot fit."""
    need = training_bytes(config, vocab)
    if memory is not None and need > memory:
        raise SettingsError(
            f"these settings need about {need / 2**30:,.1f} GiB to train and "
            f"{memory / 2**30:,.1f} GiB is free: lower --batch-size, --d-model, "
            "--num-blocks or --context-length")


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
