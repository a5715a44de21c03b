"""What the engine yields and keeps: candidates, previews, steps, attention rows, and
the answers of its insight views (why, completions, scores).

Plain records with no torch inside: the engine process sends them to the UI
process, which must be able to unpickle them without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Capabilities:
    """What a backend can give (DESIGN.md §8): each view asks before it shows anything,
    and says in one line what it cannot show, never a blank or an invented number. Our
    decoders and transformers give everything; a server gives top-N candidates only."""

    full_logits: bool = True  # the whole distribution: why, entropy, completions, KL
    attention: bool = True  # attention rows of a step's pass
    scoring: bool = True  # teacher-forced probabilities of a given text
    top_n: int | None = None  # candidates a step can report (None: as many as asked)
    own_sampler: bool = False  # the backend draws the tokens (the knobs pass through)

    @property
    def why(self) -> bool:
        """The why panel: exact from the whole distribution, or bounds from a top-N."""
        return self.full_logits or self.top_n is not None

    MISSING = {
        "full_logits": "this view needs the whole distribution, which this model's backend "
                       "does not give (top-N only)",
        "why": "why this token needs the distribution or its top-N, which this backend "
               "does not give",
        "attention": "attention needs an in-process model",
        "scoring": "scoring needs a backend that gives a text's own probabilities",
    }

    def missing(self, what: str) -> str | None:
        """Why ``what`` ("full_logits", "attention", "scoring") cannot be shown, or None."""
        return None if getattr(self, what) else self.MISSING[what]


@dataclass(frozen=True)
class Candidate:
    id: int
    text: str  # display string: partial UTF-8 shown as ‹e5 86›
    prob: float  # under softmax(logits / T) over the whole vocabulary (T = 0: softmax(logits))
    kept: bool  # survived top-k / top-p
    partial: bool  # the piece is an incomplete UTF-8 sequence
    special: bool = False  # the vocabulary has no bytes for this id (text: ‹id N›)


@dataclass(frozen=True)
class Versus:
    """The other checkpoint on the same context (``minigpt-tui A --compare B``): it saw
    the tokens the driving model chose, cropped to its own context_length."""

    other: str  # its label, "A" or "B"
    probs: tuple[float, ...]  # its probability of each of the driver's candidates
    chosen_prob: float  # of the token chosen (or about to be: the driver's top one)
    top: tuple[Candidate, ...]  # its own top-5
    top_driver_probs: tuple[float, ...]  # the driver's probability of each of those
    kl: float  # KL(P_driver ‖ P_other) in nats, raw distributions (T = 1)
    js: float  # Jensen–Shannon divergence in nats (≤ ln 2)


@dataclass(frozen=True)
class Preview:
    """The distribution for the next position, before a token is chosen."""

    index: int  # 1-based number this step will have
    position: int  # index in the whole sequence of the token to be chosen
    candidates: tuple[Candidate, ...]
    versus: Versus | None = None


@dataclass(frozen=True)
class AttentionRows:
    """The last position's attention when predicting ``position``: weights[layer][head]
    over the window's tokens (``window_ids``, ≤ context_length, oldest first)."""

    position: int
    window_ids: tuple[int, ...]
    weights: tuple[tuple[tuple[float, ...], ...], ...]
    window_text: tuple[str, ...] = ()  # display piece of each window token (‹e5 86› escapes)


@dataclass(frozen=True)
class Step:
    index: int  # 1-based: generated tokens after this step
    position: int  # index of the chosen token in the whole sequence
    candidates: tuple[Candidate, ...]
    chosen: Candidate
    chosen_rank: int | None  # 1..5 when among the candidates
    token_bytes: bytes
    text: str  # characters this token completes in the stream (may be "")
    forced: bool  # taken instead of sampled
    seconds: float
    context: int  # tokens the model conditioned on (≤ context_length)
    versus: Versus | None = None  # with a second checkpoint to compare with


@dataclass(frozen=True)
class WhyRow:
    id: int
    raw: float  # softmax(logits): the model alone, T = 1
    tempered: float  # softmax(penalised logits / T); T = 0 is its limit, all mass on the argmax
    kept: bool  # survives top-k / top-p
    final: float  # renormalised over the kept tokens: the probability of being drawn
    text: str = ""  # display piece (filled by the engine, which has the tokenizer)


@dataclass(frozen=True)
class Why:
    rows: tuple[WhyRow, ...]  # the most likely tokens after the penalty, best first
    raw_entropy: float  # nats, of the raw distribution
    entropy: float  # nats, of the distribution sampling draws from
    kept_count: int  # tokens top-k / top-p leave
    vocab_size: int
    # A server's top-N only: the entropies above are lower bounds and these the upper
    # ones (NaN: not reported); ``rest`` is the raw mass outside the top-N (1 − Σp).
    raw_entropy_high: float | None = None
    entropy_high: float | None = None
    rest: float = 0.0

    @property
    def bounded(self) -> bool:
        return self.raw_entropy_high is not None

    @property
    def effective_vocab(self) -> float:
        """exp(H): as many equally likely tokens would have this entropy."""
        return math.exp(self.entropy)

    @property
    def raw_effective_vocab(self) -> float:
        return math.exp(self.raw_entropy)


@dataclass(frozen=True)
class Completion:
    id: int  # the candidate
    text: str | None  # the text once no byte is pending (U+FFFD: invalid here);
    # None: still incomplete after the lookahead
    joint: float  # P(candidate) × P(each lookahead token)
    lookahead: tuple[int, ...]  # the greedy tokens appended


@dataclass(frozen=True)
class ScoredToken:
    index: int  # position in the text's tokens (≥ 1)
    id: int
    text: str  # display: partial UTF-8 pieces as ‹e5 86›
    partial: bool
    log_prob: float  # natural log, kept as a log so tiny probabilities do not underflow
    rank: int  # 1 = the model's top choice
    context: int  # tokens the prediction conditioned on
    piece: bytes = b""  # the token's bytes, for text streamed back into characters
    rank_above: int | None = None  # a server's top-N missed it: its rank is past this

    @property
    def rank_text(self) -> str:
        return f">{self.rank_above}" if self.rank_above is not None else str(self.rank)

    @property
    def prob(self) -> float:
        return math.exp(self.log_prob)

    @property
    def surprisal_bits(self) -> float:
        return -self.log_prob / math.log(2)


@dataclass(frozen=True)
class Score:
    first_id: int  # the first token: context only, not scored
    first: str  # its display text
    tokens: tuple[ScoredToken, ...]
    windows: int  # forward passes
    exact: bool = False  # every token saw the last context_length tokens before it
    first_piece: bytes = b""

    @property
    def mean_surprisal_bits(self) -> float:
        return sum(t.surprisal_bits for t in self.tokens) / len(self.tokens)

    @property
    def perplexity(self) -> float:
        """exp of the mean negative log-likelihood per scored token."""
        return math.exp(-sum(t.log_prob for t in self.tokens) / len(self.tokens))
