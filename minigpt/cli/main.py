"""``minigpt``: generate, trace, score, compare, inspect and train from the command line.

Rich output for people, ``--json`` for scripts. User mistakes end in one line
on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time

from minigpt import __version__
from minigpt.errors import MiniGPTError, PromptError, SettingsError
from minigpt.cli.models import checkpoint_of, load_from, load_other, no_template
from minigpt.settings import SamplingSettings
from minigpt.text.tokenizer import printable


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr, and a mistyped option is
    named first (``--promt hi`` said only that --prompt was missing)."""

    seen: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self.seen = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # said by the subcommand that was given them, which knows its options
            parser = self.subcommand_parser(parsed) or self
            parser.seen = extras
            parser.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed

    def subcommand_parser(self, parsed) -> "OneLineParser | None":
        if self._subparsers is None:
            return None
        action = self._subparsers._group_actions[0]
        return action.choices.get(getattr(parsed, action.dest, None))

    def error(self, message: str):  # noqa: D102
        unknown = self.unknown_option()
        if unknown is not None:
            message = unknown
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

    def unknown_option(self) -> str | None:
        import difflib

        known = [o for o in self._option_string_actions if o.startswith("--")]
        taking = False  # the previous word was an option that takes this one as its value
        for arg in self.seen:
            if arg == "--" or (self._subparsers is not None and not arg.startswith("-")):
                break  # past here: positionals, or the subcommand's own options
            name = arg.split("=", 1)[0]
            value, taking = taking, False
            if value or not OPTION_LIKE.fullmatch(name):
                continue  # a value ("--prompt '-- x'"), not an option
            matches = [o for o in known if o.startswith(name)]
            if matches:
                action = self._option_string_actions[matches[0]]
                taking = "=" not in arg and action.nargs != 0
            else:
                close = difflib.get_close_matches(name, known, n=1)
                return f"unknown option {name}" + (f" (did you mean {close[0]}?)" if close
                                                   else "")
        return None


OPTION_LIKE = re.compile(r"--[A-Za-z0-9][A-Za-z0-9-]*")


def positive_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def thread_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"--threads must be 1…1024, got {value}")
    return value


def finite_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def add_sampling_options(p: argparse.ArgumentParser) -> None:
    d = SamplingSettings()
    p.add_argument("--max-new-tokens", type=positive_int, default=d.max_new_tokens, metavar="N",
                   help="tokens to generate (default %(default)s)")
    p.add_argument("--temperature", type=finite_float, default=d.temperature, metavar="T",
                   help="0 = greedy (default %(default)s)")
    p.add_argument("--top-k", type=positive_int, default=None, metavar="K",
                   help="keep the K most likely tokens (default: off)")
    p.add_argument("--top-p", type=finite_float, default=None, metavar="P",
                   help="keep the smallest set with probability ≥ P (default: off)")
    p.add_argument("--repetition-penalty", type=finite_float, default=d.repetition_penalty,
                   metavar="R", help="1 = off (default)")
    p.add_argument("--seed", type=positive_int, default=d.seed, metavar="S",
                   help="same seed + same device = same tokens (default %(default)s)")
    p.add_argument("--ignore-eos", action="store_true",
                   help="go on past the model's end-of-sequence token (Hugging Face models)")


def add_prompt_options(p: argparse.ArgumentParser) -> None:
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--prompt", help="text to continue")
    source.add_argument("--messages", metavar="FILE",
                        help="a JSON list of {\"role\", \"content\"} messages (- for stdin): the "
                             "assistant's reply in the model's chat template")


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("ckpt", nargs="?", default=None, metavar="CKPT",
                   help="checkpoint file (default: model/model.ckpt here, else the "
                        "shipped model)")
    add_device_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")


