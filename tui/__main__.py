"""Entry point for ``minigpt-tui`` (filled in by the TUI issue)."""

import sys


def run() -> None:
    print("minigpt-tui: not built yet", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    run()
