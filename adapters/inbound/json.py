"""JSON events (shared/clinical/PATHWAYS.md) into `Event`s: one event object, or a list.

Every problem of every event is reported, each located: `[2].data.value: Input should be
greater than 0` for the third event of a list, `data.value: ...` for a single object. A list
is all or nothing. `action.failed` and `action.succeeded` are refused: only the engine writes them.
The body is read by `parse_json` (strict UTF-8 and JSON, depth-limited) and every field by the
event models' strict types: `true` is not a weight, `"80"` is not a number, `4711` is not an id.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from adapters.inbound._common import join_loc, problems_error, problems_of, short
from adapters.inbound.payload import parse_json
from engine.catalogue import Event
from engine.errors import InputError

__all__ = ["ENGINE_ONLY", "events_from_document", "events_from_json"]

#: Event types only the engine may record; an outside sender posting one is refused.
ENGINE_ONLY = frozenset({"action.failed", "action.succeeded"})


def events_from_json(payload: bytes | str) -> list[Event]:
    """The events in a JSON payload: an event object, or a list of them (`[]` gives none).

    Raises InputError for a body `parse_json` refuses, and for any event that does not fit its
    model, every problem of every event located (`[2].data.value: must be a JSON number, not true`).
    """
    return events_from_document(parse_json(payload))


def events_from_document(document: Any) -> list[Event]:
    """The events in a JSON document already parsed by `parse_json` (the service parses once,
    to tell a body that is not JSON (400) from events that are not acceptable (422))."""
    if isinstance(document, dict):
        items, prefix = [document], None
    elif isinstance(document, list):
        items, prefix = document, "[{}]"
    else:
        raise InputError(f"expected an event object or a list of them, not {_kind(document)}")
    problems: list[tuple[str, str]] = []
    events: list[Event] = []
    for n, item in enumerate(items):
        where = prefix.format(n) if prefix else ""
        try:
            events.append(_event(item, where))
        except _Problems as bad:
            problems.extend(bad.problems)
    if problems:
        raise problems_error(problems)
    return events


class _Problems(Exception):
    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems


def _event(item: Any, where: str) -> Event:
    if not isinstance(item, dict):
        raise _Problems([(where, f"an event is a JSON object, not {_kind(item)}")])
    event_type = item.get("type")
    if isinstance(event_type, str) and event_type in ENGINE_ONLY:
        raise _Problems(
            [(join_loc(where, "type"), f"{short(event_type)} is recorded by the engine only")]
        )
    try:
        return Event.model_validate(item)
    except ValidationError as exc:
        raise _Problems(problems_of(exc, where)) from None


def _kind(value: Any) -> str:
    return {str: "a string", bool: "a boolean", int: "a number", float: "a number"}.get(
        type(value), "null" if value is None else type(value).__name__
    )
