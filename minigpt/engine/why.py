"""Why this token: one step's distribution taken apart, knob by knob.

Pure functions of a logits vector and the knobs, so the TUI can redraw the
breakdown for new knobs from cached logits without running the model again.
Stages follow ``sampling``: raw softmax (T = 1, no knobs) → repetition penalty
and temperature → top-k / top-p filter → renormalised (what sampling draws from).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from minigpt.engine import sampling
from minigpt.settings import SamplingSettings
from minigpt.steps import Why, WhyRow


def entropy(probs: torch.Tensor) -> torch.Tensor:
    """Entropy in nats (0 · log 0 = 0)."""
    return torch.special.entr(probs).sum()


def why(logits: torch.Tensor, settings: SamplingSettings, previous_ids: torch.Tensor | None = None,
        top_n: int = 5) -> Why:
    """Break down the distribution over ``logits`` [V] under ``settings``.

    ``previous_ids``: the tokens the repetition penalty looks at (the context)."""
    s = settings
    logits = logits.float()
    raw = sampling.exact_softmax(logits)  # as the engine's distribution
    if previous_ids is not None:
        logits = sampling.apply_repetition_penalty(logits, previous_ids, s.repetition_penalty)
    probs, keep = sampling.distribution(logits, s.temperature, s.top_k, s.top_p)
    if s.temperature == 0:  # greedy: everything on the argmax (lowest id on a tie)
        tempered = F.one_hot(logits.argmax(), logits.numel()).to(probs.dtype)
        final = tempered
    else:
        tempered = probs
        final = sampling.filtered_probs(probs, keep)
    kept = keep if keep is not None else torch.ones_like(logits, dtype=torch.bool)
    ids = torch.topk(logits, min(top_n, logits.numel())).indices
    columns = torch.stack([ids.double(), raw[ids].double(), tempered[ids].double(),
                           kept[ids].double(), final[ids].double()])
    scalars = torch.stack([entropy(raw).double(), entropy(final).double(),
                           kept.sum().double()]).tolist()  # one host transfer each
    rows = tuple(WhyRow(int(i), r, t, bool(k), f) for i, r, t, k, f in zip(*columns.tolist()))
    return Why(rows, scalars[0], scalars[1], int(scalars[2]), logits.numel())
