"""Loaded by every Python process of a skewed suite run (see run.sh): engine processes
(multiprocessing's spawn children) take core 1 for themselves, so the engine runs fast
next to an explorer and a test runner that share core 0 with a busy loop."""

import os
import sys

if "--multiprocessing-fork" in sys.argv:
    os.sched_setaffinity(0, {1})
