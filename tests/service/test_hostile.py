"""Hostile and broken input at the HTTP API, in-process: each refused with a precise answer,
kept as a dead letter, never changed and never a 500; limits that bound what one request can
cost; logs that name route templates and escape control characters; insecure development mode
kept to loopback."""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from engine.catalogue import Event
from engine.cli import app as cli
from engine.errors import CarepathError
from engine.service.logs import SafeFormatter, escape_controls
from engine.service.server import build_app, check_insecure_dev
from engine.service.settings import load_settings
from tests.service.harness import ROOT, TOKENS

NOW = datetime.now(UTC).replace(microsecond=0)


def discharge(event_id: str = "e1", patient: str = "p1", **data: Any) -> dict[str, Any]:
    return {"id": event_id, "type": "encounter.discharged", "patient_id": patient,
            "occurred_at": (NOW - timedelta(hours=1)).isoformat(),
            "data": {"encounter_id": "enc1", "diagnoses": ["I50.9"], "disposition": "01",
                     **data}}


def settings_for(tmp_path: Path, **extra: Any) -> Any:
    return load_settings(
        None, db=f"sqlite:///{tmp_path / 'api.db'}", pathways=ROOT / "pathways",
        data_dir=tmp_path / "data", dispatch=False,
        tokens=[{"name": r, "role": r, "sha256": hashlib.sha256(t.encode()).hexdigest()}
                for r, t in TOKENS.items()],
        **extra,
    )


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[TestClient, Any]]:
    service, app = build_app(settings_for(tmp_path, max_request_bytes=64 * 1024))
    with TestClient(app) as client:
        yield client, service


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


def letters(service: Any) -> list[dict[str, Any]]:
    return list(service.store.dead_letters())


# -- bytes that are not text -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/events", "/fhir"])
def test_bytes_that_are_not_utf8_are_refused_and_kept_not_replaced(
    api: tuple[TestClient, Any], path: str
) -> None:
    client, service = api
    # a patient id with a Latin-1 e-acute: replaced, it became another patient
    raw = b'{"id": "x1", "type": "observation.weight", "patient_id": "Ren\xe9", ' \
          b'"occurred_at": "2026-11-20T08:00:00Z", "data": {"value": 80, "unit": "kg"}}'
    reply = client.post(path, content=raw, headers=auth("ingest"))
    assert reply.status_code == 400
    assert "not UTF-8 (byte 61)" in reply.json()["detail"]
    (letter,) = letters(service)
    assert letter["id"] == reply.json()["dead_letter"]
    assert "not UTF-8" in letter["reason"]
    assert letter["payload"] == raw  # the bytes received, not a repaired copy
    assert service.store.known_event_ids(["x1"]) == set()


def test_an_hl7_message_that_is_not_text_gets_a_nak(api: tuple[TestClient, Any]) -> None:
    client, service = api
    raw = b"MSH|^~\\&|A|B|C|D|20260101||ADT^A03|CTRL7|P|2.5\rPID|||123||M\xfcller^Hans\r"
    reply = client.post("/hl7v2", content=raw, headers=auth("ingest"))
    assert reply.status_code == 400
    assert "MSA|AE|CTRL7" in reply.text
    (letter,) = letters(service)
    assert letter["source"] == "hl7v2" and letter["payload"] == raw


# -- nesting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/events", "/fhir"])
def test_deep_nesting_is_refused_not_a_recursion_error(
    api: tuple[TestClient, Any], path: str
) -> None:
    client, service = api
    deep = "[" * 20_000 + "]" * 20_000
    reply = client.post(path, content=deep, headers=auth("ingest"))
    assert reply.status_code == 400 and "nested more than" in reply.json()["detail"]
    assert len(letters(service)) == 1


