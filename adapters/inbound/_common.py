"""What the three inbound adapters share: building a validated `Event`, turning pydantic errors
into one located `InputError`, stable ids, and the few code rules every channel applies."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from engine.catalogue import Event
from engine.catalogue.events import describe
from engine.errors import InputError

#: The longest id the event model accepts (`Identifier` in engine/catalogue/events.py).
MAX_ID = 128
_CODE = re.compile(r"^\S{1,64}$")


def stable_id(prefix: str, *parts: str) -> str:
    """`prefix:part1:part2...`, or `prefix:#<sha256>` when that would be longer than an id may be.

    Deterministic: the same parts always give the same id, so a resent message is a duplicate.
    """
    readable = ":".join((prefix, *parts))
    if len(readable) <= MAX_ID:
        return readable
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{prefix}:#{digest[:48]}"


def is_code(value: str) -> bool:
    """A code as the event vocabulary takes it: 1-64 characters, no whitespace."""
    return bool(_CODE.match(value))


def disposition_code(value: str) -> str:
    """HL7 table 0112 / UB-04 codes are two digits: a sender that dropped the leading zero
    ("1", "6": an integer column somewhere upstream) means "01", "06". Anything else is kept
    exactly as sent ("01" stays "01", a site's local "19" stays "19")."""
    return f"0{value}" if len(value) == 1 and value.isdigit() else value


def render_loc(loc: Sequence[int | str]) -> str:
    """A pydantic location as a path: ('entry', 2, 'status') -> entry[2].status."""
    out = ""
    for part in loc:
        if part == "root":  # pydantic's name for a model validated as a whole: no element
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def join_loc(prefix: str, loc: str) -> str:
    if not prefix:
        return loc
    if not loc:
        return prefix
    return f"{prefix}{loc}" if loc.startswith("[") else f"{prefix}.{loc}"


def problems_error(problems: Sequence[tuple[str, str]]) -> InputError:
    """One InputError for one or more located problems: located at the first, naming them all."""
    location, message = problems[0]
    if len(problems) > 1:
        rest = "; ".join(f"{loc}: {msg}" if loc else msg for loc, msg in problems[1:])
        message = f"{message} (and {len(problems) - 1} more: {rest})"
    return InputError(message, location=location)


def problems_of(exc: ValidationError, prefix: str = "") -> list[tuple[str, str]]:
    """Every problem pydantic found, each at its location under `prefix`."""
    problems = [(join_loc(prefix, render_loc(err["loc"])), message(err)) for err in exc.errors()]
    return problems or [(prefix, "invalid")]


def validation_error(exc: ValidationError, prefix: str = "") -> InputError:
    return problems_error(problems_of(exc, prefix))


#: pydantic's type errors, and what the value must be instead. Its own words ("Input should be
#: a valid number") do not say what was given, and `true` given for a weight must say so.
_EXPECTED = {
    "float_type": "a JSON number",
    "float_parsing": "a JSON number",
    "decimal_type": "a JSON number",
    "decimal_parsing": "a JSON number",
    "int_type": "a whole JSON number",
    "int_parsing": "a whole JSON number",
    "int_from_float": "a whole JSON number",
    "bool_type": "a JSON boolean",
    "bool_parsing": "a JSON boolean",
    "string_type": "a JSON string",
    "datetime_type": "an ISO 8601 string",
    "date_type": "an ISO 8601 string",
    "time_type": "an ISO 8601 string",
    "list_type": "a JSON array",
    "tuple_type": "a JSON array",
    "dict_type": "a JSON object",
}


def message(err: ErrorDetails) -> str:
    """One pydantic error as our message: a type error says what was expected and what was
    given (`must be a JSON number, not true`); the others are pydantic's (or our validators')
    own."""
    expected = _EXPECTED.get(err["type"])
    if expected is not None:
        given = err.get("input")
        if err["type"] == "float_type" and isinstance(given, int) and not isinstance(given, bool):
            return f"{describe(given)} is too large"  # a float cannot hold it
        return f"must be {expected}, not {describe(given)}"
    # pydantic prefixes errors raised by validators with "Value error, "; the rest is ours
    return " ".join(err["msg"].removeprefix("Value error, ").split())


def make_event(
    event_id: str,
    event_type: str,
    patient_id: str,
    occurred_at: datetime,
    data: Mapping[str, Any],
    *,
    where: str,
) -> Event:
    """A validated Event; a field the adapter produced that the model refuses names `where`
    (the source message or resource) so the sender can find it."""
    try:
        return Event.model_validate(
            {
                "id": event_id,
                "type": event_type,
                "patient_id": patient_id,
                "occurred_at": occurred_at,
                "data": dict(data),
            }
        )
    except ValidationError as exc:
        raise validation_error(exc, f"{where} -> event") from None


def require_text(document: Any, where: str = "") -> None:
    """JSON may carry `\\ud800`-style escapes that decode to lone surrogates: not text, and
    unstorable (UTF-8 cannot encode them). Refuse them here rather than fail in the store."""
    try:
        json.dumps(document, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"contains {exc.object[exc.start : exc.end]!r}, which is not text", location=where
        ) from None
    except (TypeError, ValueError, RecursionError):
        pass  # not JSON data: the caller's own checks say what is wrong with it


def short(value: object, limit: int = 40) -> str:
    """A value quoted for an error message, cut short (error texts go back to the sender)."""
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= limit else text[:limit] + "...")
