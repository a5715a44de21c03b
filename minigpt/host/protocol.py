"""The engine host's protocol: ops the explorer sends, replies the engine process sends back.

Small, picklable records of plain values (no torch, no textual), so either side can
unpickle them without importing the other's stack and a later transport (the same
host over ``ssh gpu-box``) is one new class. Every op carries a sequence number
``seq`` that grows by one per op; the host runs ops in that order, one at a time,
and answers every op with exactly one ``OpDone(seq)`` as its last reply — also when
it fails, is cancelled, or was superseded. That is what the explorer's idle/running
state comes from.

Cancel is out of band, through two shared integers: a ``Generate`` run whose
``seq`` is at or below ``stop_runs`` stops before its next token, and so does any
``Generate`` (single steps too) at or below ``stop_all`` (escape). Later ops are
untouched, so cancelling a run never eats the keys pressed after it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minigpt.settings import SamplingSettings
from minigpt.steps import (AttentionRows, Capabilities, Completion, Preview, Score, Step,
                           Why)

PROTOCOL_VERSION = 2


# --- ops: explorer → engine ------------------------------------------------------

@dataclass(frozen=True)
class Op:
    seq: int


@dataclass(frozen=True)
class Open(Op):
    """Load ``path`` (or reuse it when already loaded) and start a fresh engine."""

    path: str
    device: str = "auto"
    tokenizer: str | None = None
    dtype: str = "float32"  # the weights' precision (--dtype)
    settings: SamplingSettings = field(default_factory=SamplingSettings)
    threads: int | None = None  # None: the measured policy (minigpt.models.devices)
    compare: str | None = None  # a second checkpoint (B), shown every token A chooses
    window: int | None = None  # a Hugging Face model's KV-cache window (--window)
    slide: int | None = None  # past the window, tokens dropped at once (--slide)
    backend: str = "auto"  # a Hugging Face directory: native, hf (transformers) or auto
    compare_dtype: str | None = None  # B's precision and device (default: A's)
    compare_device: str | None = None
    served: dict | None = None  # ``path`` is a server's address: its api, model, timeouts


@dataclass(frozen=True)
class Generate(Op):
    """Start a new turn from ``prompt`` (None: go on with the current turn), then sample
    ``count`` tokens (None: until max_new_tokens)."""

    prompt: str | None
    count: int | None
    settings: SamplingSettings
    messages: tuple[dict, ...] | None = None  # a chat turn: the conversation, user last


@dataclass(frozen=True)
class Take(Op):
    """Rewind to ``keep_steps`` generated tokens (None: stay at the end), then append the
    candidate of rank ``rank`` there. By rank, not token id: picked right after an undo
    that has not come back yet, it still means the candidates the undo brought back."""

    rank: int
    keep_steps: int | None
    settings: SamplingSettings


@dataclass(frozen=True)
class Undo(Op):
    settings: SamplingSettings


@dataclass(frozen=True)
class Restore(Op):
    """The turn the explorer shows, made the engine's sequence exactly (the same steps
    and candidates, nothing re-sampled) with the sampler where it was: after an engine
    restart, and to switch to a branch of the explorer's branch tree."""

    prompt: str
    steps: tuple[Step, ...]
    sampler_state: bytes | None
    settings: SamplingSettings
    reason: str = "restored"  # RunFinished's reason: "restored" or "branch"
    messages: tuple[dict, ...] | None = None  # a chat turn's conversation


@dataclass(frozen=True)
class Replay(Op):
    """A reopened session's last turn, from its token ids: steppable again, with its
    branches (``Engine.replay``)."""

    prompt: str
    tokens: tuple[int, ...]
    branches: tuple[tuple[int, ...], ...]
    settings: SamplingSettings
    messages: tuple[dict, ...] | None = None  # a chat turn's conversation


@dataclass(frozen=True)
class AskWhy(Op):
    """Why-this-token for a past step (1-based) or, with None, the next token."""

    step_index: int | None
    settings: SamplingSettings


@dataclass(frozen=True)
class Complete(Op):
    """Character completions of a past step's (or the next token's) partial candidates."""

    step_index: int | None
    settings: SamplingSettings


@dataclass(frozen=True)
class Attend(Op):
    """Attention rows of a past step (1-based) or the next token; ``capture`` keeps
    rows from each later step's own pass (the strip is open) or stops keeping them."""

    step_index: int | None
    capture: bool


@dataclass(frozen=True)
class Peek(Op):
    """The next token's candidates under ``settings`` (the knobs changed): what the table
    shows is then what the next key samples from."""

    settings: SamplingSettings


