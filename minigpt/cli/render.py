"""CLI output: Rich for people, JSON for scripts."""

from __future__ import annotations

import json
import sys

from rich.console import Console
from rich.table import Table
from rich.text import Text

from typing import TYPE_CHECKING

from minigpt.steps import Candidate, Step
from minigpt.text.tokenizer import printable

if TYPE_CHECKING:  # torch-free at run time: the explorer's process renders reports too
    from minigpt.engine.engine import Engine


def candidate_json(c: Candidate) -> dict:
    record = {"id": c.id, "text": c.text, "prob": c.prob, "kept": c.kept}
    if c.special:
        record["special"] = True  # no text bytes: ‹<|im_end|>› (a special token) or ‹id N›
    return record


def stop_reason(engine: Engine) -> str:
    if engine.ended:
        return "eos"
    return "max_new_tokens" if engine.remaining == 0 else "stopped"


def bar(prob: float, width: int = 10) -> str:
    return "█" * max(0, round(prob * width))


class GenerateRenderer:
    """Stream prompt + continuation; with ``json_mode`` print one object at the end."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.err = Console(stderr=True, highlight=False)
        self.tty = sys.stdout.isatty()
        self.last = ""  # the last text written: a line break ends the output already

    def write(self, text: str) -> None:
        if text:
            if self.tty:  # a model can emit ESC: never hand a terminal an escape sequence
                text = printable(text, keep="\n\t")
            sys.stdout.write(text)
            sys.stdout.flush()
            self.last = text

    def start(self, prompt: str) -> None:
        if not self.json_mode:
            self.write(prompt)

    def step(self, step: Step) -> None:
        if not self.json_mode:
            self.write(step.text)

    def finish(self, engine: Engine, seconds: float) -> None:
        if self.json_mode:
            print(json.dumps({
                "prompt": engine.prompt,
                # complete characters only, and text only: an end-of-turn token is not text
                "completion": "".join(s.text for s in engine.steps if not s.chosen.special),
                "special_tokens": [{"step": s.index, "id": s.chosen.id, "text": s.chosen.text}
                                   for s in engine.steps if s.chosen.special],
                "token_ids": [s.chosen.id for s in engine.steps],
                "seconds": round(seconds, 6),
                "incomplete_bytes": engine.pending_bytes.hex(" "),
                "stop_reason": stop_reason(engine),
                "window": engine.context_length,  # longer texts: the last this many tokens
            }, ensure_ascii=False))
            return
        # A character cut off by max_new_tokens shows as an escape, not U+FFFD.
        self.write(engine.pending_display)
        if not self.last.endswith("\n"):
            sys.stdout.write("\n")
        n = len(engine.steps)
        rate = n / seconds if seconds > 0 else 0.0
        self.err.print(f"[dim]{n} tokens · {seconds:.2f} s · {rate:.0f} tok/s · "
                       f"{stop_reason(engine)}[/dim]")


class TraceRenderer:
    """Per step: the top-5 candidates, the chosen token, the text so far."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.out = Console(highlight=False)

    def step(self, step: Step, engine: Engine) -> None:
        text = engine.prompt + engine.completion
        if self.json_mode:
            print(json.dumps({
                "step": step.index,
                "context": step.context,  # tokens the model saw (its window, once full)
                "candidates": [candidate_json(c) for c in step.candidates],
                "chosen": candidate_json(step.chosen),
                "text": text,
            }, ensure_ascii=False), flush=True)
            return
        table = Table(title=f"step {step.index}", title_justify="left", box=None,
                      show_edge=False, pad_edge=False)
        prob = "raw p" if engine.capabilities.own_sampler else "prob"  # a server's: raw
        for name, justify in (("#", "right"), ("token", "left"), ("id", "right"),
                              (prob, "right"), ("", "left")):
            table.add_column(name, justify=justify)
        for rank, c in enumerate(step.candidates, 1):
            marker = "▶" if c.id == step.chosen.id else " "
            style = "bold" if marker == "▶" else ("dim" if not c.kept else "")
            # Token text is data, never Rich markup ("[/]" raised, "[link=…]" linked).
            table.add_row(f"{rank}{marker}", Text(repr(c.text)), str(c.id), f"{c.prob:.4f}",
                          bar(c.prob), style=style)
        self.out.print(table)
        chosen = step.chosen
        rank = f"rank {step.chosen_rank}" if step.chosen_rank else "outside top-5"
        self.out.print(Text.assemble(("chosen ", "dim"), (repr(chosen.text), "bold"),
                                     (f" p={chosen.prob:.4f} ({rank})", "dim")))
        self.out.print(Text.assemble(("text ", "dim"), printable(text, keep="\n\t")), end="\n\n")

    def finish(self, engine: Engine) -> None:
        if not self.json_mode:
            self.out.print(f"[dim]{len(engine.steps)} steps · {stop_reason(engine)}[/dim]")


