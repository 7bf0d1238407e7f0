"""The HTTP API in-process (FastAPI's TestClient): authentication and roles, bad input kept as
dead letters with precise answers, reads of patients and instances, pathway loading, metrics."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.service.server import build_app
from engine.service.settings import load_settings
from tests.service.harness import ROOT, TOKENS

DISCHARGE = {"id": "e1", "type": "encounter.discharged", "patient_id": "p1",
             "occurred_at": "2026-11-20T15:00:00+00:00",
             "data": {"encounter_id": "enc1", "diagnoses": ["I50.9"], "disposition": "06"}}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    settings = load_settings(
        None, db=f"sqlite:///{tmp_path / 'api.db'}", pathways=ROOT / "pathways",
        data_dir=tmp_path / "data", dispatch=False,
        tokens=[{"name": r, "role": r, "sha256": hashlib.sha256(t.encode()).hexdigest()}
                for r, t in TOKENS.items()],
    )
    service, app = build_app(settings)
    with TestClient(app) as client:
        yield client, service


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def test_healthz_needs_no_token(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    assert client.get("/healthz").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("post", "/events", {"ingest"}),
        ("post", "/hl7v2", {"ingest"}),
        ("post", "/fhir", {"ingest"}),
        ("get", "/patients/p1/pathways", {"clinician", "auditor"}),
        ("get", "/instances/i-x", {"clinician", "auditor"}),
        ("post", "/pathways", {"author"}),
        ("get", "/audit/verify", {"auditor"}),
        ("get", "/metrics", {"ingest", "clinician", "auditor", "author"}),
    ],
)
def test_every_endpoint_checks_token_and_role(
    api: tuple[TestClient, Any], method: str, path: str, allowed: set[str]
) -> None:
    client, _ = api
    assert getattr(client, method)(path).status_code == 401
    assert getattr(client, method)(path, headers={"Authorization": "Bearer nope"}).status_code \
        == 401
    for role in TOKENS:
        status = getattr(client, method)(path, headers=auth(role)).status_code
        if role in allowed:
            assert status not in (401, 403), (role, path)
        else:
            assert status == 403, (role, path)


def test_events_are_accepted_once_and_readable(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    reply = client.post("/events", json=DISCHARGE, headers=auth("ingest"))
    assert reply.status_code == 202 and reply.json() == {"accepted": ["e1"], "duplicates": []}
    again = client.post("/events", json=[DISCHARGE], headers=auth("ingest"))
    assert again.json() == {"accepted": [], "duplicates": ["e1"]}
    (instance,) = client.get("/patients/p1/pathways", headers=auth("clinician")).json()
    detail = client.get(f"/instances/{instance['instance_id']}", headers=auth("clinician")).json()
    assert [a["action"] for a in detail["actions"]][:3] == ["enrol", "outreach_call",
                                                            "book_follow_up"]
    assert {t["timer"] for t in detail["pending_timers"]} >= {"deadline:follow_up_not_booked"}
    assert detail["timeline"][0]["kind"] == "enrol"
    assert client.get("/instances/i-nope", headers=auth("clinician")).status_code == 404


@pytest.mark.parametrize(
    ("path", "body", "status", "reason"),
    [
        ("/events", "{not json", 400, "not valid JSON"),
        ("/events", '{"id": "x", "type": "weight.observed", "patient_id": "p",'
                    ' "occurred_at": "2026-01-01T00:00:00Z", "data": {}}', 422, "type"),
        ("/events", '{"id": "x", "type": "observation.weight", "patient_id": "p",'
                    ' "occurred_at": "2026-01-01T00:00:00Z", "data": {"value": 80}}', 422, "unit"),
        ("/fhir", '{"resourceType": "Observation"}', 422, "Observation.code"),
        ("/fhir", "nope", 400, "not valid JSON"),
    ],
)
def test_bad_input_is_refused_precisely_and_kept(
    api: tuple[TestClient, Any], path: str, body: str, status: int, reason: str
) -> None:
    client, service = api
    reply = client.post(path, content=body, headers=auth("ingest"))
    assert reply.status_code == status, reply.text
    assert reason in reply.json()["detail"]
    (letter,) = service.store.dead_letters()
    assert letter["id"] == reply.json()["dead_letter"]
    assert letter["payload"] == body and reason in letter["reason"]


def test_a_bad_hl7_message_gets_a_nak_and_is_kept(api: tuple[TestClient, Any]) -> None:
    client, service = api
    pv1 = "PV1|1|I" + "|" * 43 + "2026x"  # PV1-45: not an HL7 timestamp
    message = f"MSH|^~\\&|A|B|C|D|20260101||ADT^A03|CTRL9|P|2.5\r{pv1}\r"
    reply = client.post("/hl7v2", content=message, headers=auth("ingest"))
    assert reply.status_code == 400
    assert "MSA|AE|CTRL9" in reply.text
    assert service.store.dead_letters()[0]["source"] == "hl7v2"


def test_authors_load_a_new_pathway_version(api: tuple[TestClient, Any]) -> None:
    client, service = api
    text = (ROOT / "pathways" / "chf-post-discharge.yaml").read_text()
    assert client.post("/pathways", content=text, headers=auth("author")).status_code == 422
    newer = text.replace("version: 1\n", "version: 2\n", 1)
    reply = client.post("/pathways", content=newer, headers=auth("author"))
    assert reply.status_code == 201 and "chf-post-discharge@2" in reply.json()["pathways"]
    broken = newer.replace("version: 2\n", "version: 3\n").replace("hf_nurse", "hf_nurze")
    problems = client.post("/pathways", content=broken, headers=auth("author")).json()
    assert {p["code"] for p in problems["problems"]} == {"unknown-role"}
    assert "chf-post-discharge@3" not in service.registry.by_key


def test_metrics_count_what_happened(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    client.post("/events", json=DISCHARGE, headers=auth("ingest"))
    client.post("/events", content="{", headers=auth("ingest"))
    text = client.get("/metrics", headers=auth("auditor")).text
    assert 'carepath_events_accepted_total{source="json"} 1.0' in text
    assert 'carepath_events_rejected_total{source="json"} 1.0' in text
    assert 'carepath_decisions_total{kind="enrol"} 1.0' in text
    assert "carepath_dispatch_lag_seconds" in text and "carepath_timer_lag_seconds" in text


def test_no_patient_data_in_the_logs(api: tuple[TestClient, Any],
                                     caplog: pytest.LogCaptureFixture) -> None:
    client, _ = api
    caplog.set_level("DEBUG")
    event = {**DISCHARGE, "id": "e-log", "data": {**DISCHARGE["data"], "facility": "St Elsewhere"}}
    client.post("/events", json=event, headers=auth("ingest"))
    client.post("/events", content='{"id": "x", "patient_id": "Jane Doe"}', headers=auth("ingest"))
    assert "json: 1 event(s) accepted" in caplog.text  # counts, not ids
    for secret in ("St Elsewhere", "Jane Doe", "I50.9", "e-log"):
        assert secret not in caplog.text


def test_fhir_dates_without_a_time_are_placed_in_the_deployment_zone(tmp_path: Path) -> None:
    settings = load_settings(
        None, db=f"sqlite:///{tmp_path / 'zone.db'}", pathways=ROOT / "pathways",
        data_dir=tmp_path / "data", dispatch=False, default_timezone="Asia/Tokyo",
        tokens=[{"name": r, "role": r, "sha256": hashlib.sha256(t.encode()).hexdigest()}
                for r, t in TOKENS.items()],
    )
    diabetes = {
        "resourceType": "Condition", "id": "c-1",
        "verificationStatus": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
            "code": "confirmed"}]},
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
        "subject": {"reference": "Patient/p9"},
        "recordedDate": "2026-02-01",
    }
    _, app = build_app(settings)
    with TestClient(app) as client:
        assert client.post("/fhir", json=diabetes, headers=auth("ingest")).status_code == 202
        (instance,) = client.get("/patients/p9/pathways", headers=auth("clinician")).json()
    # midnight in Tokyo, not midnight UTC (nine hours later)
    assert instance["enrolled_at"] == "2026-02-01T00:00:00+09:00"


def test_audit_verify_reports_intact_chains_and_their_heads(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    client.post("/events", json=DISCHARGE, headers=auth("ingest"))
    report = client.get("/audit/verify", headers=auth("auditor")).json()
    assert report["intact"] is True
    chains = {c["chain"]: c for c in report["chains"]}
    assert chains["inputs"]["records"] == 1 and chains["inputs"]["head"]["record"] == 1
    assert chains["audit"]["records"] >= 1
    assert all(c["problem"] is None for c in chains.values())
    # every chain that holds records has its head (none yet: holidays, snapshots, dead letters)
    assert all(len(c["head"]["hash"]) == 64 for c in chains.values() if c["records"])
