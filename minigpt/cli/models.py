"""Which model a command opens: the checkpoint argument (or the shipped default), loaded
with the command line's device, dtype, tokenizer and window."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from minigpt.errors import SettingsError
from minigpt.paths import default_checkpoint, unshipped_default_note
from minigpt.text.tokenizer import printable


def checkpoint_of(args: argparse.Namespace) -> Path:
    """The checkpoint argument, or the default; a default that is not the shipped model
    is named on stderr (a quick ``train`` elsewhere must not pass for it)."""
    server = getattr(args, "server", None)
    if server is not None:
        if args.ckpt:
            raise SettingsError(f"both a checkpoint ({printable(args.ckpt)}) and --server: "
                                "give one")
        from minigpt.backends.http import check_url

        return check_url(server)  # an address: never a Path (it would fold the //)
    if args.ckpt:
        return Path(args.ckpt)
    path = default_checkpoint()
    note = unshipped_default_note(path)
    if note:
        print(f"minigpt: {printable(note)}", file=sys.stderr)
    return path


def load_from(path, args: argparse.Namespace, **options):
    """``load`` with the command line's device, dtype, tokenizer and window."""
    from minigpt.models.checkpoint import load

    return load(path, device=args.device, tokenizer=args.tokenizer, dtype=args.dtype,
                window=args.window, slide=args.slide, backend=args.backend,
                served=served_options(args), **options)


def served_options(args: argparse.Namespace) -> dict:
    """--api, --model and the timeouts, for a model a server holds."""
    from minigpt.backends.http import Timeouts

    return {"api": getattr(args, "api", None), "model": getattr(args, "model", None),
            "timeouts": Timeouts(getattr(args, "connect_timeout", None) or Timeouts.connect,
                                 getattr(args, "read_timeout", None) or Timeouts.read)}


def load_other(path, args: argparse.Namespace):
    """The model compared with (B): ``--dtype-b`` and ``--device-b`` where given."""
    from minigpt.models.checkpoint import load

    return load(path, device=args.device_b or args.device, tokenizer=args.tokenizer,
                dtype=args.dtype_b or args.dtype, window=args.window, slide=args.slide,
                backend=args.backend, served=served_options(args))


def no_template(loaded) -> str:
    """Why --messages cannot be used: no template, or one that cannot be used and why."""
    if loaded.chat_error:
        return f"{loaded.path}: the chat template cannot be used ({loaded.chat_error})"
    return (f"{loaded.path}: no chat template (tokenizer_config.json's chat_template or "
            "chat_template.jinja)")
