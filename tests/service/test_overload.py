"""`carepath serve` in a subprocess, past what it can take: the excess is answered 503 with
Retry-After and nothing acknowledged is lost; SIGTERM at overload stops intake at once and the
process exits 0 within `shutdown_grace_seconds`; a timer due while the service was killed fires
after the restart and is recorded as late, and replay still agrees."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.service.harness import CAREPATH, Served, config, wait_for

pytestmark = pytest.mark.slow

GRACE = 5.0


def discharge(patient: str, at: datetime) -> dict[str, Any]:
    return {"id": f"d-{patient}", "type": "encounter.discharged", "patient_id": patient,
            "occurred_at": at.isoformat(),
            "data": {"encounter_id": f"e-{patient}", "diagnoses": ["I50.9"], "disposition": "01"}}


def recorded_events(db: str) -> set[str]:
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        ids = set(conn.execute(sa.text("select input_id from inputs where kind = 'event'"))
                  .scalars())
    engine.dispose()
    return ids


def test_overload_gets_503_and_sigterm_stops_within_the_grace(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'overload.db'}"
    served = Served(config(tmp_path, db, dispatch=False, max_inflight_events=100,
                           shutdown_grace_seconds=GRACE), tmp_path / "serve.log")
    served.start()
    now = datetime.now(UTC)
    acknowledged: set[str] = set()
    busy: list[str | None] = []  # the Retry-After of each 503
    refused_after_stop: list[int] = []
    stopping = threading.Event()
    lock = threading.Lock()
    try:
        with served.client("ingest") as ingest:
            patients = [discharge(f"p{n}", now - timedelta(hours=2)) for n in range(200)]
            assert ingest.post("/events", json=patients).status_code == 202

        def send(sender: int) -> None:
            with served.client("ingest") as ingest:
                for n in range(10_000):
                    batch = [{"id": f"w-{sender}-{n}-{k}", "type": "observation.weight",
                              "patient_id": f"p{(sender * 7 + k) % 200}",
                              "occurred_at": (now - timedelta(hours=1)).isoformat(),
                              "data": {"value": 80 + k / 10, "unit": "kg"}} for k in range(25)]
                    try:
                        reply = ingest.post("/events", json=batch)
                    except httpx.HTTPError:
                        return  # the service has gone
                    with lock:
                        if reply.status_code == 202:
                            acknowledged.update(reply.json()["accepted"])
                        elif reply.status_code == 503:
                            busy.append(reply.headers.get("retry-after"))
                            if stopping.is_set():
                                refused_after_stop.append(503)
                        else:
                            raise AssertionError(reply.text)

        senders = [threading.Thread(target=send, args=(n,)) for n in range(24)]
        for thread in senders:
            thread.start()
        wait_for(lambda: len(busy) >= 20 and len(acknowledged) >= 500, timeout=60, every=0.05)
        assert served.process is not None
        stopping.set()
        started = time.monotonic()
        code = served.stop(timeout=60)
        took = time.monotonic() - started
        for thread in senders:
            thread.join()
    finally:
        served.kill()
    assert code == 0
    assert took <= GRACE + 1.5, f"stopped in {took:.1f} s"
    assert set(busy) == {"1"}  # every 503 says when to come back
    # everything acknowledged is durable; what was refused was not half-recorded
    assert acknowledged <= recorded_events(db)
    log = served.log.read_text()
    assert "stopped cleanly" in log and "Traceback" not in log


def timer_inputs(db: str) -> list[Any]:
    engine = sa.create_engine(db.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select seq, occurred_at, recorded_at, decided_at, instance_id from inputs where "
            "kind = 'timer' and type = 'missing:missing_weights'")).all()
    engine.dispose()
    return list(rows)


def test_a_timer_due_while_the_service_was_killed_is_recorded_late(
    store_url: str, tmp_path: Path
) -> None:
    served = Served(config(tmp_path, store_url, dispatch=False), tmp_path / "serve.log")
    served.start()
    try:
        now = datetime.now(UTC)
        due = now + timedelta(seconds=3)
        # no weight since a discharge 48 h before `due`: the missing-weights timer is due then
        with served.client("ingest") as ingest:
            reply = ingest.post("/events", json=discharge("p-late", due - timedelta(hours=48)))
            assert reply.status_code == 202
        served.kill()  # SIGKILL, before the due time
        time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 3)
        assert timer_inputs(store_url) == []
        restarted = datetime.now(UTC)
        served.start()
        (row,) = wait_for(lambda: timer_inputs(store_url), timeout=30, every=0.2)
        assert served.stop() == 0
    finally:
        served.kill()
    fired = datetime.fromisoformat(row.decided_at)
    assert datetime.fromisoformat(row.occurred_at) == due
    assert datetime.fromisoformat(row.recorded_at) == fired
    assert fired >= restarted > due + timedelta(seconds=2)  # late, and saying so
    engine = sa.create_engine(store_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        call = conn.execute(sa.text(
            "select payload from outbox where seq = :seq and action = 'outreach_call'"),
            {"seq": row.seq}).scalar_one()
    engine.dispose()
    assert '"reason":"missing_weights"' in call
    assert f'"fired_at":"{fired.isoformat().replace("+00:00", "Z")}"' in call or \
        f'"fired_at":"{fired.isoformat()}"' in call
    for command in (["replay", "--db", store_url, "--all"], ["audit", "verify", "--db", store_url]):
        result = subprocess.run([str(CAREPATH), *command], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
