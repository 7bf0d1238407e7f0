"""Turning a raw inbound payload into events, by the channel it came in on."""

from __future__ import annotations

import json
from datetime import tzinfo

from engine.catalogue import Event
from engine.errors import InputError


def parse_payload(source: str, text: str, default_tz: tzinfo) -> list[Event]:
    from adapters.inbound import events_from_fhir, events_from_hl7, events_from_json

    if source == "json":
        return list(events_from_json(text))
    if source in ("hl7v2", "mllp"):
        return list(events_from_hl7(text, default_tz=default_tz))
    if source == "fhir":
        try:
            resource = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg} (line {exc.lineno})") from None
        return list(events_from_fhir(resource, default_tz=default_tz))
    raise InputError(f"unknown source '{source}'")
