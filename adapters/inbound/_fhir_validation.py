"""Checking a FHIR payload before and after fhir.resources validates it.

Before: a JSON object with a resourceType we read (Bundle entries likewise), no deeper than
MAX_DEPTH, no `null` element values. Then the R4B model validates it, pydantic's errors becoming
one located InputError. After: numbers and booleans must have been JSON numbers and booleans
(the models coerce `"185"` and `"true"`, which FHIR JSON forbids).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.inbound._common import join_loc, problems_error, require_text, short, validation_error
from engine.errors import InputError

__all__ = ["CONTEXT", "MAX_DEPTH", "SUPPORTED", "validated"]

SUPPORTED = ("Encounter", "Observation", "Condition", "Appointment")
#: Resources a Bundle may carry for context (references resolve to them); they make no event.
CONTEXT = ("Patient", "Practitioner", "PractitionerRole", "Organization", "Location")
#: Real resources nest a dozen or two levels (Bundle > entry > resource > contained > ...).
MAX_DEPTH = 64


def validated(resource: object) -> tuple[str, dict[str, Any], Any]:
    """(resourceType, the raw JSON, the validated R4B model) of a resource or Bundle we read,
    or an InputError saying why not."""
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise InputError("a FHIR resource is a JSON object with a resourceType")
    rtype: str = resource["resourceType"]
    if _depth(resource) > MAX_DEPTH:
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
        raise validation_error(exc, rtype) from None
    except Exception as exc:  # fhir.resources raises KeyError etc. on some malformed input
        raise InputError(
            f"not a valid FHIR R4 resource ({type(exc).__name__}: {short(str(exc))})",
            location=rtype,
        ) from None


def _depth(document: Any) -> int:
    """How deeply JSON is nested, counted without recursion (the checks below recurse)."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return deepest


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
    """Numbers and booleans must be JSON numbers and booleans: fhir.resources coerces `"185"`
    and `"true"`; its own JSON output tells us which elements are numeric or boolean."""
    problems: list[tuple[str, str]] = []

    def walk(a: Any, b: Any, loc: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key, value in a.items():
                if key in b:
                    walk(value, b[key], join_loc(loc, key))
        elif isinstance(a, list) and isinstance(b, list):
            for n, (x, y) in enumerate(zip(a, b, strict=False)):
                walk(x, y, f"{loc}[{n}]")
        elif isinstance(b, bool) and not isinstance(a, bool):
            problems.append((loc, f"must be a JSON boolean, not {short(a)}"))
        elif (
            isinstance(b, int | float)
            and not isinstance(b, bool)
            and (isinstance(a, bool) or not isinstance(a, int | float))
        ):
            problems.append((loc, f"must be a JSON number, not the string {short(a)}"))

    walk(raw, canonical, where)
    if problems:
        raise problems_error(problems)
