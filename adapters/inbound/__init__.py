"""Inbound adapters: JSON events, HL7 v2 ADT messages and FHIR R4 resources into `Event`s.

Pure translation: no I/O and no clock. Anything that cannot be accepted raises `InputError`
with a precise message and location, so the service can keep it as a dead letter and answer the
sender (HTTP 400/422, or an HL7 NAK built with `ack`).

Raw bodies: `decode_text` (strict UTF-8) and `parse_json` (strict, depth-limited JSON) are what
the service runs on every body it receives; the three adapters use them too, and nothing here
ever replaces a character (see docs/adapters.md, "What is refused").
"""

from adapters.inbound.fhir import events_from_fhir
from adapters.inbound.hl7v2 import A04Policy, AckCode, ack, events_from_hl7
from adapters.inbound.json import events_from_document, events_from_json
from adapters.inbound.payload import decode_text, parse_json

__all__ = [
    "A04Policy",
    "AckCode",
    "ack",
    "decode_text",
    "events_from_document",
    "events_from_fhir",
    "events_from_hl7",
    "events_from_json",
    "parse_json",
]
