"""End to end: `carepath serve` in a subprocess, on SQLite and on PostgreSQL, with a real FHIR
server and a real SMTP server at the boundary. A CHF discharge arrives as an HL7 ADT^A03 (a real
public sample, given a heart-failure diagnosis and a discharge time of today), weights arrive as
FHIR Observations; the enrolment's actions reach the FHIR server, the weight-gain escalation
reaches the nurse by e-mail, the acknowledgement stops the chain, and SIGTERM plus a restart
lose nothing and repeat nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.service.harness import Served, config, wait_for
from tests.support.fhir_server import FhirServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.slow

ROLE_ADDRESSES = {
    "hf_nurse": "hf-nurses@example.org",
    "cardiology_on_call": "cardio-oncall@example.org",
    "medical_director": "director@example.org",
    "care_coordinator": "coordinators@example.org",
}


@pytest.fixture(scope="module")
def prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One embedded-Prefect home for the module: its database is created once, not per test."""
    return tmp_path_factory.mktemp("prefect")


@pytest.fixture
def boundary() -> Iterator[tuple[FhirServer, SmtpServer]]:
    fhir, smtp = FhirServer().start(), SmtpServer().start()
    yield fhir, smtp
    fhir.stop()
    smtp.stop()


def service_config(tmp: Path, db: str, fhir: FhirServer, smtp: SmtpServer,
                   prefect_home: Path) -> Path:
    return config(
        tmp, db, prefect_home=str(prefect_home),
        adapters={"default": "fhir", "actions": {"escalate": "email", "notify": "email"}},
        fhir={"base_url": fhir.base_url},
        smtp={"host": "127.0.0.1", "port": smtp.port, "sender": "carepath@example.org"},
        role_addresses=ROLE_ADDRESSES,
    )


def chf_discharge(samples: Path, discharged: datetime, control_id: str) -> str:
    """The HAPI ADT^A03 sample, given DG1 I50.9, PV1-36 06 (home with home health) and a
    discharge time (PV1-45) of `discharged`."""
    text = (samples / "hl7v2" / "08_adt_a03_v25_hapi_adt_a03.hl7").read_bytes().decode("utf-8")
    out = []
    for segment in filter(None, text.split("\r")):
        fields = segment.split("|")
        if fields[0] == "MSH":
            fields[9] = control_id
        if fields[0] == "PV1":
            fields += [""] * (46 - len(fields))
            fields[36] = "06"
            fields[45] = discharged.strftime("%Y%m%d%H%M%S+0000")
        out.append("|".join(fields))
    out.append("DG1|1|I10|I50.9^Heart failure, unspecified^I10||" +
               discharged.strftime("%Y%m%d") + "|F")
    return "\r".join(out) + "\r"


def weight(observation_id: str, patient: str, kg: float, at: datetime) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": observation_id,
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                            "observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7",
                             "display": "Body weight"}]},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": at.isoformat(),
        "valueQuantity": {"value": kg, "unit": "kg", "system": "http://unitsofmeasure.org",
                          "code": "kg"},
    }


def accepted_events(db: str) -> list[str]:
    """The ids of the events accepted from outside (not the engine's own outcome inputs)."""
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        ids = list(conn.execute(sa.text(
            "select input_id from inputs where kind = 'event' "
            "and type not in ('action.succeeded', 'action.failed')")).scalars())
    engine.dispose()
    return ids


