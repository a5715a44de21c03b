"""The engine host's ops that only read the engine — the preview under new knobs, why
this token, completions, attention, a text's score — each answered in one reply, a
failure as that reply's one-line error. Mixed into ``engine_host.Host``. Torch-free at
import."""

from __future__ import annotations

from minigpt.errors import MiniGPTError
from minigpt.host import protocol as p


class ReadingOps:
    def peek(self, op: p.Peek) -> None:
        """The knobs apply from the next op anyway; taking them now lets the preview
        show the distribution the next step will draw from."""
        self.require_engine().set_settings(op.settings)
        self.send(p.Peeked(op.seq, self.preview(op.seq)))
        self.preview_failed = False

    def why(self, op: p.AskWhy) -> None:
        try:
            why = self.require_engine().why(op.step_index, op.settings)
            self.send(p.WhyAnswered(op.seq, op.step_index, why, op.settings))
        except MiniGPTError as exc:
            self.send(p.WhyAnswered(op.seq, op.step_index, None, op.settings, str(exc)))

    def complete(self, op: p.Complete) -> None:
        try:
            completions = self.require_engine().complete_candidates(op.step_index, op.settings)
        except MiniGPTError:
            completions = []  # nothing to complete yet; the table says why elsewhere
        self.send(p.Completed(op.seq, op.step_index, tuple(completions)))

    def attend(self, op: p.Attend) -> None:
        engine = self.require_engine()
        engine.capture_attention = op.capture
        if not op.capture:
            return
        try:
            self.send(p.Attended(op.seq, op.step_index, engine.attention(op.step_index)))
        except MiniGPTError as exc:
            self.send(p.Attended(op.seq, op.step_index, None, str(exc)))

    def score(self, op: p.ScoreText) -> None:
        from minigpt.models.devices import batch_threads, use_threads
        from minigpt.engine.score import score_messages, score_text

        loaded = self.loaded[1] if self.loaded else None
        try:
            if loaded is None:
                raise MiniGPTError("no model is loaded")
            use_threads(self.batch or batch_threads())  # batched windows: threads pay
            if op.messages is not None:
                if loaded.chat is None:
                    raise MiniGPTError("this model has no chat template: score text instead")
                score, _ = score_messages(loaded.model, loaded.tokenizer, loaded.chat,
                                          list(op.messages), loaded.vocab_size,
                                          loaded.context_length, exact=op.exact,
                                          slide=loaded.slide)
            else:
                score = score_text(loaded.model, loaded.tokenizer, op.text, loaded.vocab_size,
                                   loaded.context_length, exact=op.exact, slide=loaded.slide)
            self.send(p.Scored(op.seq, score))
        except MiniGPTError as exc:
            self.send(p.Scored(op.seq, None, str(exc)))
        finally:
            if loaded is not None:
                use_threads(self.threads)