MAX_DEPTH = 16  # h_params nest a level or two; a file may nest 20,000 (RecursionError)


def plain(value, depth: int = 0):
    """A JSON-able copy: numbers, strings, lists and dicts as they are, anything else
    (bytes, sets, tensors from a foreign checkpoint) as its ``repr``; containers nested
    deeper than MAX_DEPTH as a note."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if depth >= MAX_DEPTH and isinstance(value, (list, tuple, dict, set, frozenset)):
        return f"… (nested deeper than {MAX_DEPTH} levels)"
    if isinstance(value, (list, tuple)):
        return [plain(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {str(k): plain(v, depth + 1) for k, v in value.items()}
    return repr(value)[:1000]


def inspect_report(loaded) -> dict:
    return {
        "path": printable(str(loaded.path)),  # a non-UTF-8 name as ‹ff› escapes
        "format": loaded.format,
        "inferred": list(loaded.inferred),
        "h_params": plain(loaded.h_params),
        "parameters": loaded.num_parameters,
        "tokenizer": loaded.tokenizer.name,
        "device": str(loaded.device),
        # A server's weights are as the server holds them (its file type is in format).
        "dtype": "served" if loaded.backend == "served" else
                 str(loaded.dtype).removeprefix("torch."),
        "backend": loaded.backend,
        "window": loaded.context_length,
        "slide": loaded.slide,
        "tensors": [{"name": n, "shape": list(s), "dtype": d} for n, s, d in loaded.tensors],
    }


def inspect_renderables(report: dict) -> list:
    """The report as Rich renderables, for ``inspect`` and the explorer's model screen.
    Every string in it comes from a file: shown as text (never Rich markup), control
    characters made visible."""
    hp = Table("h_param", "value", box=None, pad_edge=False)
    for key, value in report["h_params"].items():
        hp.add_row(Text(printable(key)), Text(printable(value)))
    tensors = Table(box=None, pad_edge=False)
    tensors.add_column("tensor", overflow="fold")  # narrow: wrapped, never cut to the
    tensors.add_column("shape")                     # same "transformer_blocks.3.mha…"
    tensors.add_column("stored as")
    for t in report["tensors"]:
        tensors.add_row(Text(printable(t["name"])), Text(str(t["shape"])), Text(t["dtype"]))
    dtype = report.get("dtype", "float32")  # loaded as (--dtype), not as stored
    loaded_as = [] if dtype in ("float32", "served") else \
        [Text(f"weights loaded as {dtype} (--dtype)")]
    from minigpt.engine.window import slide_note

    window = [Text(f"window {report['window']:,} tokens · "
                   f"{slide_note(report['window'], report['slide'])}")] \
        if "window" in report else []
    return [
        Text.assemble((printable(report["path"]), "bold"), f" · {printable(report['format'])}"),
        Text(f"{report['parameters']:,} {'parameters (as the server reports them)' if report.get('backend') == 'served' else 'trainable parameters'} · tokenizer "
             f"{printable(report['tokenizer'])} · device {report['device']}"),
        *loaded_as,
        *window,
        *(Text(f"inferred: {printable(note)}", style="dim") for note in report["inferred"]),
        hp, *([tensors] if report["tensors"] else []),  # a server shows none
    ]


def print_inspect(report: dict) -> None:
    out = Console(highlight=False)
    for renderable in inspect_renderables(report):
        out.print(renderable)


def score_json(score) -> dict:
    return {
        "first_token": score.first,
        "tokens": [{"index": t.index, "id": t.id, "text": t.text, "prob": t.prob,
                    "log_prob": t.log_prob,
                    "rank": t.rank if t.rank_above is None else None,
                    **({"rank_above": t.rank_above} if t.rank_above is not None else {}),
                    "surprisal_bits": t.surprisal_bits, "context": t.context}
                   for t in score.tokens],
        "tokens_scored": len(score.tokens),
        "perplexity": score.perplexity,
        "mean_surprisal_bits": score.mean_surprisal_bits,
        "windows": score.windows,
        "exact": score.exact,
    }


def print_score(score) -> None:
    out = Console(highlight=False)
    table = Table(box=None, pad_edge=False, show_edge=False)
    for name, justify in (("#", "right"), ("token", "left"), ("id", "right"), ("prob", "right"),
                          ("rank", "right"), ("bits", "right")):
        table.add_column(name, justify=justify)
    for t in score.tokens:
        table.add_row(str(t.index), Text(repr(t.text)), str(t.id), f"{t.prob:.4f}",
                      t.rank_text, f"{t.surprisal_bits:.2f}", style="dim" if t.rank > 5 else "")
    out.print(table)
    out.print(Text.assemble((f"perplexity {score.perplexity:,.2f}", "bold"),
                            f" · {score.mean_surprisal_bits:.2f} bits/token · "
                            f"{len(score.tokens)} tokens scored (the first, {score.first!r}, "
                            f"is context only) · {score.windows} forward pass(es)"
                            f"{' · exact windows' if score.exact else ''}"))


def compare_json(step) -> dict:
    chosen = step.chosen
    short = lambda c: {"id": c.id, "text": c.text, "prob": c.prob}  # noqa: E731
    return {"step": step.index,
            "chosen": {"id": chosen.id, "text": chosen.text, "prob_a": chosen.prob,
                       "prob_b": step.prob_b},
            "a": [short(c) for c in step.a], "b": [short(c) for c in step.b],
            "kl_ab": step.divergence.kl_ab, "js": step.divergence.js,
            **({"divergence_is_lower_bound": True} if step.divergence.lower_bound else {}),
            **({"probs_are_raw": True} if step.raw else {}),
            "text": step.text}


class CompareRenderer:
    """Per step: A's and B's top-5 side by side, the chosen token under each, KL and JS."""

    def __init__(self, json_mode: bool):
        self.json_mode = json_mode
        self.out = Console(highlight=False)

    def step(self, step) -> None:
        if self.json_mode:
            print(json.dumps(compare_json(step), ensure_ascii=False), flush=True)
            return
        at_least = "≥ " if step.divergence.lower_bound else ""
        bound_note = " (B served: over its top-N and the rest)" if at_least else ""
        table = Table(title=f"step {step.index}", title_justify="left", box=None,
                      show_edge=False, pad_edge=False)
        prob = "raw p" if step.raw else "prob"  # a served B: both raw, T 1
        for name, justify in (("#", "right"), ("A token", "left"), (f"A {prob}", "right"),
                              ("B token", "left"), (f"B {prob}", "right")):
            table.add_column(name, justify=justify)
        for rank, (ca, cb) in enumerate(zip(step.a, step.b), 1):
            table.add_row(str(rank), Text(repr(ca.text), style="bold" if ca.id ==
                                          step.chosen.id else ""), f"{ca.prob:.4f}",
                          Text(repr(cb.text), style="bold" if cb.id == step.chosen.id
                               else ""), f"{cb.prob:.4f}")
        self.out.print(table)
        self.out.print(Text.assemble(
            ("chosen ", "dim"), (repr(step.chosen.text), "bold"),
            (f" · A {step.chosen.prob:.4f} · B {step.prob_b:.4f} · KL(A‖B) {at_least}"
             f"{step.divergence.kl_ab:.4f} · JS {at_least}{step.divergence.js:.4f} nats"
             f"{bound_note}", "dim")))
        self.out.print(Text.assemble(("text ", "dim"), printable(step.text, keep="\n\t")),
                       end="\n\n")

    def finish(self, engine) -> None:
        if not self.json_mode:
            self.out.print(f"[dim]{len(engine.steps)} steps · {stop_reason(engine)}[/dim]")


def score_comparison_json(a, b) -> dict:
    return {"a": score_json(a), "b": score_json(b), "most_different": [
        {"index": ta.index, "id": ta.id, "text": ta.text, "log_prob_a": ta.log_prob,
         "log_prob_b": tb.log_prob, "difference": ta.log_prob - tb.log_prob}
        for ta, tb in most_different(a, b)]}


def most_different(a, b, count: int = 10) -> list:
    """The tokens whose log-probabilities under the two models differ most."""
    pairs = list(zip(a.tokens, b.tokens))
    return sorted(pairs, key=lambda p: abs(p[0].log_prob - p[1].log_prob), reverse=True)[:count]


def print_score_comparison(a, b, name_a: str, name_b: str) -> None:
    out = Console(highlight=False)
    # The title on its own line: as the table's it wrapped to the table's width,
    # mid-formula.
    out.print(Text("where they differ most (|log p_A − log p_B|)", style="italic"))
    table = Table(box=None, pad_edge=False, show_edge=False)
    for name, justify in (("#", "right"), ("token", "left"), ("p A", "right"),
                          ("p B", "right"), ("Δ log p", "right")):
        table.add_column(name, justify=justify)
    for ta, tb in most_different(a, b):
        table.add_row(str(ta.index), Text(repr(ta.text)), f"{ta.prob:.4f}", f"{tb.prob:.4f}",
                      f"{ta.log_prob - tb.log_prob:+.2f}")
    out.print(table)
    out.print(Text(f"A {printable(name_a)}: perplexity {a.perplexity:,.2f} · "
                   f"{a.mean_surprisal_bits:.2f} bits/token"))
    out.print(Text(f"B {printable(name_b)}: perplexity {b.perplexity:,.2f} · "
                   f"{b.mean_surprisal_bits:.2f} bits/token"))
    out.print(Text(f"{len(a.tokens)} tokens scored", style="dim"))
