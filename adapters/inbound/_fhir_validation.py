"""Checking a FHIR payload before and after fhir.resources validates it.

Before: a JSON object with a resourceType we read (Bundle entries likewise), no deeper than
MAX_DEPTH, no `null` element values. Then the R4B model validates it, pydantic's errors becoming
one located InputError. After: every value must have had the JSON type FHIR JSON gives its
element. The models convert `"185"` to a decimal, `"true"` and `1` to booleans, `1.0` to an
integer, a number to a dateTime (as a Unix time: 1773214200 is 2026-03-11T07:30:00Z), and parse
a string holding JSON as the object it spells (`"subject": "{\"reference\": \"Patient/x\"}"`
named a patient); FHIR JSON allows none of it, and neither do we.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from adapters.inbound._common import (
    join_loc,
    message,
    problems_error,
    render_loc,
    require_text,
    short,
)
from adapters.inbound.payload import MAX_DEPTH, depth
from engine.catalogue.events import describe
from engine.errors import InputError

__all__ = ["CONTEXT", "MAX_DEPTH", "SUPPORTED", "validated"]

SUPPORTED = ("Encounter", "Observation", "Condition", "Appointment")
#: Resources a Bundle may carry for context (references resolve to them); they make no event.
CONTEXT = ("Patient", "Practitioner", "PractitionerRole", "Organization", "Location")
# fhir.resources' own words for a primitive whose value has the wrong form, and a complex
# element given something that is not an object
_PRIMITIVE = re.compile(r"(?:Value error, )?(\w+) value string does not match spec regex")
_COMPLEX = re.compile(r"Value is expected from the instance of (\w+)")
_NUMERIC = {"Decimal", "Integer", "Integer64", "PositiveInt", "UnsignedInt"}


def validated(resource: object) -> tuple[str, dict[str, Any], Any]:
    """(resourceType, the raw JSON, the validated R4B model) of a resource or Bundle we read,
    or an InputError saying why not."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InputError("a FHIR resource is a JSON object with a resourceType")
    rtype: str = resource["resourceType"]
    if depth(resource) > MAX_DEPTH:
        raise InputError(f"nested more than {MAX_DEPTH} levels deep", location=rtype)
    require_text(resource, rtype)
    if rtype == "Bundle":
        _check_entries(resource)
    elif rtype not in SUPPORTED:
        raise _unsupported(rtype, rtype)
    _no_nulls(resource, rtype)
    model = _validate(rtype, resource)
    _json_types(resource, json.loads(model.model_dump_json(by_alias=True)), rtype)
    return rtype, resource, model


def _unsupported(rtype: str, where: str) -> InputError:
    try:
        get_fhir_model_class(rtype)
    except ValueError:
        return InputError(f"{short(rtype)} is not a FHIR R4 resource type", location=where)
    return InputError(
        f"{rtype} is not read by Carepath (it reads {', '.join(SUPPORTED)}, or a Bundle of them)",
        location=where,
    )


def _check_entries(bundle: Mapping[str, Any]) -> None:
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise InputError("must be a list", location="Bundle.entry")
    for n, entry in enumerate(entries):
        where = f"Bundle.entry[{n}]"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise InputError("an entry without a resource", location=f"{where}.resource")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            raise InputError("no resourceType", location=f"{where}.resource")
        if rtype not in SUPPORTED and rtype not in CONTEXT:
            raise _unsupported(rtype, f"{where}.resource")


def _validate(rtype: str, resource: Mapping[str, Any]) -> Any:
    try:
        return get_fhir_model_class(rtype).model_validate(resource)
    except ValidationError as exc:
        errors = exc.errors()
        problems = [(join_loc(rtype, render_loc(err["loc"])), _message(err)) for err in errors]
        raise problems_error(problems or [(rtype, "invalid")]) from None
    except Exception as exc:  # fhir.resources raises KeyError etc. on some malformed input
        raise InputError(
            f"not a valid FHIR R4 resource ({type(exc).__name__}: {short(str(exc))})",
            location=rtype,
        ) from None


def _message(err: ErrorDetails) -> str:
    """fhir.resources' error as our message: a value of the wrong JSON type says what it must be
    and what it is (`must be a JSON number, not true`, not `Decimal value string does not match
    spec regex`)."""
    given = err.get("input")
    primitive = _PRIMITIVE.match(err["msg"])
    if primitive and not isinstance(given, str):
        expected = "a JSON number" if primitive[1] in _NUMERIC else "a JSON string"
        if primitive[1] == "Boolean":
            expected = "a JSON boolean"
        return f"must be {expected}, not {describe(given)}"
    complex_type = _COMPLEX.match(err["msg"])
    if complex_type:
        return f"must be a JSON object ({complex_type[1]}), not {describe(given)}"
    if err["type"] == "json_invalid":  # a string where an object belongs: it tried to parse it
        return f"must be a JSON object, not {describe(given)}"
    if err["type"].startswith(("date", "time")) and not isinstance(given, str):
        return f"must be an ISO 8601 string, not {describe(given)}"  # not a Unix time
    return message(err)


def _no_nulls(raw: Any, where: str) -> None:
    """FHIR JSON has no `null` element values (only inside the arrays that line primitives up
    with their extensions). fhir.resources takes `"code": null` for a missing required element,
    so refuse them here."""
    problems: list[tuple[str, str]] = []

    def walk(value: Any, loc: str) -> None:
        if isinstance(value, dict):
            for key, child in value.items():
                if child is None:
                    problems.append((join_loc(loc, key), "null is not allowed: leave it out"))
                else:
                    walk(child, join_loc(loc, key))
        elif isinstance(value, list):
            for n, child in enumerate(value):
                walk(child, f"{loc}[{n}]")

    walk(raw, where)
    if problems:
        raise problems_error(problems)


def _json_types(raw: Any, canonical: Any, where: str) -> None:
    """Every value must have the JSON type of its element, which fhir.resources' own JSON output
    shows: an object for a complex element, an array for a repeating one, a boolean, a number
    (a whole one for integer types: the output is an int), or a string for every other
    primitive (dates and times included). A decimal given as a whole number (80) is a number;
    an integer given as 1.0 is not a whole one."""
    problems: list[tuple[str, str]] = []

    def walk(a: Any, b: Any, loc: str) -> None:
        if isinstance(b, dict):
            if not isinstance(a, dict):
                problems.append((loc, f"must be a JSON object, not {describe(a)}"))
                return
            for key, value in a.items():
                if key in b:
                    walk(value, b[key], join_loc(loc, key))
        elif isinstance(b, list):
            if not isinstance(a, list):
                problems.append((loc, f"must be a JSON array, not {describe(a)}"))
                return
            for n, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{loc}[{n}]")
        elif isinstance(b, bool):
            if not isinstance(a, bool):
                problems.append((loc, f"must be a JSON boolean, not {describe(a)}"))
        elif isinstance(b, int | float) and (isinstance(a, bool) or not isinstance(a, int | float)):
            problems.append((loc, f"must be a JSON number, not {describe(a)}"))
        elif isinstance(b, int) and isinstance(a, float):
            # integer types only: a decimal keeps the float's form (1.0 stays 1.0)
            problems.append((loc, f"must be a whole JSON number, not {describe(a)}"))
        elif isinstance(b, str) and not isinstance(a, str):
            problems.append((loc, f"must be a JSON string, not {describe(a)}"))

    walk(raw, canonical, where)
    if problems:
        raise problems_error(problems)
