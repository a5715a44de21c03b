"""Compare two checkpoints on the same context: what did training change?

Model A drives generation (sampled or greedy from A's distribution, seeded as
usual); model B is shown every token A chose, so at each step both have seen the
same context (each cropped to its own ``context_length``). Per step: both top-5
lists, the chosen token's probability under each, and how far apart the two
distributions are over the whole vocabulary — KL(P_A‖P_B) and the Jensen–Shannon
divergence, in nats, of the raw distributions (T = 1), computed in float64.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import torch
from torch.nn import functional as F

from minigpt.errors import SettingsError
from minigpt.decode.make import make_decoder
from minigpt.engine import sampling
from minigpt.engine.window import window_of
from minigpt.steps import Candidate, Versus


@dataclass(frozen=True)
class Divergence:
    kl_ab: float  # KL(P_A ‖ P_B), nats
    js: float  # Jensen–Shannon divergence, nats (≤ ln 2)
    lower_bound: bool = False  # from a server's top-N and the rest: the true values are ≥


@dataclass(frozen=True)
class CompareStep:
    index: int
    chosen: Candidate  # A's choice, with its probability under A
    prob_b: float  # the same token's probability under B
    a: tuple[Candidate, ...]  # A's top-5
    b: tuple[Candidate, ...]  # B's top-5
    divergence: Divergence
    text: str  # prompt and continuation so far
    raw: bool = False  # both columns are raw probabilities (T 1), as a server reports B's


def divergence(logits_a: torch.Tensor, logits_b: torch.Tensor) -> Divergence:
    """KL and JS between softmax(logits_a) and softmax(logits_b), float64."""
    log_a = F.log_softmax(logits_a.double(), dim=-1)
    log_b = F.log_softmax(logits_b.double(), dim=-1)
    p_a, p_b = log_a.exp(), log_b.exp()
    log_m = torch.logaddexp(log_a, log_b) - torch.log(torch.tensor(2.0, dtype=torch.float64,
                                                                    device=log_a.device))
    kl_ab = torch.sum(p_a * (log_a - log_b))
    js = 0.5 * torch.sum(p_a * (log_a - log_m)) + 0.5 * torch.sum(p_b * (log_b - log_m))
    kl, js = torch.stack([kl_ab, js]).tolist()  # one host transfer
    return Divergence(max(kl, 0.0), max(js, 0.0))


def divergence_bound(probs_a: torch.Tensor, top_b) -> Divergence:
    """KL(P_A ‖ P_B) and JS when B is a server that gives only its top-N (``Option``s):
    both distributions grouped into B's top-N tokens and one cell for the rest (B's
    remainder mass 1 − Σ q). Grouping never increases a divergence (data processing), so
    these are lower bounds of the values over the whole vocabulary, and said to be."""
    ids = [o.id for o in top_b]
    p = probs_a.double()[torch.tensor(ids, device=probs_a.device)].tolist() if ids else []
    q = [o.prob for o in top_b]
    p.append(max(0.0, 1.0 - sum(p)))
    # B's rest: where A puts mass there, at least 1e-6 (a float32 top-N summing to 1 would
    # make it 0 and the "bound" explode; a rest taken larger only lowers KL, a bound still).
    rest = 1.0 - sum(q)
    q.append(max(rest, 1e-6) if p[-1] > 1e-9 else max(rest, 0.0))
    p_t = torch.tensor(p, dtype=torch.float64)
    q_t = torch.tensor(q, dtype=torch.float64)
    m = (p_t + q_t) / 2
    terms = lambda a, b: torch.where(a > 0, a * torch.log(a / b), 0.0).sum()  # noqa: E731
    kl, js = terms(p_t, q_t).item(), (0.5 * terms(p_t, m) + 0.5 * terms(q_t, m)).item()
    return Divergence(max(kl, 0.0), max(js, 0.0), lower_bound=True)


PROBE = "The quick brown fox, 农夫山泉 and 123 ünïcödé"  # ids two tokenizers must agree on


def check_comparable(a, b, name_a: str = "A", name_b: str = "B") -> None:
    """Both models must read the same token ids: the same vocabulary and tokenizer (a
    server's tokenizer has no vocabulary file to name: it must encode a probe text as
    the other does)."""
    if a.vocab_size != b.vocab_size:
        raise SettingsError(f"{name_a} has {a.vocab_size:,} tokens, {name_b} has "
                            f"{b.vocab_size:,}: compare needs the same vocabulary")
    if "served" in (a.backend, b.backend):
        if a.tokenizer.encode(PROBE) != b.tokenizer.encode(PROBE):
            raise SettingsError(f"{name_a} and {name_b} encode text differently: compare "
                                "needs the same tokenizer")
        return
    if a.tokenizer.name != b.tokenizer.name:
        raise SettingsError(f"{name_a} uses the {a.tokenizer.name} tokenizer, {name_b} "
                            f"{b.tokenizer.name}: compare needs the same one (see --tokenizer)")


def compare(engine_a, engine_b, count: int) -> Iterator[CompareStep]:
    """Up to ``count`` steps; both engines must have been ``reset`` with the prompt."""
    for _ in range(count):
        logits_a = engine_a.logits_at(len(engine_a.tokens))
        if engine_b.capabilities.full_logits:
            apart = divergence(logits_a, engine_b.logits_at(len(engine_b.tokens)))
            step_a = engine_a.step()
            step_b = engine_b.step(step_a.chosen.id)
        else:  # a served B: its top-N only (its reply to the step that took A's token)
            step_a = engine_a.step()
            step_b = engine_b.step(step_a.chosen.id)
            raw_a = torch.softmax(logits_a.double(), dim=-1)
            apart = divergence_bound(raw_a, engine_b.last_top)
            # The server reports raw probabilities: A's shown on the same footing (T 1).
            as_raw = lambda c: replace(c, prob=float(raw_a[c.id]))  # noqa: E731
            yield CompareStep(step_a.index, as_raw(step_a.chosen), step_b.chosen.prob,
                              tuple(map(as_raw, step_a.candidates)), step_b.candidates, apart,
                              engine_a.prompt + engine_a.completion, raw=True)
            continue
        yield CompareStep(step_a.index, step_a.chosen, step_b.chosen.prob, step_a.candidates,
                          step_b.candidates, apart, engine_a.prompt + engine_a.completion)


class Other:
    """The second checkpoint in the explorer: shown every token the driving model chose.
    Its decoder's cache reuses the common prefix, so a step costs it one new position."""

    def __init__(self, model: torch.nn.Module, label: str, slide: int = 1):
        self.model = model
        self.decoder = make_decoder(model)
        self.context_length = model.hparams.context_length
        self.slide = slide  # its own window's (minigpt.engine.window)
        self.label = label

    def window(self, tokens: list[int]) -> list[int]:
        return window_of(tokens, self.context_length, self.slide)

    def logits(self, tokens: list[int]) -> torch.Tensor:
        with torch.inference_mode():
            return self.decoder.last_logits(self.window(tokens))


