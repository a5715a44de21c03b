"""``python -m minigpt.cli``: the ``minigpt`` command."""

from minigpt.cli.main import run

run()
