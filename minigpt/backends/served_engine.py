"""The engine for a served model: the same ops as ``minigpt.engine.Engine`` — reset, step,
take, undo, restore, replay, run — by token ids, each step one request to the server.

The server's sampler draws (the knobs pass through); each step's seed is derived from
the turn's seed and the token's position, so a seeded path comes back the same and a
restored turn samples on as it would have. A preview's request already drew the next
token: the step that follows with the same knobs takes it instead of asking again.
Views that need the whole distribution or the model's insides say what they cannot show
(``ServedModel.capabilities``). Torch-free.
"""

from __future__ import annotations

import random
import threading
import time

from minigpt.backends.served_api import Option, ServedStep
from minigpt.engine.turn import TurnMixin
from minigpt.engine.window import window_start
from minigpt.errors import MiniGPTError, PromptError
from minigpt.settings import SamplingSettings, check_slide
from minigpt.steps import Candidate, Preview, Step
from minigpt.text.chat import fit_conversation
from minigpt.text.tokenizer import check_prompt_ids, is_partial, show_token

SEED_MASK = (1 << 32) - 1


class ServedEngine(TurnMixin):
    def __init__(self, served, settings: SamplingSettings | None = None):
        self.served, self.api = served, served.api
        self.tokenizer = served.tokenizer
        self.chat = served.chat
        self.eos_ids = set(served.eos_ids)  # grows with the ids the server says end a text
        self.settings = settings or SamplingSettings()
        self.vocab_size = self.prompt_vocab_size = served.vocab_size
        self.context_length = served.context_length
        self.slide = check_slide(served.slide, self.context_length)
        self.top_n = served.top_n
        self.capabilities = served.capabilities
        self.prefill_progress = self.stop_check = None
        self.drop_early_messages, self.dropped_messages = False, 0
        self.label, self.other, self.notice = "A", None, ""
        self.capture_attention = False
        self.prompt, self.prompt_ids = "", []
        self.tokens: list[int] = []
        self.steps: list[Step] = []
        self._start_stream()
        self._seed = 0
        self._ahead: tuple[tuple, ServedStep] | None = None  # (request key, its reply)
        self._cancel = threading.Event()
        self.last_prompt_n: int | None = None  # the last request's evaluated prompt tokens
        self.last_top: tuple[Option, ...] = ()  # the last reply's raw top-N (compare)

    @classmethod
    def from_loaded(cls, served, settings: SamplingSettings | None = None) -> "ServedEngine":
        return cls(served, settings)

    def use_prefill_threads(self, count: int) -> None:
        """The server decides its threads."""

    # --- state ---------------------------------------------------------------

    def reset(self, prompt: str, settings: SamplingSettings | None = None,
              messages: list[dict] | None = None) -> None:
        if messages is not None:
            if self.chat is None:
                raise PromptError("this server has no chat template: type raw text (--no-chat)")
            prompt, self.dropped_messages = fit_conversation(
                list(messages), lambda m: self.chat.render(m), self.context_length,
                self.drop_early_messages)
            ids = self.tokenizer.encode_chat(prompt)
        else:
            ids = self.tokenizer.encode(prompt) if prompt else []
        check_prompt_ids(prompt, ids, self.tokenizer, self.vocab_size)
        if settings is not None:
            self.settings = settings
        self.prompt, self.prompt_ids = prompt, ids
        self.tokens, self.steps = list(ids), []
        self._start_stream()
        self._ahead = None
        self._seed = self.settings.seed & SEED_MASK if self.settings.seed is not None else \
            random.getrandbits(32)
        self._cancel.clear()

    def set_settings(self, settings: SamplingSettings) -> None:
        if settings.seed != self.settings.seed:  # None: a fresh random one, as in process
            self._seed = settings.seed & SEED_MASK if settings.seed is not None else \
                random.getrandbits(32)
        self.settings = settings

    # --- the server ----------------------------------------------------------

    def _seed_at(self, position: int) -> int:
        """A draw's seed: the turn's, mixed with the position (one request per token, and
        the same seed at every step would repeat its first draw)."""
        return (self._seed * 0x9E3779B1 + position * 0x85EBCA77) & SEED_MASK

    def _ask(self, force: int | None = None) -> ServedStep:
        if not self.tokens:
            raise PromptError("nothing to continue: give a prompt first")
        window = self.window()
        key = (tuple(window), self.settings, self._seed)
        if force is None and self._ahead is not None and self._ahead[0] == key:
            return self._ahead[1]
        report = self.prefill_progress
        # A slow reply is a long prefill on the server: said (it reports no progress, so
        # 0 of N), and escape (the host's callback raising) gives it up.
        waiting = None if report is None else (lambda: report(0, len(window)))
        reply = self.api.step(window, self.settings, self._seed_at(len(self.tokens)),
                              self.top_n, force, waiting=waiting)
        self.last_prompt_n = reply.prompt_n
        for option in (reply.chosen, *reply.top):
            self.tokenizer.learn(option.id, option.piece)
        if reply.end:
            self.eos_ids.add(reply.chosen.id)
        if force is None:
            self._ahead = (key, reply)
        self.last_top = reply.top
        return reply

    def _candidate(self, option: Option, rank: int | None) -> Candidate:
        piece = self.tokenizer.token_bytes(option.id)
        top_k = self.settings.top_k
        kept = rank is not None and (top_k is None or rank <= top_k)
        return Candidate(option.id, show_token(self.tokenizer, option.id, piece), option.prob,
                         kept or rank is None, is_partial(piece), not piece)

    def _candidates(self, reply: ServedStep) -> tuple[Candidate, ...]:
        return tuple(self._candidate(o, r) for r, o in enumerate(reply.top[:5], 1))

    def peek(self) -> Preview:
        return Preview(len(self.steps) + 1, len(self.tokens), self._candidates(self._ask()))

    # --- stepping --------------------------------------------------------------

    def step(self, token_id: int | None = None, ahead: bool = False) -> Step:
        started = time.perf_counter()
        if token_id is not None and not 0 <= token_id < self.vocab_size:
            raise PromptError(f"token {token_id} is outside the vocabulary of {self.vocab_size}")
        context = len(self.tokens) - window_start(len(self.tokens), self.context_length,
                                                  self.slide)
        reply = self._ask()
        if token_id is not None and token_id != reply.chosen.id:
            known = next((o for o in reply.top if o.id == token_id), None)
            # A candidate's own probability is in the reply; another token's needs asking.
            chosen_option = known or self._ask(force=token_id).chosen
        else:
            chosen_option = reply.chosen
        candidates = self._candidates(reply)
        rank = next((r for r, c in enumerate(candidates, 1) if c.id == chosen_option.id), None)
        chosen = self._candidate(chosen_option, rank)
        piece = self.tokenizer.token_bytes(chosen.id)
        text = self._feed(piece) or ("" if piece else chosen.text)  # ‹id N›: never nothing
        self.tokens.append(chosen.id)
        self._ahead = None
        step = Step(len(self.steps) + 1, len(self.tokens) - 1, candidates, chosen, rank, piece,
                    text, token_id is not None, time.perf_counter() - started, context)
        self.steps.append(step)
        return step

    def _after_undo(self) -> None:
        self._ahead = None  # drawn for the position after the token undone

    def sampler_state(self) -> bytes | None:
        return self._seed.to_bytes(4, "little")

    def restore_sampler(self, state: bytes) -> None:
        if len(state) == 4:
            self._seed = int.from_bytes(state, "little")

    # --- views a server cannot fill ---------------------------------------------

    def _cannot(self, what: str):
        raise MiniGPTError(self.capabilities.missing(what))

    def why(self, step_index=None, settings=None):
        """Bounds from the server's top-N at that position (``served_why``): asked again,
        with the sampler's own top-N where the server gives it."""
        from minigpt.backends.served_why import served_why

        if not self.tokens:
            raise PromptError("nothing to show yet: give a prompt first")
        if step_index is not None and not 1 <= step_index <= len(self.steps):
            raise PromptError(f"no step {step_index} here")
        position = len(self.tokens) if step_index is None else \
            self.steps[step_index - 1].position
        window = self.window(self.tokens[:position])
        reply = self.api.step(window, settings or self.settings, self._seed_at(position),
                              self.top_n, after=True)
        return served_why(reply, self.vocab_size,
                          lambda i: show_token(self.tokenizer, i))

    def complete_candidates(self, step_index=None, settings=None):
        self._cannot("full_logits")

    def attention(self, step_index=None):
        self._cannot("attention")

    def swap_other(self) -> None:
        raise MiniGPTError("a served model compares from the CLI: minigpt compare DIR --server URL")
