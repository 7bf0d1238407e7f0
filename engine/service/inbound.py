"""Turning a raw inbound payload into events, by the channel it came in on (`carepath
deadletter retry` re-reads a kept payload this way; the service's own channels go through
engine.service.intake)."""

from __future__ import annotations

from datetime import tzinfo

from engine.catalogue import Event
from engine.errors import InputError


def parse_payload(source: str, payload: bytes | str, default_tz: tzinfo) -> list[Event]:
    """The events of a payload as received on `source`; InputError if it is refused (bytes are
    decoded by the adapter: strictly, and for HL7 v2 in the character set MSH-18 declares)."""
    from adapters.inbound import events_from_fhir, events_from_hl7, events_from_json

    if source == "json":
        return list(events_from_json(payload))
    if source in ("hl7v2", "mllp"):
        return list(events_from_hl7(payload, default_tz=default_tz))
    if source == "fhir":
        return list(events_from_fhir(payload, default_tz=default_tz))
    raise InputError(f"unknown source '{source}'")