def test_a_chf_discharge_flows_from_hl7_to_fhir_and_email(
    store_url: str, tmp_path: Path, shared_samples: Path,
    boundary: tuple[FhirServer, SmtpServer], prefect_home: Path,
) -> None:
    fhir, smtp = boundary
    served = Served(service_config(tmp_path, store_url, fhir, smtp, prefect_home),
                    tmp_path / "serve.log")
    served.start()
    try:
        now = datetime.now(UTC).replace(microsecond=0)
        ingest, clinician = served.client("ingest"), served.client("clinician")
        auditor = served.client("auditor")
        reply = ingest.post("/hl7v2", content=chf_discharge(shared_samples, now - timedelta(
            hours=2), "CTRL-1"))
        assert reply.status_code == 200, reply.text
        assert "MSA|AA|CTRL-1" in reply.text
        (instance,) = clinician.get("/patients/5520255/pathways").json()
        assert instance["pathway"] == "chf-post-discharge@1" and instance["active"]

        # Every enrolment action reaches the FHIR server, as the resource of its family.
        wait_for(lambda: len(fhir.created()) >= 6)
        kinds = sorted(r.resource_type for r in fhir.created())
        assert kinds == ["Appointment", "CommunicationRequest", "ServiceRequest", "Task", "Task",
                         "Task"], kinds
        assert fhir.invalid == []

        # Two weights, 1.2 kg apart within 24 h: the nurse is e-mailed.
        for n, (kg, ago) in enumerate([(80.0, 50), (81.2, 10)]):
            reply = ingest.post("/fhir", json=weight(f"w{n}", "5520255", kg,
                                                     now - timedelta(minutes=ago)))
            assert reply.status_code == 202, reply.text
        (mail,) = wait_for(lambda: [m for m in smtp.messages if "weight_gain_24h" in
                                    str(m["Subject"])])
        assert mail["To"] == "hf-nurses@example.org"
        task_id = str(mail["X-Carepath-Action"])

        # The nurse acknowledges: the chain stops, its timer is gone.
        detail = clinician.get(f"/instances/{instance['instance_id']}").json()
        assert "escalation:weight_gain" in [t["timer"] for t in detail["pending_timers"]]
        reply = ingest.post("/events", json={
            "id": "ack-1", "type": "task.acknowledged", "patient_id": "5520255",
            "occurred_at": datetime.now(UTC).isoformat(),
            "data": {"task_id": task_id, "by": "hf_nurse"}})
        assert reply.status_code == 202 and reply.json()["accepted"] == ["ack-1"]
        detail = clinician.get(f"/instances/{instance['instance_id']}").json()
        assert "escalation:weight_gain" not in [t["timer"] for t in detail["pending_timers"]]
        assert detail["state"]["chains"] == {}
        assert [e["kind"] for e in detail["timeline"]][-1] == "acknowledge"

        def escalation_done() -> bool:
            actions = clinician.get(f"/instances/{instance['instance_id']}").json()["actions"]
            return any(a["action"] == "escalate" and a["status"] == "succeeded" and
                       a["outcome"]["reference"] == mail["Message-ID"] for a in actions)

        wait_for(escalation_done)  # the outcome, with the message id, is written back
        assert auditor.get("/audit/verify").json()["intact"] is True
        assert served.stop() == 0
        for client in (ingest, clinician, auditor):
            client.close()
    finally:
        served.kill()


def test_sigterm_under_load_and_a_restart_lose_nothing_and_repeat_nothing(
    store_url: str, tmp_path: Path, boundary: tuple[FhirServer, SmtpServer],
    prefect_home: Path,
) -> None:
    fhir, smtp = boundary
    served = Served(service_config(tmp_path, store_url, fhir, smtp, prefect_home),
                    tmp_path / "serve.log")
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        {"id": f"d-{p}", "type": "encounter.discharged", "patient_id": f"pt-{p}",
         "occurred_at": (now - timedelta(hours=1)).isoformat(),
         "data": {"encounter_id": f"enc-{p}", "diagnoses": ["I50.9"], "disposition": "01"}}
        for p in range(24)
    ]
    acknowledged: set[str] = set()
    served.start()
    try:
        def send() -> None:
            with served.client("ingest") as ingest:
                for event in events:
                    try:
                        reply = ingest.post("/events", json=event)
                    except httpx.HTTPError:
                        return  # the service went away mid-stream: the rest is resent later
                    if reply.status_code == 202:
                        acknowledged.update(reply.json()["accepted"])

        sender = threading.Thread(target=send)
        sender.start()
        wait_for(lambda: len(acknowledged) >= 6, timeout=60, every=0.01)
        assert served.stop() == 0
        sender.join()
        # Everything acknowledged before the stop is durable.
        assert acknowledged <= set(accepted_events(store_url))
        served.start()
        with served.client("ingest") as ingest:
            for event in events:  # the sender resends everything; duplicates change nothing
                assert ingest.post("/events", json=event).status_code == 202
        accepted = accepted_events(store_url)
        assert sorted(accepted) == sorted(e["id"] for e in events)  # each exactly once
        # Every enrolment's five actions, each carried out once, however often delivered.
        wait_for(lambda: len({(r.resource_type, r.resource["identifier"][0]["value"])
                              for r in fhir.created()}) >= 24 * 4, timeout=120)
        keys = [(r.resource_type, r.resource["identifier"][0]["value"]) for r in fhir.created()]
        assert len(keys) == len(set(keys))
        assert served.stop() == 0
    finally:
        served.kill()
