"""The generation engine: a plain iterator of ``Step`` events over a loaded model.

It holds the token sequence, the KV cache (through a decoder) and the stream
decoder; supports one step, n steps, taking a given token instead of sampling,
undo and cancel. The CLI prints its steps; the TUI's worker posts them.
"""

from __future__ import annotations

import threading
import time

import torch

from minigpt.engine import compare
from minigpt.engine import sampling
from minigpt.decode.base import Decoder
from minigpt.decode.make import make_decoder
from minigpt.errors import GenerationError, PromptError
from minigpt.engine.insights import InsightsMixin
from minigpt.engine.turn import TurnMixin
from minigpt.engine.window import window_start
from minigpt.settings import SamplingSettings, check_slide
from minigpt.steps import Candidate, Preview, Step
from minigpt.text.chat import fit_conversation
from minigpt.text.tokenizer import Tokenizer, check_prompt_ids, is_partial, show_token

TOP_N = 5
ATTENTION_KEPT = 256  # attention rows of recent steps, while the strip is on


class Engine(TurnMixin, InsightsMixin):
    """Drive a loaded model step by step. Not thread-safe: one worker drives it."""

    def __init__(self, model: torch.nn.Module, tokenizer: Tokenizer,
                 settings: SamplingSettings | None = None, decoder=None,
                 eos_ids: tuple[int, ...] = (), chat=None, slide: int = 1):
        self.model = model
        self.chat = chat  # the model's chat template (minigpt.text.chat), or None
        self.eos_ids = frozenset(eos_ids)  # a run ends on one (unless settings.ignore_eos)
        self.tokenizer = tokenizer
        self.settings = settings or SamplingSettings()
        self.vocab_size = model.hparams.vocab_size
        # The first edition embeds one id more than it can output.
        self.prompt_vocab_size = model.hparams.prompt_vocab_size
        self.context_length = model.hparams.context_length
        # Past the window, how many tokens leave it at once (minigpt.engine.window).
        self.slide = check_slide(slide, self.context_length)
        # Called as a long prefill runs: (done, total); it may raise to stop it.
        self.prefill_progress = None
        self.stop_check = None  # asked while a chat template renders: True stops it
        # Threads for the chunks of a long prefill, and for everything else (set by
        # whoever set torch's threads: ``use_prefill_threads``); None: left as they are.
        self.prefill_threads: int | None = None
        self.decode_threads = torch.get_num_threads()
        # A conversation too long to encode: refused (False), or its earliest messages
        # left out (True, the explorer's chat); how many were, for the last one.
        self.drop_early_messages = False
        self.dropped_messages = 0
        self.device = next(model.parameters()).device
        self.decoder: Decoder = decoder if decoder is not None else make_decoder(model)
        self.prompt = ""
        self.prompt_ids: list[int] = []
        self.tokens: list[int] = []
        self.steps: list[Step] = []
        self._start_stream()
        self._next_logits: torch.Tensor | None = None
        self._past_logits: dict[int, torch.Tensor] = {}  # position -> logits predicting it
        self._attention: dict[int, torch.Tensor] = {}  # position -> [layers, heads, window]
        self._generator: torch.Generator | None = None
        self._cancel = threading.Event()
        self._shown: dict[int, tuple[str, bool, bool]] = {}  # token id -> how it shows
        self.label = "A"  # with a checkpoint to compare with (``other``, "B")
        self.other = None  # ``compare.Other``: shown every token this engine chooses

    @classmethod
    def from_loaded(cls, loaded, settings: SamplingSettings | None = None) -> "Engine":
        """The engine for what ``load`` returned: a served model's steps are requests to
        its server (``minigpt.backends.served_engine``), every other model's run here."""
        if loaded.backend == "served":
            from minigpt.backends.served_engine import ServedEngine

            return ServedEngine.from_loaded(loaded, settings)
        return cls(loaded.model, loaded.tokenizer, settings, eos_ids=loaded.eos_ids,
                   chat=loaded.chat, slide=loaded.slide)

    def use_prefill_threads(self, count: int) -> None:
        """Long prefills run on ``count`` threads; the rest on torch's current count."""
        self.decode_threads = torch.get_num_threads()
        self.prefill_threads = count

    @property
    def capabilities(self):
        """Everything: our decoders and transformers give the whole distribution."""
        from minigpt.steps import Capabilities

        return Capabilities()

    @property
    def notice(self) -> str:
        """A one-line note about how decoding runs (e.g. CUDA graphs fell back), or ""."""
        return self.decoder.notice

    # --- state ---------------------------------------------------------------

    def reset(self, prompt: str, settings: SamplingSettings | None = None,
              messages: list[dict] | None = None) -> None:
        """Start over from ``prompt``, or from a conversation: ``messages`` rendered by the
        model's chat template (``prompt`` is then ignored). Raises ``PromptError`` naming
        what is wrong."""
        if messages is not None:
            if self.chat is None:
                raise PromptError("this model has no chat template: type raw text (--no-chat)")
            prompt, self.dropped_messages = fit_conversation(
                list(messages), lambda m: self.chat.render(m, should_stop=self.stop_check),
                self.context_length, self.drop_early_messages)
            ids = self.tokenizer.encode_chat(prompt)
        else:
            ids = self.tokenizer.encode(prompt) if prompt else []
        check_prompt_ids(prompt, ids, self.tokenizer, self.prompt_vocab_size)
        if settings is not None:
            self.settings = settings
        self.prompt, self.prompt_ids = prompt, ids
        self.tokens = list(ids)
        self.steps = []
        self._start_stream()
        self._forget_logits(past=-1)
        self._generator = self._make_generator(self.settings.seed)
        self._cancel.clear()

    def _make_generator(self, seed: int | None) -> torch.Generator:
        generator = torch.Generator(device=self.device)
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(seed)
        return generator

    def set_settings(self, settings: SamplingSettings) -> None:
        """New knobs apply from the next step; cached logits stay valid."""
        if settings.seed != self.settings.seed and self.started:
            self._generator = self._make_generator(settings.seed)
        self.settings = settings

    # --- model ---------------------------------------------------------------

    def _logits(self) -> torch.Tensor:
        if not self.tokens:
            raise PromptError("nothing to continue: give a prompt first")
        if self._next_logits is None:
            boosted = []

            def progress(done: int, total: int) -> None:
                """A long prefill (its first chunk is done): the rest runs on
                ``prefill_threads`` (batched products use more cores; a token at a time
                does not), and is reported."""
                if self.prefill_threads is not None and not boosted:
                    torch.set_num_threads(self.prefill_threads)
                    boosted.append(True)
                if self.prefill_progress is not None:
                    self.prefill_progress(done, total)
            try:
                with torch.inference_mode():
                    self._next_logits = self.decoder.last_logits(self.window(), progress)
            finally:
                if boosted:
                    torch.set_num_threads(self.decode_threads)
            self._keep_attention(len(self.tokens))
        return self._next_logits

    def _keep_attention(self, position: int) -> None:
        captured = self.decoder.last_attention
        if self.decoder.capture_attention and captured is not None:
            if len(self._attention) >= ATTENTION_KEPT:
                del self._attention[next(iter(self._attention))]
            self._attention[position] = captured

    def _distribution(self):
        s = self.settings
        with torch.inference_mode():
            logits = sampling.penalise_window(self._logits(), self.window(),
                                              s.repetition_penalty)
            probs, keep = sampling.distribution(logits, s.temperature, s.top_k, s.top_p)
            top = torch.topk(probs, min(TOP_N, probs.numel()))
        return logits, probs, keep, top

    @staticmethod
    def _host_rows(probs, keep, ids: torch.Tensor) -> list[list[float]]:
        """[ids, probs, kept] for ``ids``, in one host transfer."""
        kept = keep[ids] if keep is not None else torch.ones_like(ids, dtype=torch.bool)
        return torch.stack([ids.double(), probs[ids].double(), kept.double()]).tolist()

    def _candidates(self, rows: list[list[float]]) -> tuple[Candidate, ...]:
        return tuple(self._candidate(int(i), p, bool(k)) for i, p, k in zip(*rows))

    def _candidate(self, token_id: int, prob: float, kept: bool) -> Candidate:
        shown = self._shown.get(token_id)
        if shown is None:  # (display, partial, special): a token's are fixed, and each step
            piece = self.tokenizer.token_bytes(token_id)  # shows six: worth caching
            shown = self._shown[token_id] = (show_token(self.tokenizer, token_id, piece),
                                             is_partial(piece), not piece)
        return Candidate(token_id, shown[0], prob, kept, shown[1], shown[2])

    def peek(self) -> Preview:
        """Candidates for the next token without choosing one (cached logits)."""
        _, probs, keep, top = self._distribution()
        rows = self._host_rows(probs, keep, top.indices)
        self._check_finite(rows)
        candidates = self._candidates(rows)
        versus = None if self.other is None or not candidates else \
            self._versus(probs, [c.id for c in candidates], candidates[0].id)
        return Preview(len(self.steps) + 1, len(self.tokens), candidates, versus)

    # --- a second checkpoint --------------------------------------------------

    def _versus(self, probs, ids: list[int], chosen_id: int):
        return compare.versus(self.other, self.tokens, self._logits(), probs, self.settings,
                              ids, chosen_id, self._candidate)

    def swap_other(self) -> None:
        """The other checkpoint drives from the next token on; the steps so far stay as
        they were chosen."""
        other = self.other
        self.model, other.model = other.model, self.model
        self.decoder, other.decoder = other.decoder, self.decoder
        self.context_length, other.context_length = other.context_length, self.context_length
        self.slide, other.slide = other.slide, self.slide
        self.label, other.label = other.label, self.label
        self._forget_logits(past=-1)

    # --- stepping ------------------------------------------------------------

    def _choose(self, logits, probs, keep, top, greedy: bool, token_id: int | None):
        """The next token as a 0-d device tensor, with no host sync."""
        if token_id is not None:
            return torch.tensor(token_id, device=probs.device)
        if greedy:  # as the book's loop: the argmax, the lowest id on a tie
            if logits.is_cuda:
                return logits.argmax()  # cheap there, and no host sync
            values = top.values[:2].tolist()  # on a CPU a strict leader spares a pass
            return top.indices[0] if len(values) < 2 or values[0] > values[1] \
                else logits.argmax()
        weights = sampling.filtered_probs(probs, keep)
        if weights.is_cuda:
            # NaN probabilities (damaged weights) would end in a device-side assert that
            # loses the CUDA context; draw from a stand-in, the host check reports it.
            weights = torch.nan_to_num(weights, nan=1.0, posinf=1.0)
        try:
            return sampling.choose(weights, False, self._generator)
        except RuntimeError:  # NaN on the CPU: the host check reports it
            return probs.argmax()

    def step(self, token_id: int | None = None, ahead: bool = False) -> Step:
        """Append one token: sampled, or ``token_id`` when given (take-candidate).
        ``ahead``: the caller asks for another sampled step right after this one (a
        greedy step on CUDA graphs then queues it before reading this one)."""
        started = time.perf_counter()
        if token_id is not None and not 0 <= token_id < self.vocab_size:
            raise PromptError(f"token {token_id} is outside the vocabulary of {self.vocab_size}")
        context = len(self.tokens) - window_start(len(self.tokens), self.context_length,
                                                  self.slide)
        greedy = token_id is None and self.settings.temperature == 0
        rows = self._graphed_greedy_rows(ahead) if greedy else None
        if rows is None:
            logits, probs, keep, top = self._distribution()
            with torch.inference_mode():
                chosen_t = self._choose(logits, probs, keep, top, greedy, token_id)
                # The step's one host transfer: the top-5 and the chosen token together.
                rows = self._host_rows(probs, keep, torch.cat([top.indices, chosen_t.view(1)]))
        shown = len(rows[0]) - 1
        self._check_finite(rows)
        candidates = self._candidates([row[:shown] for row in rows])
        chosen = self._candidate(int(rows[0][-1]), rows[1][-1], bool(rows[2][-1]))
        chosen_id = chosen.id
        rank = next((r for r, c in enumerate(candidates, 1) if c.id == chosen_id), None)
        versus = None if self.other is None else \
            self._versus(probs, [c.id for c in candidates], chosen_id)
        piece = self.tokenizer.token_bytes(chosen_id)
        text = self._feed(piece) or ("" if piece else chosen.text)  # ‹id N›: never nothing
        self.tokens.append(chosen_id)
        self._forget_logits()
        step = Step(len(self.steps) + 1, len(self.tokens) - 1, candidates, chosen, rank, piece,
                    text, token_id is not None, time.perf_counter() - started, context, versus)
        self.steps.append(step)
        return step

    def _check_finite(self, rows: list[list[float]]) -> None:
        """NaN or +Inf logits make every probability NaN, and topk ranks NaN first, so
        the top row tells without another pass."""
        if rows[1] and rows[1][0] != rows[1][0]:
            raise GenerationError(f"the model produced NaN/Inf logits at step "
                                  f"{len(self.steps) + 1}: its weights are damaged")

    def _graphed_greedy_rows(self, ahead: bool) -> list[list[float]] | None:
        """A greedy step's rows straight from a CUDA graph (softmax, top-5 and argmax
        inside it), where one serves: plain logits, none cached by a peek, and filters
        that keep all five candidates (the graph's rows mark every one kept)."""
        s = self.settings
        if self._next_logits is not None or not self.tokens or self.other \
                or s.repetition_penalty != 1.0 or (s.top_k is not None and s.top_k < TOP_N) \
                or (s.top_p is not None and s.top_p < 1.0):
            return None
        # The next step is queued only where its window is this one plus its token (or,
        # sliding one at a time, this one slid by one: the graphs' own guess).
        length = len(self.tokens)
        ahead = ahead and (self.slide == 1 or window_start(length + 1, self.context_length,
                                                           self.slide)
                           == window_start(length, self.context_length, self.slide))
        with torch.inference_mode():
            return self.decoder.greedy_rows(self.window(), TOP_N, ahead)

    def _after_undo(self) -> None:
        # The decoder's prefix cache still holds the rest; logits predicting a position
        # past the new end would follow other tokens later.
        self._forget_logits(past=len(self.tokens))

    def _forget_logits(self, past: int | None = None) -> None:
        """The next position's logits are stale; with ``past``, so are the kept logits and
        attention of positions after it (they followed other tokens). -1: all of them."""
        self._next_logits = None
        if past is not None:
            self._past_logits = {p: v for p, v in self._past_logits.items() if p <= past}
            self._attention = {p: v for p, v in self._attention.items() if p <= past}

    def _sampler_state(self):
        return self._generator.get_state() if self._generator is not None else None

    def sampler_state(self) -> bytes | None:
        """The random generator's state as plain bytes, to resume it in another process."""
        state = self._sampler_state()
        return None if state is None else bytes(state.tolist())

    def restore_sampler(self, state: bytes) -> None:
        if self._generator is not None:
            self._generator.set_state(torch.tensor(list(state), dtype=torch.uint8))
