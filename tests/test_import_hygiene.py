"""The headless package never imports textual (or the tui package)."""

import subprocess
import sys


def test_minigpt_never_imports_textual():
    code = ("import sys, minigpt, minigpt.cli.main, minigpt.engine.engine, minigpt.models.checkpoint, "
            "minigpt.cli.render, minigpt.cli.train; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui')); "
            "print(bad); sys.exit(1 if bad else 0)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
