"""`carepath simulate`: run a file of events through the engine on a virtual clock.

Input: one JSON event per line (shared/clinical/PATHWAYS.md), in file order. Output: one JSON
object per action, in the order they fired, with exactly the keys of `Action.as_dict`. A bad
line is reported on stderr with its number and skipped; the exit code is then 1.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from datetime import date, datetime

from pydantic import ValidationError

from engine.catalogue import Event
from engine.core import Action, Decision, Registry
from engine.runtime.durable import DurableEngine
from engine.runtime.memory import MemoryEngine


def parse_line(text: str) -> Event:
    """One line of JSON into an Event, or ValueError naming what is wrong."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(raw, dict):
        raise ValueError("an event is a JSON object")
    try:
        return Event.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(describe_validation(exc)) from None


def describe_validation(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False):
        loc = ".".join(str(p) for p in error["loc"]) or "event"
        parts.append(f"{loc}: {error['msg']}")
    return "; ".join(parts)


def simulate_durable(
    engine: DurableEngine,
    lines: Iterable[str],
    emit: Callable[[Action], None],
    report: Callable[[int, str], None],
    until: datetime | None = None,
    batch_size: int = 500,
) -> int:
    """As `simulate`, on the store: events are committed in groups, and the actions of a group
    are emitted only once it is committed."""
    bad = 0
    group: list[Event] = []

    def commit() -> None:
        for decision in engine.submit_many(group):
            for action in decision.actions:
                emit(action)
        group.clear()

    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            group.append(parse_line(text))
        except ValueError as exc:
            bad += 1
            report(number, str(exc))
        if len(group) >= batch_size:
            commit()
    commit()
    if until is not None:
        for decision in engine.advance(until):
            for action in decision.actions:
                emit(action)
    return bad


def simulate(
    registry: Registry,
    lines: Iterable[str],
    emit: Callable[[Action], None],
    report: Callable[[int, str], None],
    until: datetime | None = None,
    holidays: Collection[date] = (),
    engine: MemoryEngine | None = None,
) -> int:
    """Run the lines through an engine; returns the number of bad lines."""
    engine = engine or MemoryEngine(registry, holidays)
    bad = 0

    def out(decision: Decision | None) -> None:
        for action in decision.actions if decision else ():
            emit(action)

    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            event = parse_line(text)
        except ValueError as exc:
            bad += 1
            report(number, str(exc))
            continue
        out(engine.submit(event))
    if until is not None:
        out(engine.advance(until))
    return bad
