"""Score my text: every token's probability, rank and surprisal, and the perplexity.

By default, one forward pass per window of ``context_length`` tokens. Windows do
not overlap: the first token of a window is predicted from the whole previous
window (the book's crop, exactly); a later token sees the tokens since its window
began. ``exact`` gives every token past the first window its own window of the
last ``context_length`` tokens, as generation (and ``trace``) sees it; those
windows are batched, one output row each. The text's first token has nothing to
be predicted from (the book has no BOS).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from minigpt.engine.window import window_start
from minigpt.errors import PromptError
from minigpt.steps import Score, ScoredToken
from minigpt.text.tokenizer import Tokenizer, check_prompt_ids, is_partial, show_token


EXACT_BATCH = 32  # sliding windows per forward pass


def log_prob_and_rank(rows: torch.Tensor, targets: torch.Tensor) -> list[list[float]]:
    """[log P(target), rank of target] per row of logits, as host lists.

    log P = logit − logsumexp, the sum of exponentials accumulated in float64: as exact
    as the engine's float64 softmax (within 1e-7), at float32 speed (a float64 copy of
    [64, 100k] rows made scoring three times slower)."""
    rows = rows.float()
    chosen = rows.gather(1, targets[:, None])[:, 0]
    top = rows.max(dim=-1).values
    total = torch.exp(rows - top[:, None]).sum(dim=-1, dtype=torch.float64)
    log_probs = chosen.double() - top.double() - torch.log(total)
    ranks = (rows > chosen[:, None]).sum(dim=-1) + 1
    return torch.stack([log_probs, ranks.double()]).tolist()


ROWS_AT_ONCE = 512  # output-layer rows of a long window computed together


def window_logits(model: torch.nn.Module, window: torch.Tensor) -> torch.Tensor:
    """Logits [T, V] of every position of ``window`` [T]. A model that gives its hidden
    states (Llama, Qwen2) reaches the output layer in chunks of rows: a whole 8,192-token
    window's float32 logits would hold 1.6 GB at once for a 49k vocabulary."""
    hidden = getattr(model, "hidden", None)
    if hidden is None:
        return model(window[None])[0][0].float()
    states = hidden(window[None])[0]
    return torch.cat([model.lm_head(states[i:i + ROWS_AT_ONCE]).float()
                      for i in range(0, states.shape[0], ROWS_AT_ONCE)])


def window_predictions(model: torch.nn.Module, ids: list[int], context_length: int):
    """Yield (index, log-prob, rank, context) for every token after the first."""
    device = next(model.parameters()).device
    C = context_length
    previous_last: torch.Tensor | None = None  # the last row of the previous window
    for start in range(0, len(ids), C):
        window = ids[start:start + C]
        with torch.inference_mode():
            logits = window_logits(model, torch.tensor(window, device=device))  # [T, V]
            if previous_last is not None:  # predicts this window's first token
                logits = torch.cat([previous_last[None], logits])
                targets = torch.tensor(window, device=device)
                first = start
            else:
                targets = torch.tensor(window[1:], device=device)
                first = 1
            values = log_prob_and_rank(logits[:len(targets)], targets)
            previous_last = logits[-1]
        for offset, (log_prob, rank) in enumerate(zip(*values)):
            index = first + offset
            context = C if index % C == 0 else index % C
            yield index, log_prob, int(rank), context


def slid_predictions(model: torch.nn.Module, ids: list[int], context_length: int,
                     slide: int):
    """Yield (index, log-prob, rank, context): each token from the window generation
    would see before it (``minigpt.engine.window``, ``slide`` > 1). Tokens whose windows
    start at the same place share one pass: each one's row sees just the tokens before it."""
    device = next(model.parameters()).device
    index = 1
    while index < len(ids):
        start = window_start(index, context_length, slide)
        end = index  # the group: every later index whose window starts here too
        while end + 1 < len(ids) and window_start(end + 1, context_length, slide) == start:
            end += 1
        with torch.inference_mode():
            logits = window_logits(model, torch.tensor(ids[start:end], device=device))
            rows = logits[index - 1 - start:]  # row r predicts ids[start + r + 1]
            values = log_prob_and_rank(rows, torch.tensor(ids[index:end + 1], device=device))
        for offset, (log_prob, rank) in enumerate(zip(*values)):
            yield index + offset, log_prob, int(rank), index + offset - start
        index = end + 1


def sliding_predictions(model: torch.nn.Module, ids: list[int], context_length: int,
                        slide: int = 1):
    """Yield (index, log-prob, rank, context): each token from the last context_length
    tokens before it. The first window's tokens come from one ordinary pass."""
    if slide > 1:
        yield from slid_predictions(model, ids, context_length, slide)
        return
    device = next(model.parameters()).device
    C = context_length
    first = ids[:C]
    with torch.inference_mode():
        logits = window_logits(model, torch.tensor(first, device=device))
        values = log_prob_and_rank(logits[:-1], torch.tensor(first[1:], device=device))
    for offset, (log_prob, rank) in enumerate(zip(*values)):
        yield offset + 1, log_prob, int(rank), offset + 1
    for start in range(C, len(ids), EXACT_BATCH):
        indices = range(start, min(start + EXACT_BATCH, len(ids)))
        with torch.inference_mode():
            windows = torch.tensor([ids[j - C:j] for j in indices], device=device)
            rows = model.last_logits(windows)
            values = log_prob_and_rank(rows, torch.tensor([ids[j] for j in indices],
                                                          device=device))
        for j, log_prob, rank in zip(indices, *values):
            yield j, log_prob, int(rank), C


