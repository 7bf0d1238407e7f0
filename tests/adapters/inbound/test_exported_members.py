"""The public API of adapters.inbound, pinned: what callers (the service, the CLI) import."""

from __future__ import annotations

import adapters.inbound


def test_exported_members() -> None:
    assert sorted(adapters.inbound.__all__) == [
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
    for name in adapters.inbound.__all__:
        assert hasattr(adapters.inbound, name), name
