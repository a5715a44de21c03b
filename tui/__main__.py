"""``minigpt-tui [CKPT] [knobs]``: open the explorer at once; the engine process loads
the model meanwhile (progress on the status line) and never blocks the screen."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from minigpt.cli.main import (OneLineParser, add_device_options, add_other_model_options,
                              add_sampling_options, settings_from)
from minigpt.errors import MiniGPTError
from minigpt.paths import default_checkpoint, unshipped_default_note
from minigpt.text.tokenizer import printable
from minigpt.host.session import new_session_path, read_session_tail


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="minigpt-tui", description="Explore a tiny GPT in the terminal.",
                           epilog="In the app: enter generates, escape explores, w why this "
                                  "token, c complete characters, a attention, t branches, "
                                  "f2 score text, f1 every key, ctrl+q quit.")
    parser.add_argument("ckpt", nargs="?", default=None, metavar="CKPT",
                        help="checkpoint (default: the shipped model/model.ckpt)")
    add_device_options(parser)
    add_sampling_options(parser)
    parser.add_argument("--compare", default=None, metavar="B",
                        help="a second checkpoint shown beside every step (same tokenizer "
                             "and vocabulary): its probabilities, its top-5 (b), KL/JS; "
                             "x lets it drive")
    add_other_model_options(parser)
    parser.add_argument("--session", type=Path, default=None, metavar="FILE",
                        help="reopen a session file (JSON lines) and keep appending to it")
    chat = parser.add_mutually_exclusive_group()
    chat.add_argument("--chat", dest="chat", action="store_true", default=None,
                      help="chat turns in the model's own chat template (the default for "
                           "models that have one)")
    chat.add_argument("--no-chat", dest="chat", action="store_false",
                      help="type raw text, even to an instruct model")
    parser.add_argument("--system", default=None, metavar="TEXT",
                        help="chat mode: the system message that opens the conversation")
    return parser


def check_session_path(path: Path) -> None:
    """Refuse, before anything runs, a session file that could not be written: a
    missing directory (never created silently), a FIFO or device, no permission."""
    if path.is_symlink():  # appending through it would write to whatever it names
        raise MiniGPTError(f"{path}: is a symbolic link; name the session file itself")
    if not path.parent.is_dir():
        raise MiniGPTError(f"{path}: the directory {path.parent} does not exist")
    if path.exists() and not path.is_file():
        raise MiniGPTError(f"{path}: not a regular file (a session is a JSON-lines file)")
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise MiniGPTError(f"{path}: cannot write there (permission denied)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        settings = settings_from(args)
        if args.server is not None and args.ckpt:
            raise MiniGPTError(f"both a checkpoint ({args.ckpt}) and --server: give one")
        if args.server is not None:
            from minigpt.backends.http import check_url

            check_url(args.server)  # a mistyped address: said before the screen opens
        session = args.session or new_session_path()
        if args.session is None:
            session.parent.mkdir(parents=True, exist_ok=True)
        check_session_path(session)
        if args.compare and not Path(args.compare).exists():  # before the screen opens
            raise MiniGPTError(f"{args.compare}: no such file (--compare)")
        resumed, skipped, older = [], 0, False
        if session.exists():
            try:
                resumed, skipped, older = read_session_tail(session)
            except OSError as exc:
                raise MiniGPTError(f"{session}: cannot read session ({exc.strerror})") from None
            if skipped and not resumed and not older:  # never append to someone else's file
                raise MiniGPTError(f"{session}: not a session file ({skipped} lines, none a "
                                   "session record); name a new or empty file")
    except MiniGPTError as exc:
        print(f"minigpt-tui: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"minigpt-tui: error: cannot create {printable(exc.filename)}: {exc.strerror}",
              file=sys.stderr)
        return 2
    from tui import paste, terminal
    from tui.app import make_app  # the model loads in the engine process, not here

    paste.install()
    terminal.remember_modes()

    path, note, served = args.ckpt, None, None
    if args.server is not None:
        from minigpt.cli.models import served_options

        path, served = args.server, served_options(args)
    elif path is None:
        path = default_checkpoint()
        note = unshipped_default_note(path)
        if note:  # the header names it in full: not the shipped model
            path = path.resolve()
    app = make_app(path, settings, session, resumed, device=args.device,
                   tokenizer=args.tokenizer, skipped_lines=skipped, threads=args.threads,
                   compare=args.compare, dtype=args.dtype, opening_note=note,
                   window=args.window, chat=args.chat, system=args.system,
                   compare_dtype=args.dtype_b, compare_device=args.device_b,
                   slide=args.slide, backend=args.backend, served=served)
    app.older_unread = older
    app.run()
    if app.load_error:  # the model did not load: nothing to explore
        print(f"minigpt-tui: error: {printable(app.load_error)}", file=sys.stderr)
    if app.exit_note:
        print(f"minigpt-tui: {printable(app.exit_note)}", file=sys.stderr)
    return app.return_code or 0


def run() -> None:
    code = main()
    # Everything worth keeping is written (session lines are fsynced) and the terminal is
    # restored. Skipping interpreter teardown (torch's, and freeing a long session's
    # objects) makes ctrl+q take ~0.2 s instead of 1-1.5 s.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
