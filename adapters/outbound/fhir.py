"""The FHIR port: each action becomes one FHIR R4 resource, built and validated with
fhir.resources (R4B models), POSTed to the configured base URL as a conditional create.

    book_follow_up, book_foot_screening            Appointment (status proposed)
    refer_podiatry, refer_foot_team                ServiceRequest (intent order)
    schedule_home_visit, refer_home_health         ServiceRequest + Task (home health)
    escalate, notify, outreach_call                CommunicationRequest
    patient_education, reconcile_medications       Task

Every resource carries the action id as an identifier (system `urn:carepath:action`) and the
request sends `If-None-Exist: identifier=urn:carepath:action|<id>`: a server that already has
it answers 200 with the existing resource instead of creating a second. That is the action's
idempotency key, end to end. No patient names are sent: the patient is `Patient/<internal id>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.communicationrequest import CommunicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from engine.errors import AdapterError

IDENTIFIER_SYSTEM = "urn:carepath:action"
_CODE_SYSTEM = "urn:carepath:action-type"
_SCHEDULING = {"book_follow_up", "book_foot_screening"}
_REFERRALS = {"refer_podiatry", "refer_foot_team"}
_HOME_HEALTH = {"schedule_home_visit", "refer_home_health"}
_COMMUNICATION = {"escalate", "notify", "outreach_call"}


def _common(action: Mapping[str, Any]) -> dict[str, Any]:
    return {"identifier": [{"system": IDENTIFIER_SYSTEM, "value": action["id"]}]}


def _code(action: Mapping[str, Any]) -> dict[str, Any]:
    params = action.get("params") or {}
    text = " ".join(str(x) for x in (action["action"], params.get("reason", "")) if x)
    return {"coding": [{"system": _CODE_SYSTEM, "code": action["action"]}], "text": text}


def _note(action: Mapping[str, Any]) -> list[dict[str, str]]:
    params = action.get("params") or {}
    bits = [f"{k}: {v}" for k, v in sorted(params.items())]
    bits.append(f"pathway: {action['pathway']}@{action['pathway_version']}")
    bits.append(f"instance: {action['instance_id']}; rule: {action['rule']}")
    return [{"text": "; ".join(bits)}]


def resource_for(action: Mapping[str, Any]) -> list[Any]:
    """The FHIR resources (validated R4B models) that carry out an action, in POST order."""
    kind = action["action"]
    patient = {"reference": f"Patient/{action['patient_id']}"}
    due = action.get("due_by")
    params = action.get("params") or {}
    urgent = bool(params.get("urgent"))
    try:
        if kind in _SCHEDULING:
            return [Appointment.model_validate({
                "resourceType": "Appointment", **_common(action), "status": "proposed",
                "serviceType": [_code(action)],
                "appointmentType": {"text": str(params.get("kind", kind))},
                "participant": [{"actor": patient, "status": "needs-action"}],
                **({"requestedPeriod": [{"end": due}]} if due else {}),
                "comment": _note(action)[0]["text"],
            })]
        if kind in _REFERRALS or kind in _HOME_HEALTH:
            request = ServiceRequest.model_validate({
                "resourceType": "ServiceRequest", **_common(action), "status": "active",
                "intent": "order", "priority": "urgent" if urgent else "routine",
                "code": _code(action), "subject": patient,
                **({"occurrencePeriod": {"end": due}} if due else {}), "note": _note(action),
            })
            if kind not in _HOME_HEALTH:
                return [request]
            task = Task.model_validate({
                "resourceType": "Task", **_common(action), "status": "requested",
                "intent": "order", "code": _code(action), "for": patient,
                "focus": {"identifier": {"system": IDENTIFIER_SYSTEM, "value": action["id"]}},
                **({"restriction": {"period": {"end": due}}} if due else {}),
                "note": _note(action),
            })
            return [request, task]
        if kind in _COMMUNICATION:
            role = params.get("role", "")
            return [CommunicationRequest.model_validate({
                "resourceType": "CommunicationRequest", **_common(action), "status": "active",
                "priority": "urgent" if urgent else "routine", "subject": patient,
                "category": [_code(action)],
                "recipient": [{"display": str(role)}] if role else None,
                "payload": [{"contentString": _note(action)[0]["text"]}],
                **({"occurrencePeriod": {"end": due}} if due else {}),
            })]
        return [Task.model_validate({
            "resourceType": "Task", **_common(action), "status": "requested", "intent": "order",
            "code": _code(action), "for": patient,
            **({"restriction": {"period": {"end": due}}} if due else {}), "note": _note(action),
        })]
    except ValidationError as exc:
        raise AdapterError(f"{kind}: the FHIR resource does not validate: {exc}") from exc


class FhirPort:
    """POSTs each action's resources to a FHIR server, conditionally (idempotent by action id)."""

    def __init__(self, base_url: str, client: httpx.Client | None = None,
                 timeout_seconds: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client or httpx.Client(timeout=timeout_seconds)

    def carry_out(self, action: Mapping[str, Any], idempotency_key: str) -> str | None:
        references = []
        for resource in resource_for(action):
            kind = resource.get_resource_type()
            try:
                response = self.client.post(
                    f"{self.base_url}/{kind}",
                    content=resource.model_dump_json(exclude_none=True),
                    headers={
                        "Content-Type": "application/fhir+json",
                        "Accept": "application/fhir+json",
                        "If-None-Exist": f"identifier={IDENTIFIER_SYSTEM}|{idempotency_key}",
                        "Idempotency-Key": idempotency_key,
                    },
                )
            except httpx.HTTPError as exc:
                raise AdapterError(f"{kind} for {idempotency_key}: {type(exc).__name__}") from exc
            if response.status_code not in (200, 201):
                raise AdapterError(f"{kind} for {idempotency_key}: HTTP {response.status_code}")
            references.append(_reference(kind, response))
        return ", ".join(r for r in references if r) or None


def _reference(kind: str, response: httpx.Response) -> str | None:
    location = response.headers.get("Location") or response.headers.get("Content-Location")
    if location:
        parts = location.rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        return "/".join(parts[-2:])
    try:
        body = response.json()
    except ValueError:
        return None
    if isinstance(body, dict) and body.get("id"):
        return f"{kind}/{body['id']}"
    return None
