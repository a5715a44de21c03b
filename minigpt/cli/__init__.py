"""The headless ``minigpt`` command: generate, trace, score, compare, inspect, train, and their output.

Torch-free at import (``--help`` answers at once); the commands import torch when they run."""


from minigpt.cli.main import main, run  # noqa: E402  the entry point

__all__ = ["main", "run"]
