"""Character-complete candidates: what a partial UTF-8 piece most likely becomes.

cl100k splits most Chinese characters into byte pieces, so a candidate such as
``‹e5 86›`` means nothing on its own. A short greedy lookahead (at most
``MAX_LOOKAHEAD`` tokens) appends the most probable next token until no byte is
left pending; the candidates still pending are batched into one forward
pass per lookahead token. The joint probability is the candidate's reported
probability times each lookahead token's, on the same temperature scale.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.nn import functional as F

from minigpt.steps import Completion
from minigpt.text.tokenizer import StreamDecoder

MAX_LOOKAHEAD = 3


@dataclass
class _Path:
    id: int
    ids: list[int]
    stream: StreamDecoder
    joint: float
    text: str = ""
    lookahead: list[int] = field(default_factory=list)

    @property
    def done(self) -> bool:
        """No bytes wait for more: the candidate's character is complete (or invalid)."""
        return not self.stream.pending


def complete_candidates(model: torch.nn.Module, context: list[int],
                        candidates: list[tuple[int, float]], token_bytes,
                        stream_state: tuple[bytes, int], window,
                        temperature: float, max_tokens: int = MAX_LOOKAHEAD) -> list[Completion]:
    """For each (id, prob) candidate after ``context``, greedily complete its character.
    ``window(ids)``: the ids the model sees of a sequence (the engine's window rule).

    ``stream_state``: the text decoder's state before the candidate (bytes an earlier
    token left pending). Candidates that complete a character at once need no model run."""
    device = next(model.parameters()).device
    paths = []
    for token_id, prob in candidates:
        stream = StreamDecoder(errors="replace")  # U+FFFD marks bytes that cannot complete
        stream.restore(stream_state)
        path = _Path(token_id, [*context, token_id], stream, prob)
        path.text = stream.feed(token_bytes(token_id))
        paths.append(path)
    for _ in range(max_tokens):
        pending = [p for p in paths if not p.done]
        if not pending:
            break
        # Every pending path has the same length here, so they stack into one batch.
        windows = torch.tensor([window(p.ids) for p in pending], device=device)
        with torch.inference_mode():
            logits = model.last_logits(windows).float()  # output layer: last rows only
            probs = F.softmax(logits if temperature == 0 else logits / temperature, dim=-1)
            best = probs.max(dim=-1)
            rows = torch.stack([best.indices.double(), best.values.double()]).tolist()
        for path, token_id, prob in zip(pending, *rows):
            token_id = int(token_id)
            path.ids.append(token_id)
            path.lookahead.append(token_id)
            path.joint *= prob
            path.text += path.stream.feed(token_bytes(token_id))
    return [Completion(p.id, p.text if p.done else None, p.joint, tuple(p.lookahead))
            for p in paths]