def add_device_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto (cuda, mps, cpu), cpu, cuda, mps")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"),
                   help="the weights' precision (default float32; bfloat16/float16 halve "
                        "the memory a token reads, at a stated probability error: see README)")
    p.add_argument("--threads", type=thread_count, default=None, metavar="N",
                   help="CPU threads for torch (default: 1 for decoding small models, "
                        "measured fastest; more for scoring)")
    p.add_argument("--tokenizer", default=None, metavar="NAME|FILE",
                   help="vocabulary: cl100k_base (book default), a .tiktoken file, a "
                        "nanoGPT meta.pkl, or a tokenizer.json")
    p.add_argument("--window", type=positive_int, default=None, metavar="N",
                   help="a Hugging Face model's KV-cache window (default: all its positions, "
                        "or as many as a quarter of the free memory holds)")
    p.add_argument("--backend", default="auto", choices=("auto", "native", "hf"),
                   help="a Hugging Face directory: our decoders (native: GPT-2, Llama, "
                        "Qwen2) or transformers itself (hf: any causal LM it knows; "
                        'pip install -e ".[hf]"); auto: native where we have it')
    add_server_options(p)
    p.add_argument("--slide", type=positive_int, default=None, metavar="N",
                   help="past the window, tokens dropped at once; the rest is re-encoded "
                        "once per N tokens (default: half the window for Hugging Face "
                        "models; 1, the book's crop at every token, for checkpoints)")


def add_server_options(p: argparse.ArgumentParser) -> None:
    """A model an inference server holds (llama-server, vLLM, SGLang)."""
    p.add_argument("--server", default=None, metavar="URL",
                   help="step through the model a server holds (http://HOST:PORT): "
                        "llama-server, vLLM or SGLang")
    p.add_argument("--api", default=None, choices=("llama", "vllm", "sglang"),
                   help="the server's kind (default: asked)")
    p.add_argument("--model", default=None, metavar="NAME",
                   help="which model, where the server holds several")
    p.add_argument("--connect-timeout", type=positive_float, default=None, metavar="S",
                   help="seconds to wait for the server to take a connection (default 5)")
    p.add_argument("--read-timeout", type=positive_float, default=None, metavar="S",
                   help="seconds to wait for a reply (default 120)")


def add_other_model_options(p: argparse.ArgumentParser) -> None:
    """B's own precision and device: a model against itself in bfloat16, say."""
    p.add_argument("--dtype-b", default=None, choices=("float32", "bfloat16", "float16"),
                   help="B's weights' precision (default: --dtype): what does bfloat16 change?")
    p.add_argument("--device-b", default=None, help="B's device (default: --device)")