MAX_SCORE_TOKENS = 100_000  # about two minutes on two CPU cores at book size


def score_text(model: torch.nn.Module, tokenizer: Tokenizer, text: str,
               vocab_size: int, context_length: int, exact: bool = False,
               progress=None, slide: int = 1) -> Score:
    """Score ``text``; a clear ``PromptError`` when there is nothing to score or too much.
    ``progress(done, total)`` is called as tokens are scored. ``exact`` windows follow
    generation's rule past the window (``slide``)."""
    if not text:
        raise PromptError("nothing to score: give some text")
    ids = tokenizer.encode(text) if text else []
    check_prompt_ids(text, ids, tokenizer, vocab_size)
    return score_ids(model, tokenizer, ids, context_length, exact, progress, slide)


def score_ids(model: torch.nn.Module, tokenizer: Tokenizer, ids: list[int],
              context_length: int, exact: bool = False, progress=None,
              slide: int = 1) -> Score:
    """Score token ids already checked against the vocabulary."""
    if len(ids) < 2:
        raise PromptError("scoring needs at least two tokens (the first one is only context)")
    if len(ids) > MAX_SCORE_TOKENS:
        raise PromptError(f"{len(ids):,} tokens is more than score takes at once "
                          f"({MAX_SCORE_TOKENS:,}): split the text")
    served = not isinstance(model, torch.nn.Module)
    if served:  # a server: each token forced in its own request, from generation's window
        predictions, exact = model.predictions(ids, context_length, slide), True
    else:
        predictions = sliding_predictions(model, ids, context_length, slide) if exact else \
            window_predictions(model, ids, context_length)
    tokens = []
    for index, log_prob, rank, context in predictions:
        if progress is not None and (index % 256 == 0 or served):
            progress(index, len(ids) - 1)
        piece = tokenizer.token_bytes(ids[index])
        above = model.top_n if rank is None else None  # past the server's top-N
        tokens.append(ScoredToken(index, ids[index], show_token(tokenizer, ids[index], piece),
                                  is_partial(piece), log_prob,
                                  rank if above is None else above + 1, context, piece, above))
    first_piece = tokenizer.token_bytes(ids[0])
    first = show_token(tokenizer, ids[0], first_piece)
    past_first = max(0, len(ids) - context_length)
    if served:
        passes = len(ids) - 1  # one request per token
    elif exact and slide > 1:  # one pass per place a window starts
        passes = len({window_start(j, context_length, slide) for j in range(1, len(ids))})
    elif exact:
        passes = 1 + math.ceil(past_first / EXACT_BATCH)
    else:
        passes = math.ceil(len(ids) / context_length)
    return Score(ids[0], first, tuple(tokens), passes, exact, first_piece)


@dataclass(frozen=True)
class MessageScore:
    index: int  # the message's place in the conversation (0-based)
    tokens: tuple[ScoredToken, ...]  # its tokens as the template renders it, end marker too

    @property
    def perplexity(self) -> float:
        return math.exp(-sum(t.log_prob for t in self.tokens) / len(self.tokens))


def score_messages(model: torch.nn.Module, tokenizer, chat, messages: list[dict],
                   vocab_size: int, context_length: int, exact: bool = False,
                   progress=None, slide: int = 1) -> tuple[Score, list[MessageScore]]:
    """Each assistant message's tokens, scored in the rendered conversation: the whole
    conversation is one teacher-forced pass; only the assistant's spans are kept."""
    text = chat.render(messages, add_generation_prompt=False)
    ids = tokenizer.encode_chat(text)
    check_prompt_ids(text, ids, tokenizer, vocab_size)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = tokenizer.encode_chat(chat.render(messages[:i], add_generation_prompt=True))
        through = tokenizer.encode_chat(chat.render(messages[:i + 1], add_generation_prompt=False))
        if ids[:len(before)] != before or ids[:len(through)] != through or \
                len(through) <= max(1, len(before)):
            raise PromptError(f"the chat template renders message {i + 1} differently inside "
                              "the whole conversation: its tokens cannot be told apart")
        spans.append((i, max(1, len(before)), len(through)))
    if not spans:
        raise PromptError("no assistant message to score: the messages need one")
    score = score_ids(model, tokenizer, ids, context_length, exact, progress, slide)
    by_index = {t.index: t for t in score.tokens}
    per_message = [MessageScore(i, tuple(by_index[j] for j in range(start, end)))
                   for i, start, end in spans]
    kept = tuple(t for m in per_message for t in m.tokens)
    return replace(score, tokens=kept), per_message
