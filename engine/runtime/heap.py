"""Garbage-collector settings for the long-running commands (serve, simulate, dispatch, replay).

The engine holds every active instance's state in memory: at 100,000 instances, millions of
long-lived objects. CPython's collector is tuned for the opposite: a young collection every
700 new container objects, and full collections that walk everything alive. Deciding an event
allocates a few hundred objects (facts, actions, the copied state), so the collector ran every
couple of events and a quarter to a third of the core's time went to it
(bench/core_speed.py at 100,000 instances).

`tune_collector()` makes young collections rarer; `settle()` moves what is alive after a
restore (the instance states read back from the store) out of the collector's sight, since it
stays alive until replaced. Nothing here changes what is decided, and nothing is kept longer:
reference counting frees a replaced state at once, frozen or not; the collector is only for
reference cycles, which it still finds, less often.

Process-wide, so `tune_collector()` is called where a process starts: the `carepath` console
script (engine.cli.main), replay's worker processes, the benchmarks. `settle()` does nothing in
a process whose collector was not tuned (a test run invoking the commands in-process).
"""

from __future__ import annotations

import gc
from typing import Final

#: young collections every 100,000 new container objects (CPython's default: 700); the older
#: generations as CPython's defaults otherwise scale them
THRESHOLDS: Final = (100_000, 50, 100)


def tune_collector() -> None:
    gc.set_threshold(*THRESHOLDS)


def settle() -> None:
    """In a tuned process: collect once, then leave everything alive now to the permanent
    generation."""
    if gc.get_threshold() == THRESHOLDS:
        gc.collect()
        gc.freeze()
