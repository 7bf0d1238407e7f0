"""The FHIR port against a real local FHIR server: resources validate, carry the action id as
identifier, and a second delivery of the same action creates nothing new."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from adapters.outbound import FhirPort, resource_for
from adapters.outbound.fhir import IDENTIFIER_SYSTEM
from engine.errors import AdapterError
from tests.support.fhir_server import FhirServer


@pytest.fixture
def fhir() -> Iterator[FhirServer]:
    server = FhirServer().start()
    yield server
    server.stop()


def action(action_type: str, **params: Any) -> dict[str, Any]:
    return {
        "id": f"i-0123456789abcdef.{len(action_type)}",
        "action": action_type,
        "patient_id": "pt-9",
        "pathway": "chf-post-discharge",
        "pathway_version": "1",
        "instance_id": "i-0123456789abcdef",
        "rule": "hf_discharge",
        "fired_at": "2026-03-06T15:00:00Z",
        "due_by": "2026-03-13T15:00:00Z",
        "params": params,
    }


@pytest.mark.parametrize(
    ("kind", "params", "types"),
    [
        ("book_follow_up", {"kind": "follow_up", "role": "care_coordinator"}, ["Appointment"]),
        ("book_foot_screening", {}, ["Appointment"]),
        ("refer_podiatry", {"urgent": True}, ["ServiceRequest"]),
        ("refer_foot_team", {}, ["ServiceRequest"]),
        ("schedule_home_visit", {}, ["ServiceRequest", "Task"]),
        ("refer_home_health", {}, ["ServiceRequest", "Task"]),
        ("escalate", {"role": "hf_nurse", "reason": "weight_gain_24h", "level": 1},
         ["CommunicationRequest"]),
        ("notify", {"role": "care_coordinator", "reason": "readmitted"}, ["CommunicationRequest"]),
        ("outreach_call", {"role": "care_coordinator"}, ["CommunicationRequest"]),
        ("patient_education", {"topic": "hf_self_care_daily_weights"}, ["Task"]),
        ("reconcile_medications", {}, ["Task"]),
    ],
)
def test_each_action_family_posts_valid_resources(
    fhir: FhirServer, kind: str, params: dict[str, Any], types: list[str]
) -> None:
    port = FhirPort(fhir.base_url)
    todo = action(kind, **params)
    reference = port.carry_out(todo, todo["id"])
    assert fhir.invalid == []
    assert [r.resource_type for r in fhir.created()] == types
    for received in fhir.created():
        assert received.resource["identifier"] == [
            {"system": IDENTIFIER_SYSTEM, "value": todo["id"]}
        ]
        assert received.headers["if-none-exist"] == f"identifier={IDENTIFIER_SYSTEM}|{todo['id']}"
        assert "Patient/pt-9" in str(received.resource)
    assert reference == ", ".join(f"{t}/{i + 1}" for i, t in enumerate(types))


def test_a_second_delivery_creates_nothing_new(fhir: FhirServer) -> None:
    port = FhirPort(fhir.base_url)
    todo = action("book_follow_up", kind="follow_up")
    first = port.carry_out(todo, todo["id"])
    second = port.carry_out(todo, todo["id"])
    assert first == second == "Appointment/1"
    assert len(fhir.created()) == 1
    assert len(fhir.received) == 2


def test_urgency_and_due_time_reach_the_resource() -> None:
    (request,) = resource_for(action("escalate", role="cardiology_on_call", urgent=True,
                                     reason="red_flag_symptom", level=1))
    assert request.priority == "urgent"
    assert request.occurrencePeriod.end.isoformat().startswith("2026-03-13T15:00:00")


def test_server_errors_raise_adapter_errors(fhir: FhirServer) -> None:
    fhir.fail_next = 1
    todo = action("refer_podiatry")
    with pytest.raises(AdapterError, match="HTTP 503"):
        FhirPort(fhir.base_url).carry_out(todo, todo["id"])
    assert FhirPort(fhir.base_url).carry_out(todo, todo["id"]) == "ServiceRequest/1"


def test_unreachable_server_is_an_adapter_error() -> None:
    todo = action("notify", role="care_coordinator")
    with pytest.raises(AdapterError, match="ConnectError"):
        FhirPort("http://127.0.0.1:9/fhir", timeout_seconds=1).carry_out(todo, todo["id"])