def settings_from(args: argparse.Namespace) -> SamplingSettings:
    return SamplingSettings(
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, max_new_tokens=args.max_new_tokens,
        seed=args.seed, ignore_eos=args.ignore_eos)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="minigpt", description=__doc__.splitlines()[0].replace("``", ""))
    parser.add_argument("--version", action="version", version=f"minigpt {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    gen = sub.add_parser("generate", help="continue a prompt, streaming the text")
    add_model_options(gen)
    add_prompt_options(gen)
    add_sampling_options(gen)

    trace = sub.add_parser("trace", help="each step's top-5 candidates (the book's "
                                          "generate_with_trace)")
    add_model_options(trace)
    add_prompt_options(trace)
    add_sampling_options(trace)

    score = sub.add_parser("score", help="every token's probability, rank and surprisal; "
                                          "the text's perplexity")
    add_model_options(score)
    source = score.add_mutually_exclusive_group(required=True)
    source.add_argument("--text", help="the text to score")
    source.add_argument("--file", metavar="PATH", help="read the text from a file (- for stdin)")
    source.add_argument("--messages", metavar="FILE",
                        help="a JSON list of chat messages: score each assistant message's "
                             "tokens in the model's chat template")
    score.add_argument("--exact", action="store_true",
                       help="every token from the last context_length tokens before it, as "
                            "generation sees it (one window per token past the first)")
    score.add_argument("--compare", metavar="B", default=None,
                       help="also score under checkpoint B: both perplexities and the tokens "
                            "where the two differ most")
    add_other_model_options(score)

    compare = sub.add_parser("compare", help="two checkpoints on the same context, step by "
                                              "step: both top-5, KL and JS divergence")
    compare.add_argument("a", metavar="A", help="checkpoint that drives generation")
    compare.add_argument("b", metavar="B", help="checkpoint shown the same tokens")
    add_device_options(compare)
    add_other_model_options(compare)
    compare.add_argument("--json", action="store_true", help="one JSON object per step")
    compare.add_argument("--prompt", required=True, help="text to continue")
    add_sampling_options(compare)

    inspect = sub.add_parser("inspect", help="format, h_params, parameters, tensor shapes")
    add_model_options(inspect)

    from minigpt.cli.train_options import add_train_parser
    add_train_parser(sub)
    return parser


def open_engine(args: argparse.Namespace):
    from minigpt.models.devices import batch_threads, decode_threads, use_threads
    from minigpt.engine.engine import Engine

    settings = settings_from(args)  # validate knobs before the (slow) load
    loaded = load_from(checkpoint_of(args), args)
    use_threads(args.threads or decode_threads(loaded.num_parameters))
    engine = Engine.from_loaded(loaded, settings)
    engine.use_prefill_threads(args.threads or batch_threads())
    if args.messages is not None:
        from minigpt.text.chat import read_messages

        if loaded.chat is None:
            raise PromptError(no_template(loaded) + ": use --prompt")
        engine.reset("", messages=read_messages(args.messages))
    else:
        engine.reset(args.prompt)
    if len(engine.prompt_ids) > engine.context_length:  # said once; the JSON says it per step
        slides = f", which slides {engine.slide:,} tokens at a time (--slide)" \
            if engine.slide > 1 else ""
        print(f"minigpt: note: the prompt is {len(engine.prompt_ids):,} tokens; the model sees "
              f"the last {len(engine.window()):,} (its window is {engine.context_length:,}"
              f"{slides})", file=sys.stderr)
    return loaded, engine


def cmd_generate(args: argparse.Namespace) -> int:
    from minigpt.cli.render import GenerateRenderer

    loaded, engine = open_engine(args)
    renderer = GenerateRenderer(json_mode=args.json)
    renderer.start(engine.prompt)
    started = time.perf_counter()
    for step in engine.run():
        renderer.step(step)
    renderer.finish(engine, time.perf_counter() - started)
    return 0


def cmd_trace(args: argparse.Namespace) -> int:
    from minigpt.cli.render import TraceRenderer

    loaded, engine = open_engine(args)
    renderer = TraceRenderer(json_mode=args.json)
    for step in engine.run():
        renderer.step(step, engine)
    renderer.finish(engine)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from minigpt.engine.compare import check_comparable, compare
    from minigpt.models.devices import decode_threads, use_threads
    from minigpt.engine.engine import Engine
    from minigpt.cli.render import CompareRenderer

    settings = settings_from(args)
    a = load_from(args.a, args)
    if a.backend == "served":
        raise SettingsError("compare drives with an in-process model (A) and shows a served "
                            "one as B: minigpt compare DIR URL")
    b = load_other(args.b, args)
    check_comparable(a, b, args.a, args.b)
    use_threads(args.threads or decode_threads(a.num_parameters + b.num_parameters))
    engines = [Engine.from_loaded(loaded, settings) for loaded in (a, b)]
    for engine in engines:
        engine.reset(args.prompt)
    renderer = CompareRenderer(args.json)
    for step in compare(*engines, settings.max_new_tokens):
        renderer.step(step)
    renderer.finish(engines[0])
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from minigpt.cli.render import inspect_report, print_inspect

    loaded = load_from(checkpoint_of(args), args, need_tokenizer=False)
    report = inspect_report(loaded)
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
    else:
        print_inspect(report)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage errors, --help, --version
        return int(exc.code or 0)
    handlers = {"generate": cmd_generate, "trace": cmd_trace, "inspect": cmd_inspect,
                "compare": cmd_compare}
    try:
        if args.command == "train":
            from minigpt.cli.train import cmd_train
            return cmd_train(args)
        if args.command == "score":
            from minigpt.cli.score import cmd_score
            return cmd_score(args)
        return handlers[args.command](args)
    except MiniGPTError as exc:
        print(f"minigpt: error: {printable(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("minigpt: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as exc:
        if exc.filename is not None:  # a file the command opened: its own error
            print(f"minigpt: error: {printable(str(exc.filename))}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
        # stdout refused the output (a full disk, /dev/full, a closed terminal)
        print(f"minigpt: error: cannot write the output: {exc.strerror or exc}",
              file=sys.stderr)
        return 1


def run() -> None:
    code = main()
    try:
        sys.stdout.flush()  # buffered output meets a full or closed stdout here
    except BrokenPipeError:
        pass  # the reader stopped (| head): not an error
    except OSError as exc:
        print(f"minigpt: error: cannot write the output: {exc.strerror or exc}",
              file=sys.stderr)
        code = code or 1
    finally:
        try:  # nothing left for interpreter exit to fail on with a traceback
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
    sys.exit(code)


if __name__ == "__main__":
    run()
