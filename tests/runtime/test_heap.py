"""The garbage-collector settings are the process's: set by the console script, not by the
commands when a test invokes them in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, json
from engine.runtime import heap
before = gc.get_threshold()
heap.settle()
untuned = gc.get_freeze_count()
heap.tune_collector()
heap.settle()
print(json.dumps([before, untuned, gc.get_threshold(), gc.get_freeze_count()]))
"""


def test_settle_freezes_only_in_a_tuned_process() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True
    )
    before, untuned, tuned, frozen = json.loads(out.stdout)
    assert before == [700, 10, 10]  # CPython's defaults
    assert untuned == 0
    assert tuned == [100_000, 50, 100]
    assert frozen > 0


def test_the_console_script_tunes_its_process() -> None:
    probe = (
        "import gc, sys; from engine.cli import main; sys.argv = ['carepath', 'schema']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(gc.get_threshold(), file=sys.stderr)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stderr.strip().splitlines()[-1] == "(100000, 50, 100)"
