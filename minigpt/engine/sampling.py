"""Sampling as small pure functions over a 1-D logits vector [V].

Order per step (as the book, plus the knobs it lacks): repetition penalty →
report top-5 of softmax(logits / T) → top-k → top-p → sample (or argmax at T = 0).
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")


def apply_repetition_penalty(logits: torch.Tensor, previous_ids: torch.Tensor,
                             penalty: float) -> torch.Tensor:
    """CTRL-style: seen tokens get positive logits divided and negative ones multiplied."""
    if penalty == 1.0 or previous_ids.numel() == 0:
        return logits
    logits = logits.clone()
    seen = logits[previous_ids]
    logits[previous_ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


def penalise_window(logits: torch.Tensor, window_ids: list[int],
                    penalty: float) -> torch.Tensor:
    """The repetition penalty over the tokens the model sees (its window)."""
    if penalty == 1.0:
        return logits
    seen = torch.tensor(window_ids, device=logits.device)
    return apply_repetition_penalty(logits, seen, penalty)


def scale_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / T; T = 0 (greedy) leaves them as they are."""
    return logits if temperature == 0 else logits / temperature


def top_k_mask(logits: torch.Tensor, k: int | None) -> torch.Tensor | None:
    """Bool mask of kept tokens: logits ≥ the k-th largest (ties kept, as the book)."""
    if k is None or k >= logits.numel():
        return None
    kth = torch.topk(logits, k).values[-1]
    return logits >= kth


def top_p_mask(probs: torch.Tensor, p: float | None) -> torch.Tensor | None:
    """Bool mask of the smallest set of most likely tokens whose mass reaches p."""
    if p is None or p >= 1.0:
        return None
    sorted_probs, order = torch.sort(probs, descending=True)
    mass_before = torch.cumsum(sorted_probs, dim=0) - sorted_probs
    keep_sorted = mass_before < p
    keep_sorted[0] = True  # the top token always stays (p may underflow to 0 in float32)
    keep = torch.zeros_like(keep_sorted)
    keep[order] = keep_sorted
    return keep


def combine_masks(*masks: torch.Tensor | None) -> torch.Tensor | None:
    result = None
    for mask in masks:
        if mask is not None:
            result = mask if result is None else result & mask
    return result


def filtered_probs(probs: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """Zero the removed tokens and renormalise."""
    if keep is None:
        return probs
    kept = probs * keep
    return kept / kept.sum()


def choose(probs: torch.Tensor, greedy: bool, generator: torch.Generator | None) -> torch.Tensor:
    """One token id as a 0-d tensor (stays on device: no host sync here).

    Sampling inverts the cumulative distribution with one uniform draw, far cheaper than
    ``torch.multinomial`` over 100k categories (figures: benchmarks/bench_generate.py).
    Zero-probability tokens are never drawn."""
    if greedy:
        return probs.argmax()
    cdf = torch.cumsum(probs, 0, dtype=torch.float64)
    u = torch.rand(1, generator=generator, device=probs.device, dtype=torch.float64)
    index = torch.searchsorted(cdf, u * cdf[-1], right=True)
    return index.clamp_(max=probs.numel() - 1)[0]


def exact_softmax(z: torch.Tensor) -> torch.Tensor:
    """softmax(z) in float32 whose sum is accumulated in float64. torch's float32
    softmax over 100k logits can sum to 1.00014, which made trace, score and the why
    panel disagree in the fourth digit; a float64 softmax fixes that but costs four
    times as much on a CPU. This sums to 1 within 1e-6, each value within 1e-7 of
    exp(z − logsumexp(z))."""
    e = torch.exp(z - z.max())
    return e / e.sum(dtype=torch.float64).to(e.dtype)


def distribution(logits: torch.Tensor, temperature: float, top_k: int | None,
                 top_p: float | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(reported probs = softmax(logits / T) over the whole vocabulary, keep mask).

    At T = 0 the reported probs are softmax(logits) and the choice is the argmax."""
    probs = exact_softmax(scale_temperature(logits.float(), temperature))
    keep_k = top_k_mask(logits, top_k)
    # top-p applies to what top-k left, renormalised (the usual order).
    keep_p = top_p_mask(filtered_probs(probs, keep_k), top_p)
    return probs, combine_masks(keep_k, keep_p)


def top_n(z: torch.Tensor, n: int, columns: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, ids) of the ``n`` largest of ``z`` [V], in two stages: the top ``n`` of
    each row of ``columns``, then of those. The same set as ``torch.topk(z, n)``, but a
    single CUDA topk over 100k values is most of a greedy step's tail."""
    size = z.numel()
    n = min(n, size)
    rows = -(-size // columns)
    if rows == 1:
        return torch.topk(z, n)
    padded = z.new_full((rows * columns,), float("-inf"))
    padded[:size] = z
    values, ids = padded.view(rows, columns).topk(n, dim=1)
    ids = ids + torch.arange(0, rows * columns, columns, device=z.device).view(rows, 1)
    values, at = values.flatten().topk(n)
    return values, ids.flatten()[at]


def greedy_rows(logits: torch.Tensor, n: int) -> torch.Tensor:
    """What a greedy step reads, as one float64 tensor [3, n + 1]: the top-``n`` ids
    (columns) then the chosen id, their probabilities under softmax(logits) (the same
    values as ``exact_softmax``), and kept flags (all 1: greedy filters nothing).
    Fixed shapes and no host sync, so on cuda it runs inside the step's graph and the
    step makes one small transfer.

    The choice is the argmax (the lowest id among equal maxima, as ``torch.argmax``)
    whenever fewer than ``n`` logits tie for the maximum; the caller tells that case
    from equal first and last probabilities and takes the long way then."""
    z = logits.float()
    values, ids = top_n(z, n)
    peak = values[0]
    total = torch.exp(z - peak).sum(dtype=torch.float64).to(z.dtype)
    probs = torch.exp(values - peak) / total
    chosen = torch.where(values == peak, ids, z.numel()).min().view(1)
    return torch.stack([torch.cat([ids, chosen]).double(),
                        torch.cat([probs, probs[:1]]).double(),
                        torch.ones(ids.numel() + 1, dtype=torch.float64, device=z.device)])
