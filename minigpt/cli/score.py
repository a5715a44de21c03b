"""``minigpt score``: a text's (or a conversation's assistant messages') probabilities,
ranks, surprisal and perplexity. Torch is imported only when a command runs."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from minigpt.cli.models import checkpoint_of, load_from, load_other, no_template
from minigpt.errors import PromptError
from minigpt.paths import read_bounded, read_text_file

SCORE_TEXT_LIMIT = 4 << 20  # bytes: a text to score (about a million tokens, hours on a CPU)


def read_text(args: argparse.Namespace) -> str:
    if args.text is not None:
        return args.text
    try:
        if args.file == "-":
            return read_bounded(sys.stdin.buffer, SCORE_TEXT_LIMIT, "the text on stdin",
                                PromptError)
        return read_text_file(Path(args.file), SCORE_TEXT_LIMIT, "text file", PromptError)
    except OSError as exc:
        raise PromptError(f"cannot read {args.file}: {exc.strerror or exc}") from None


def cmd_score(args: argparse.Namespace) -> int:
    from minigpt.cli.render import print_score, score_json
    from minigpt.engine.score import score_text

    from minigpt.models.devices import batch_threads, keep_freed_memory, use_threads

    if args.messages is not None:
        return score_conversation(args)
    text = read_text(args)
    use_threads(args.threads or batch_threads())
    keep_freed_memory()  # [64, 100k] logits a window: reuse the heap, not fresh mmaps
    loaded = load_from(checkpoint_of(args), args)
    other = None
    if args.compare:
        from minigpt.engine.compare import check_comparable
        other = load_other(args.compare, args)
        check_comparable(loaded, other, str(loaded.path), str(other.path))
    results = []
    for model in (loaded, other) if other is not None else (loaded,):
        with score_progress() as progress:
            results.append(score_text(model.model, model.tokenizer, text, model.vocab_size,
                                      model.context_length, exact=args.exact,
                                      progress=progress, slide=model.slide))
    if other is not None:
        from minigpt.cli.render import print_score_comparison, score_comparison_json
        if args.json:
            print(json.dumps(score_comparison_json(*results), ensure_ascii=False))
        else:
            print_score_comparison(*results, str(loaded.path), str(other.path))
    elif args.json:
        print(json.dumps(score_json(results[0]), ensure_ascii=False))
    else:
        print_score(results[0])
    return 0


def score_conversation(args: argparse.Namespace) -> int:
    """``score --messages``: each assistant message's tokens and perplexity."""
    from minigpt.cli.render import print_score, score_json
    from minigpt.engine.score import score_messages
    from minigpt.models.devices import batch_threads, use_threads
    from minigpt.text.chat import read_messages

    if args.compare:
        raise PromptError("score --messages scores one model: drop --compare")
    messages = read_messages(args.messages)
    use_threads(args.threads or batch_threads())
    loaded = load_from(checkpoint_of(args), args)
    if loaded.chat is None:
        raise PromptError(no_template(loaded) + ": score --text instead")
    with score_progress() as progress:
        score, per_message = score_messages(loaded.model, loaded.tokenizer, loaded.chat,
                                            messages, loaded.vocab_size,
                                            loaded.context_length, exact=args.exact,
                                            progress=progress, slide=loaded.slide)
    if args.json:
        record = score_json(score)
        # Counted from 1, as the text output and the errors about messages count them.
        record["messages"] = [{"message": m.index + 1, "tokens": len(m.tokens),
                               "perplexity": m.perplexity} for m in per_message]
        print(json.dumps(record, ensure_ascii=False))
    else:
        print_score(score)
        for m in per_message:
            print(f"message {m.index + 1} (assistant): {len(m.tokens)} tokens · perplexity "
                  f"{m.perplexity:,.2f}")
    return 0


@contextlib.contextmanager
def score_progress():
    """A progress bar on stderr while a long text is scored: only on a terminal, so
    --json output and logs stay clean."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("scoring", total=None)
        yield lambda done, total: bar.update(task, completed=done, total=total)
