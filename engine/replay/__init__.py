"""Replay: re-run recorded inputs through their pinned pathway versions and compare decisions;
and what-if: run the same histories under another pathway version and report the differences."""

from engine.replay.replayer import Divergence, ReplayResult, TimelineRow, replay
from engine.replay.whatif import PatientDiff, WhatIfResult, what_if

__all__ = [
    "Divergence",
    "PatientDiff",
    "ReplayResult",
    "TimelineRow",
    "WhatIfResult",
    "replay",
    "what_if",
]
