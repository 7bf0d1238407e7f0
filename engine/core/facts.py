"""Facts a condition sees: the event's data, derived measurements, and the instance's state.

durable-rules never compares two events (its cross-event joins crash): every fact that depends
on history is computed here and handed to it inside one self-contained message.

A windowed gain is the new reading minus the LOWEST reading in the window before it, where the
window is [occurred_at - window, occurred_at): a reading exactly one window earlier counts, the
new reading itself does not. Windows are computed on occurred_at, so a late reading is judged
against the readings that were taken before it, whenever they arrived. With no earlier reading
in the window there is no gain (the fact is absent, and no comparison on it holds).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import datetime, timedelta
from operator import itemgetter
from typing import Any

from engine.catalogue.events import Event
from engine.core.state import InstanceState
from engine.definition.model import Rule
from engine.durations import KG_PER_LB

#: Event types whose readings are kept for windows: event type -> the reading's fact.
MEASUREMENTS: dict[str, str] = {"observation.weight": "weight_kg"}

#: Gains are rounded to the milligram so that 75.1 - 74.1 compares as 1.0, not 0.99999...
_DECIMALS = 6


#: the time of a reading (a C-level key for bisect: this is the hot path)
_time = itemgetter(0)


def data_facts(event: Event) -> dict[str, Any]:
    """The event's own facts: its data, with measurements converted to explicit units."""
    facts = dict(event.data)
    if event.type == "observation.weight":
        value = float(facts["value"])
        facts["weight_kg"] = round(value * KG_PER_LB if facts["unit"] == "lb" else value, _DECIMALS)
    return facts


def reading(event: Event, facts: dict[str, Any]) -> float | None:
    fact = MEASUREMENTS.get(event.type)
    return None if fact is None else float(facts[fact])


def windowed_facts(
    readings: list[tuple[datetime, float]], at: datetime, value: float, rules: list[Rule]
) -> dict[str, float]:
    windows = [(w.fact, timedelta(seconds=w.seconds)) for rule in rules for w in rule.windows]
    return window_facts(readings, at, value, windows)


def window_facts(
    readings: list[tuple[datetime, float]],
    at: datetime,
    value: float,
    windows: Sequence[tuple[str, timedelta]],
) -> dict[str, float]:
    """`windowed_facts` for the windows (fact, length) of an event type's rules, in order."""
    out: dict[str, float] = {}
    if not readings:
        return out
    hi = bisect_left(readings, at, key=_time)  # the readings before `at`; the same for all
    for fact, length in windows:
        if fact in out:
            continue
        lo = bisect_left(readings, at - length, 0, hi, key=_time)
        if lo < hi:
            lowest = min([kg for _, kg in readings[lo:hi]])
            out[fact] = round(value - lowest, _DECIMALS)
    return out


_INSTANCE_FACTS = frozenset({"time_since_enrolment", "booked", "attended", "actions_fired"})


def instance_facts(state: InstanceState, at: datetime, needed: frozenset[str]) -> dict[str, Any]:
    """The instance's facts that some condition reads (only those: messages stay small)."""
    if not needed & _INSTANCE_FACTS:
        return {}
    out: dict[str, Any] = {}
    if "time_since_enrolment" in needed:
        out["time_since_enrolment"] = int((at - state.enrolled_at).total_seconds())
    if "booked" in needed:
        out["booked"] = sorted(state.booked)
    if "attended" in needed:
        out["attended"] = sorted(state.attended)
    if "actions_fired" in needed:
        out["actions_fired"] = sorted(state.fired)
    return out


def remember(
    state: InstanceState, event_type: str, at: datetime, value: float, keep_seconds: int
) -> None:
    """Add a reading, and forget readings no window can reach any more.

    The list is replaced, never changed in place: copies of a state share their readings
    (`InstanceState.copy`). The new list is built to its exact size (no spare capacity).
    """
    old = state.readings.get(event_type, [])
    at_ = bisect_right(old, at, key=_time)  # after readings taken at the same time (insort)
    readings = old[:at_] + [(at, value)] + old[at_:]  # noqa: RUF005 (exact size, no spare)
    newest = readings[-1][0]
    horizon = newest - timedelta(seconds=keep_seconds)
    cut = bisect_left(readings, horizon, key=_time)
    state.readings[event_type] = readings[cut:] if cut else readings
