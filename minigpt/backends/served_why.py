"""Why this token, from a server that gives its top-N only: the raw top-N, the sampler's
own top-N where the server reports it (llama-server's ``post_sampling_probs``), and the
entropies as bounds. Torch-free.

With top-N probabilities p₁ ≥ … ≥ p_N and the rest r = 1 − Σp spread over the V − N other
tokens, each of those at most p_N: the rest adds at least r·log(1/p_N) nats (each of its
tokens is at least that surprising) and at most r·log((V − N)/r) (spread evenly).
"""

from __future__ import annotations

import math

from minigpt.steps import Why, WhyRow

NAN = float("nan")


def entropy_bounds(probs: list[float], vocab_size: int) -> tuple[float, float, float]:
    """(low, high, rest) for a distribution known by its top probabilities ``probs``."""
    known = [p for p in probs if p > 0]
    h = max(0.0, -sum(p * math.log(p) for p in known))  # one token: 0, never -0.00
    rest = max(0.0, 1.0 - sum(known))
    others = vocab_size - len(known)
    if rest <= 1e-9 or others <= 0 or not known:
        return h, h, rest
    low = h + rest * math.log(1 / min(known))
    high = h + rest * math.log(others / rest)
    return low, max(low, high), rest


def served_why(reply, vocab_size: int, display) -> Why:
    """The breakdown of a server's reply (``ServedStep``): rows of its raw top-N, each with
    the sampler's final probability where reported (absent from the sampler's list: not
    kept); ``display(id)`` gives a token's text."""
    raw_low, raw_high, rest = entropy_bounds([o.prob for o in reply.top], vocab_size)
    after = {o.id: o.prob for o in reply.after} if reply.after is not None else None
    rows = tuple(WhyRow(o.id, o.prob, NAN, after is None or o.id in after,
                        NAN if after is None else after.get(o.id, 0.0), display(o.id))
                 for o in reply.top)
    if after is None:
        low = high = NAN
        kept = 0
    else:
        low, high, left = entropy_bounds(list(after.values()), vocab_size)
        kept = len(after) if left <= 1e-6 else 0  # 0: more than the server listed
    return Why(rows, raw_low, low, kept, vocab_size, raw_high, high, rest)