@dataclass(frozen=True)
class ScoreText(Op):
    """Score ``text``; with ``messages`` (chat mode), score the conversation's assistant
    messages as ``minigpt score --messages`` does (``text`` is then unused)."""

    text: str
    exact: bool = False
    messages: tuple[dict, ...] | None = None


@dataclass(frozen=True)
class SwapModels(Op):
    """With ``Open.compare``: the other checkpoint drives from the next token on."""

    settings: SamplingSettings


@dataclass(frozen=True)
class Shutdown(Op):
    """Finish: the host exits after this op."""


# Ops that only read the engine; a newer one of the same kind makes an older, still
# queued one pointless (the explorer shows only the answer to its latest request).
INSIGHTS = (AskWhy, Complete, Attend, Peek)


# --- replies: engine → explorer --------------------------------------------------

@dataclass(frozen=True)
class Reply:
    seq: int  # the op this answers


@dataclass(frozen=True)
class Loading(Reply):
    stage: str  # "start", "import torch", "read", "build", "to device"


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str
    parameters: int
    device: str
    context_length: int
    vocab_size: int
    report: dict  # ``render.inspect_report``, every value JSON-able
    dtype: str = "float32"
    chat: bool = False  # the model has a chat template: the explorer opens in chat mode
    backend: str = "native"  # "hf": transformers runs it
    capabilities: Capabilities = field(default_factory=Capabilities)  # what views may show

    @property
    def where(self) -> str:
        """Device, and the weights' precision where it is not the usual float32 (short:
        the header must keep it at 60 columns)."""
        if self.backend == "served":  # served · llama-server · model · Q4_1
            return self.format
        short = {"bfloat16": "bf16", "float16": "fp16"}.get(self.dtype)
        where = f"{self.device} · {short}" if short else self.device
        return f"{where} · hf" if self.backend == "hf" else where


@dataclass(frozen=True)
class Ready(Reply):
    info: ModelInfo
    other: ModelInfo | None = None  # the checkpoint to compare with
    version: int = PROTOCOL_VERSION


@dataclass(frozen=True)
class LoadFailed(Reply):
    message: str  # one line


@dataclass(frozen=True)
class TurnStarted(Reply):
    prompt: str
    prompt_ids: tuple[int, ...]
    dropped: int = 0  # a conversation too long to encode: its earliest messages left out


@dataclass(frozen=True)
class BranchesReplayed(Reply):
    """A reopened turn's branches, their steps computed again (``Replay``), for the
    explorer's branch tree; the current path follows as ``StepsAdded``."""

    paths: tuple[tuple[Step, ...], ...]


@dataclass(frozen=True)
class Prefilling(Reply):
    """A long run of tokens is being encoded (a long prompt, or the window after a slide):
    ``done`` of ``total``, reported about twice a second; escape stops it."""

    done: int
    total: int


@dataclass(frozen=True)
class StepsAdded(Reply):
    """Steps since the last frame (batched to about 30 per second)."""

    steps: tuple[Step, ...]
    tokens_per_second: float
    pending: str  # bytes still waiting for their character, as ‹e5 86› (or "")


@dataclass(frozen=True)
class StepsUndone(Reply):
    """Tokens removed from the end, newest first."""

    steps: tuple[Step, ...]
    pending: str
    sampler_state: bytes | None  # when the path was left: a branch resumes from it


@dataclass(frozen=True)
class RunFinished(Reply):
    """An engine op ended; ``preview`` holds the next token's candidates."""

    reason: str  # "max_new_tokens", "stopped", "step", "undo", "picked", "error", ...
    preview: Preview | None
    position: int  # tokens in the sequence
    tokens_per_second: float
    sampler_state: bytes | None  # lets a restarted engine continue the same random stream
    driver: str = "A"  # which checkpoint chooses the tokens (B after a swap)


@dataclass(frozen=True)
class RunFailed(Reply):
    """A user-facing problem (bad prompt, NaN logits) or an unexpected error."""

    message: str


@dataclass(frozen=True)
class WhyAnswered(Reply):
    step_index: int | None  # None: the next token
    why: Why | None
    settings: SamplingSettings
    error: str = ""


@dataclass(frozen=True)
class Completed(Reply):
    step_index: int | None
    completions: tuple[Completion, ...]


@dataclass(frozen=True)
class Attended(Reply):
    step_index: int | None
    attention: AttentionRows | None
    error: str = ""


@dataclass(frozen=True)
class Peeked(Reply):
    preview: Preview | None  # None: no turn yet, or the logits were unusable


@dataclass(frozen=True)
class Scored(Reply):
    score: Score | None
    error: str = ""


@dataclass(frozen=True)
class Alive(Reply):
    """The engine still works on op ``seq`` (about once a second while an op runs)."""


@dataclass(frozen=True)
class OpDone(Reply):
    """The last reply to every op."""