def reported_probs(logits: torch.Tensor, window: list[int], settings) -> torch.Tensor:
    """softmax(penalised logits / T): what the candidates table shows for a model that
    sees ``window``."""
    logits = sampling.penalise_window(logits, window, settings.repetition_penalty)
    return sampling.distribution(logits, settings.temperature, None, None)[0]


def versus(other: Other, tokens: list[int], driver_logits: torch.Tensor,
           driver_probs: torch.Tensor, settings, ids: list[int], chosen_id: int,
           candidate) -> Versus:
    """How ``other`` sees the position the driver is predicting: its probability of
    the driver's candidates ``ids`` and of ``chosen_id``, its own top-5 (with the
    driver's probability of each), and the divergence of the raw distributions.
    ``candidate(id, prob, kept)`` builds a display Candidate."""
    with torch.inference_mode():
        other_logits = other.logits(tokens)
        probs = reported_probs(other_logits, other.window(tokens), settings)
        top = torch.topk(probs, min(5, probs.numel())).indices
        apart = divergence(driver_logits, other_logits)
        asked = torch.tensor([*ids, chosen_id], device=probs.device)
        rows = torch.cat([probs[asked].double(), top.double(), probs[top].double(),
                          driver_probs[top].double()]).tolist()  # one host transfer
    n, k = len(ids), top.numel()
    mine, chosen, rest = rows[:n], rows[n], rows[n + 1:]
    top_ids, top_probs, driver_top = rest[:k], rest[k:2 * k], rest[2 * k:]
    return Versus(other.label, tuple(mine), chosen,
                  tuple(candidate(int(i), q, True) for i, q in zip(top_ids, top_probs)),
                  tuple(driver_top), apart.kl_ab, apart.js)

