"""The engine's read-only views of a past step or the next token: the logits that
predicted it, why it was chosen (``minigpt.engine.why``), what byte-piece candidates
complete to (``minigpt.engine.lookahead``) and the attention of its position."""

from __future__ import annotations

from dataclasses import replace

import torch

from minigpt.engine import why as why_stages
from minigpt.engine import lookahead
from minigpt.decode.base import Decoder
from minigpt.errors import GenerationError, PromptError
from minigpt.settings import SamplingSettings
from minigpt.steps import AttentionRows, Why
from minigpt.text.tokenizer import show_token

PAST_LOGITS_KEPT = 64  # logits of looked-at past steps, for redraws without the model


class InsightsMixin:
    """For ``Engine``: reads its tokens, steps, decoder and caches; changes only those
    caches (and attention capture, restored after)."""

    def logits_at(self, position: int) -> torch.Tensor:
        """Logits [V] that predicted the token at ``position`` (``len(tokens)``: the next
        one). Past positions run the model once, then come from a small cache."""
        if not self.tokens:
            raise PromptError("nothing to show yet: give a prompt first")
        if not 1 <= position <= len(self.tokens):
            raise PromptError(f"no step predicts position {position}")
        if position == len(self.tokens):
            return self._logits()
        logits = self._past_logits.get(position)
        if logits is None:
            with torch.inference_mode():
                logits = self.decoder.last_logits(self.window(self.tokens[:position]))
            self._keep_attention(position)
            if len(self._past_logits) >= PAST_LOGITS_KEPT:
                del self._past_logits[next(iter(self._past_logits))]
            self._past_logits[position] = logits
        return logits

    def why(self, step_index: int | None = None,
                settings: SamplingSettings | None = None) -> Why:
        """Why-this-token breakdown for a past step (1-based) or, with None, the next one."""
        position = len(self.tokens) if step_index is None else \
            self._step_position(step_index)
        context = torch.tensor(self.window(self.tokens[:position]), device=self.device)
        with torch.inference_mode():
            why = why_stages.why(self.logits_at(position), settings or self.settings, context)
        return replace(why, rows=tuple(replace(row, text=self.display(row.id))
                                       for row in why.rows))

    def display(self, token_id: int) -> str:
        """A token's display piece (partial UTF-8 as ``‹e5 86›``)."""
        return show_token(self.tokenizer, token_id)

    def complete_candidates(self, step_index: int | None = None,
                            settings: SamplingSettings | None = None
                            ) -> list[lookahead.Completion]:
        """What each partial-UTF-8 candidate of a past step (or the next token) most
        likely completes to, by a short greedy lookahead (``minigpt.engine.lookahead``)."""
        if step_index is None:
            position, candidates = len(self.tokens), self.peek().candidates
            stream_state = self._stream.state()
        else:
            position = self._step_position(step_index)
            candidates = self.steps[step_index - 1].candidates
            stream_state = self._stream_states[step_index - 1]
        partial = [(c.id, c.prob) for c in candidates if c.partial]
        temperature = (settings or self.settings).temperature
        return lookahead.complete_candidates(self.model, self.tokens[:position], partial,
                                             self.tokenizer.token_bytes, stream_state,
                                             self.window, temperature)

    @property
    def capture_attention(self) -> bool:
        return self.decoder.capture_attention

    @capture_attention.setter
    def capture_attention(self, on: bool) -> None:
        """Keep each step's attention rows from its own forward pass (cheap: one row per
        layer); what was computed without it costs one model run when asked for."""
        self.decoder.capture_attention = on

    def attention(self, step_index: int | None = None) -> AttentionRows:
        """Attention of the last position over the window, for a past step or the next."""
        if not isinstance(self.decoder, Decoder):  # one made outside make_decoder
            raise GenerationError("this model's decoder cannot show attention")
        position = len(self.tokens) if step_index is None else self._step_position(step_index)
        if position not in self._attention:
            was = self.capture_attention
            self.capture_attention = True
            try:
                self._past_logits.pop(position, None)
                if position == len(self.tokens):
                    self._next_logits = None
                self.logits_at(position)
            finally:
                self.capture_attention = was
        weights = self._attention[position]
        window = tuple(self.window(self.tokens[:position]))
        return AttentionRows(position, window, tuple(tuple(tuple(h) for h in layer)
                                                 for layer in weights.tolist()),
                         tuple(self.display(i) for i in window))

    def _step_position(self, step_index: int) -> int:
        if not 1 <= step_index <= len(self.steps):
            raise PromptError(f"no step {step_index}: {len(self.steps)} generated")
        return self.steps[step_index - 1].position