def test_deeply_nested_fhir_extensions_are_refused(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    extension: dict[str, Any] = {"url": "http://example.org/x", "valueString": "v"}
    for _ in range(200):
        extension = {"url": "http://example.org/x", "extension": [extension]}
    patient = {"resourceType": "Patient", "id": "p1", "extension": [extension]}
    reply = client.post("/fhir", json=patient, headers=auth("ingest"))
    assert reply.status_code == 400 and "nested more than" in reply.json()["detail"]


def test_a_deeply_nested_pathway_is_a_located_problem(api: tuple[TestClient, Any]) -> None:
    client, _ = api
    body = "id: deep\nversion: 1\ntitle: " + "[" * 5_000 + "]" * 5_000 + "\n"
    reply = client.post("/pathways", content=body, headers=auth("author"))
    assert reply.status_code == 422
    (problem, *_) = reply.json()["problems"]
    assert problem["file"] == "<posted>" and problem["line"] >= 1


# -- strict types ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, "80", None, [80]])
def test_a_weight_that_is_not_a_number_is_refused(api: tuple[TestClient, Any], value: Any) -> None:
    client, service = api
    event = {"id": "w", "type": "observation.weight", "patient_id": "p1",
             "occurred_at": NOW.isoformat(), "data": {"value": value, "unit": "kg"}}
    reply = client.post("/events", json=event, headers=auth("ingest"))
    assert reply.status_code == 422, reply.text
    assert "data.value" in reply.json()["detail"]
    assert service.store.known_event_ids(["w"]) == set()


# -- the same id, another body -------------------------------------------------------------


def test_a_lone_event_reusing_an_id_with_another_body_is_a_conflict(
    api: tuple[TestClient, Any],
) -> None:
    client, service = api
    assert client.post("/events", json=discharge(), headers=auth("ingest")).status_code == 202
    same = client.post("/events", json=discharge(), headers=auth("ingest"))
    assert same.status_code == 202 and same.json() == {"accepted": [], "duplicates": ["e1"]}
    other = client.post("/events", json=discharge(patient="p2"), headers=auth("ingest"))
    assert other.status_code == 409
    assert other.json()["conflicts"] == ["e1"]
    (letter,) = letters(service)
    assert letter["id"] == other.json()["dead_letter"] and "'e1'" in letter["reason"]
    assert '"p2"' in letter["payload"]  # the body as received
    # nothing of the second body was recorded: p2 has no pathway
    assert client.get("/patients/p2/pathways", headers=auth("clinician")).json() == []


def test_a_batch_records_the_others_and_lists_the_conflicts(api: tuple[TestClient, Any]) -> None:
    client, service = api
    client.post("/events", json=discharge(), headers=auth("ingest"))
    batch = [discharge("e1", facility="elsewhere"), discharge("e2", patient="p3")]
    reply = client.post("/events", json=batch, headers=auth("ingest"))
    assert reply.status_code == 202
    body = reply.json()
    assert body["accepted"] == ["e2"] and body["duplicates"] == [] and body["conflicts"] == ["e1"]
    (letter,) = letters(service)
    assert letter["id"] == body["dead_letter"] and "elsewhere" in letter["payload"]


def test_an_hl7_control_id_reused_for_another_message_is_refused(
    api: tuple[TestClient, Any],
) -> None:
    client, _ = api
    at = (NOW - timedelta(hours=1)).strftime("%Y%m%d%H%M%S")

    def a03(patient: str) -> str:
        return (f"MSH|^~\\&|ADT|HOSP|CP|CP|{at}||ADT^A03|CTRL-X|P|2.5\r"
                f"EVN|A03|{at}\rPID|||{patient}^^^HOSP^MR||Doe^J\r"
                f"PV1|1|I|||||||||||||||||V1|||||||||||||||||||01||||||||{at}\r"
                "DG1|1||I50.9^Heart failure^I10\r")

    first = client.post("/hl7v2", content=a03("111"), headers=auth("ingest"))
    assert first.status_code == 200 and "MSA|AA|CTRL-X" in first.text
    again = client.post("/hl7v2", content=a03("111"), headers=auth("ingest"))
    assert again.status_code == 200 and "MSA|AA|CTRL-X" in again.text  # a resend
    other = client.post("/hl7v2", content=a03("222"), headers=auth("ingest"))
    assert other.status_code == 409 and "MSA|AE|CTRL-X" in other.text


# -- limits --------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_unread(api: tuple[TestClient, Any]) -> None:
    client, service = api
    big = b"[" + b" " * (70 * 1024) + b"]"
    reply = client.post("/events", content=big, headers=auth("ingest"))
    assert reply.status_code == 413 and "max_request_bytes" in reply.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it comes
        for _ in range(70):
            yield b" " * 1024

    reply = client.post("/fhir", content=chunks(), headers=auth("ingest"))
    assert reply.status_code == 413
    assert [letter["source"] for letter in letters(service)] == ["json", "fhir"]


def test_an_event_from_the_future_is_refused(api: tuple[TestClient, Any]) -> None:
    client, service = api
    soon = {**discharge("soon"), "occurred_at": (NOW + timedelta(minutes=4)).isoformat()}
    assert client.post("/events", json=soon, headers=auth("ingest")).status_code == 202
    later = {**discharge("later"), "occurred_at": (NOW + timedelta(minutes=10)).isoformat()}
    reply = client.post("/events", json=[discharge("e9", patient="p9"), later],
                        headers=auth("ingest"))
    assert reply.status_code == 422
    assert reply.json()["detail"].startswith("[1].occurred_at: ")
    assert "300 s ahead" in reply.json()["detail"]
    assert service.store.known_event_ids(["e9", "later"]) == set()  # all or nothing


def test_a_full_writer_answers_503_with_retry_after(api: tuple[TestClient, Any]) -> None:
    client, service = api
    ingestor = service.ingestor
    release = threading.Event()
    known = service.store.known_events

    def stalled(ids: Any) -> Any:  # a store that has stopped answering for a while
        release.wait(30)
        return known(ids)

    service.store.known_events = stalled
    try:
        at = NOW - timedelta(hours=1)
        filler = [Event.model_validate({**discharge(f"f{n}", patient=f"f{n}"),
                                        "occurred_at": at.isoformat()})
                  for n in range(service.settings.max_inflight_events)]
        waiting = ingestor.submit(filler)
        reply = client.post("/events", json=discharge("late"), headers=auth("ingest"))
        assert reply.status_code == 503
        assert reply.headers["retry-after"] == "1"
        assert "send again later" in reply.json()["detail"]
        hl7 = client.post("/hl7v2", content=b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|C1|P|2.5\r"
                          b"PID|||1\rPV1|1|I\r", headers=auth("ingest"))
        assert hl7.status_code == 503 and "MSA|AR|C1" in hl7.text
    finally:
        release.set()
        service.store.known_events = known
    assert len(waiting.result(30).accepted) == service.settings.max_inflight_events
    assert client.post("/events", json=discharge("late"), headers=auth("ingest")).status_code \
        == 202


# -- logs ----------------------------------------------------------------------------------------


def test_the_access_log_names_the_route_never_the_patient(
    api: tuple[TestClient, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = api
    caplog.set_level(logging.INFO)
    client.get("/patients/MRN-8675309/pathways")  # no token: 401
    client.get("/patients/MRN-8675309/pathways", headers=auth("clinician"))
    client.get("/instances/i-secret", headers=auth("clinician"))  # 404
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")  # the client's
    assert "MRN-8675309" not in ours and "i-secret" not in ours
    lines = [r.getMessage() for r in caplog.records if r.name == "carepath.access"]
    assert lines[0].startswith("GET /patients/{patient_id}/pathways 401 ")
    assert lines[1].startswith("GET /patients/{patient_id}/pathways 200 ")
    assert lines[2].startswith("GET /instances/{instance_id} 404 ")


def test_control_characters_in_logged_fields_are_escaped() -> None:
    record = logging.LogRecord("carepath.api", logging.INFO, __file__, 1,
                               "event %s accepted", ("x\n2026-01-01 INFO forged line\x1b[2J",),
                               None)
    line = SafeFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO event x\\n2026-01-01 INFO forged line\\x1b[2J accepted"
    assert "\n" not in line
    assert escape_controls("tab\there\u2028") == "tab\\there\\u2028"


# -- insecure development mode ---------------------------------------------------------------


def test_insecure_dev_serves_loopback_only(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "::1", "localhost"):
        check_insecure_dev(settings_for(tmp_path, insecure_dev=True, host=host))
    for host in ("0.0.0.0", "10.1.2.3", "example.org"):
        with pytest.raises(CarepathError, match="loopback"):
            check_insecure_dev(settings_for(tmp_path, insecure_dev=True, host=host))
    with pytest.raises(CarepathError, match="loopback"):
        check_insecure_dev(settings_for(tmp_path, insecure_dev=True,
                                        mllp={"host": "0.0.0.0", "port": 2575}))


def test_insecure_dev_cannot_be_turned_on_by_configuration_alone(tmp_path: Path) -> None:
    config = tmp_path / "carepath.yaml"
    config.write_text(f"insecure_dev: true\ndb: sqlite:///{tmp_path / 'x.db'}\n")
    result = CliRunner().invoke(cli, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert "--insecure-dev on the command line" in result.output


def test_an_event_loop_that_has_fallen_behind_turns_requests_away(
    api: tuple[TestClient, Any],
) -> None:
    client, service = api
    service.intake.lag = 1e9  # as the loop watch measures it when requests pile up unread
    reply = client.post("/events", json=discharge("lagged"), headers=auth("ingest"))
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert service.store.known_event_ids(["lagged"]) == set()


def test_an_overloaded_loop_turns_ingest_away_before_reading_it(
    api: tuple[TestClient, Any],
) -> None:
    client, service = api
    service.intake.lag = 1e9
    # not even the token is looked at: a refusal must cost next to nothing
    reply = client.post("/fhir", content=b"x" * 1000)
    assert reply.status_code == 503 and reply.headers["retry-after"] == "1"
    assert client.get("/healthz").status_code == 200  # the rest of the API still answers
    assert service.store.dead_letters() == []
