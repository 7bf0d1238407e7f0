"""Restart recovery: `carepath simulate --db` killed (SIGKILL) at several points and restarted
on the same store with the same file ends exactly where an uninterrupted run ends.

Each group of events is one transaction, so a kill loses only the group in flight; the restart
re-reads the file, finds the committed events already in the log (recorded as duplicates, deciding
nothing) and carries on from the stored instances, timers and clock.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from engine.catalogue import Event
from engine.cli import app
from engine.definition.loader import check_paths
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
START = datetime(2026, 2, 2, tzinfo=UTC)
PATIENTS = 150
SEED = 20260202


def stream(patients: int, seed: int) -> list[dict[str, Any]]:
    """A month of events for `patients` patients: CHF discharges (some not enrolled), daily
    weights with gaps and gains, acknowledgements, follow-ups booked, attended or missed, red
    flags, readmissions; diabetes diagnoses and foot exams. A few events are re-sent later in
    the file and a few weights arrive a day late."""
    rng = random.Random(seed)
    events: list[tuple[datetime, int, dict[str, Any]]] = []

    def add(patient: str, type_: str, at: datetime, late: bool = False, **data: Any) -> None:
        event = {
            "id": f"{patient}-{len(events)}",
            "type": type_,
            "patient_id": patient,
            "occurred_at": at.isoformat(),
            "data": data,
        }
        arrives = at + timedelta(days=1) if late else at
        events.append((arrives, len(events), event))

    for n in range(patients):
        patient = f"p-{n:04d}"
        d = START + timedelta(days=rng.randrange(10), hours=rng.randrange(8, 19))
        if rng.random() < 0.15:
            add(patient, "condition.diagnosed", d, code=rng.choice(["E11.9", "E10.65", "E13"]))
            exam = d + timedelta(days=rng.randrange(3, 25), hours=2)
            add(patient, "foot_exam.completed", exam, iwgdf_risk=rng.randrange(4),
                active_ulcer=rng.random() < 0.2, infection=rng.choice(["none", "none", "mild"]),
                ischemia=False, gangrene=False)  # fmt: skip
            continue
        add(patient, "encounter.discharged", d, encounter_id=f"enc-{patient}",
            diagnoses=[rng.choice(["I50.23", "I50.9", "42343007"])],
            disposition=rng.choice(["01", "01", "06", None, "03"]))  # fmt: skip
        weight = rng.uniform(60, 110)
        for day in range(1, 21):
            if rng.random() < 0.15:
                continue  # a missed reading
            weight += 1.3 if rng.random() < 0.08 else rng.gauss(0, 0.3)
            at = d.replace(hour=7, minute=rng.randrange(60)) + timedelta(days=day)
            add(patient, "observation.weight", at, late=rng.random() < 0.03,
                value=round(weight, 1), unit="kg")  # fmt: skip
            if rng.random() < 0.1:
                add(patient, "task.acknowledged", at + timedelta(hours=rng.randrange(1, 7)),
                    pathway="chf-post-discharge", escalation="weight_gain", by="nurse")  # fmt: skip
        if rng.random() < 0.8:
            booked = d + timedelta(days=rng.randrange(1, 7), hours=1)
            visit = booked + timedelta(days=rng.randrange(1, 5))
            add(patient, "appointment.booked", booked, appointment_id=f"ap-{patient}",
                kind="follow_up", start=visit.isoformat())  # fmt: skip
            outcome = "appointment.attended" if rng.random() < 0.75 else "appointment.missed"
            add(patient, outcome, visit, appointment_id=f"ap-{patient}", kind="follow_up")
        if rng.random() < 0.06:
            add(patient, "symptom.reported", d + timedelta(days=rng.randrange(1, 20), hours=3),
                symptom=rng.choice(["chest_pain", "syncope", "edema"]))  # fmt: skip
        if rng.random() < 0.05:
            add(patient, "encounter.admitted", d + timedelta(days=rng.randrange(5, 25)),
                encounter_id=f"enc2-{patient}", diagnoses=["I50.23"])  # fmt: skip
    ordered = [e for _, _, e in sorted(events, key=lambda x: (x[0], x[1]))]
    for again in rng.sample(ordered, len(ordered) // 100):  # re-sent by the sender, later on
        ordered.insert(min(len(ordered), ordered.index(again) + rng.randrange(5, 400)), again)
    return ordered


@dataclass
class Outcome:
    """What a finished run left in the store, in forms that do not depend on input numbering."""

    events: Counter[str]
    decided: Counter[tuple[str, str]]
    instances: dict[str, Any]
    outbox: dict[str, Any]
    audit: Counter[str]

    @classmethod
    def of(cls, url: str) -> Outcome:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                inputs = conn.execute(sa.text("SELECT kind, input_id FROM inputs")).all()
                instances = conn.execute(sa.text("SELECT instance_id, state FROM instances"))
                outbox = conn.execute(sa.text("SELECT action_id, payload FROM outbox")).all()
                audit = conn.execute(sa.text("SELECT record FROM audit")).scalars().all()
                states = {i: json.loads(s) for i, s in instances}
        finally:
            engine.dispose()
        ids = [a for a, _ in outbox]
        assert len(ids) == len(set(ids)), "an action id is in the outbox twice"
        return cls(
            events=Counter(i for k, i in inputs if k == "event"),
            decided=Counter((k, i) for k, i in inputs if k != "duplicate"),
            instances=states,
            outbox={a: json.loads(p) for a, p in outbox},
            audit=Counter(json.dumps({**json.loads(r), "seq": None}) for r in audit),
        )


def simulate(events: Path, url: str, *options: str) -> subprocess.Popen[bytes]:
    command = "from engine.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", command, "simulate", "--pathways", str(PATHWAYS),
         "--events", str(events), "--db", url, *options],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def committed_events(url: str) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            query = "SELECT count(*) FROM inputs WHERE kind = 'event'"
            return int(conn.execute(sa.text(query)).scalar_one())
    except sa.exc.DBAPIError:
        return 0  # not created yet
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], Outcome]:
    """The event file, its distinct event ids, and what an uninterrupted run leaves."""
    folder = tmp_path_factory.mktemp("restart")
    events = stream(PATIENTS, SEED)
    path = folder / "events.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    url = f"sqlite:///{folder / 'reference.db'}"
    run = simulate(path, url)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err.decode()
    ids = sorted({e["id"] for e in events})
    assert len(ids) < len(events)  # some are re-sent in the file itself
    return path, ids, Outcome.of(url)


def kill_and_restart(events: Path, url: str, total: int, seed: int, *options: str) -> int:
    """Run simulate on `url`, SIGKILLing it each time the store has committed past the next of
    some seeded points, and restarting it, until a run finishes. Returns the number of kills.

    Each restart reads the latest snapshot and re-decides the inputs after it: those of the
    killed run (a snapshot is taken at every clean stop, and every --snapshot-every inputs)."""
    rng = random.Random(seed)
    points = sorted(rng.sample(range(1, total), 3))
    kills = 0
    for point in [0, *points]:
        run = simulate(events, url, *options)
        if point == 0:  # the first kill: during start-up or the first group, before any commit
            time.sleep(rng.uniform(0.3, 1.0))
        else:
            while run.poll() is None and committed_events(url) < point:
                time.sleep(0.01)
        if run.poll() is not None:
            run.communicate()
            break
        os.kill(run.pid, signal.SIGKILL)
        run.communicate()
        kills += 1
    final = simulate(events, url, *options)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()
    return kills


def check_recovered(
    url: str, ids: list[str], reference: Outcome, verify: Callable[[], int]
) -> None:
    outcome = Outcome.of(url)
    assert sorted(outcome.events) == ids
    assert set(outcome.events.values()) == {1}  # every event accepted exactly once
    assert outcome.decided == reference.decided  # the same events and timer firings decided
    assert outcome.instances == reference.instances
    assert outcome.outbox == reference.outbox
    assert outcome.audit == reference.audit
    assert verify() == 0


def _verify(url: str) -> Callable[[], int]:
    return lambda: CliRunner().invoke(app, ["audit", "verify", "--db", url]).exit_code


@pytest.mark.slow
def test_killed_and_restarted_on_sqlite_ends_as_an_uninterrupted_run(
    history: tuple[Path, list[str], Outcome], tmp_path: Path
) -> None:
    events, ids, reference = history
    url = f"sqlite:///{tmp_path / 'killed.db'}"
    # snapshots every 300 inputs, so kills fall between them (PostgreSQL: the default, none)
    kills = kill_and_restart(events, url, len(ids), 1, "--snapshot-every", "300")
    assert kills >= 3
    check_recovered(url, ids, reference, _verify(url))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        taken = conn.execute(sa.text("SELECT count(*) FROM snapshots")).scalar_one()
    engine.dispose()
    assert taken > kills + 1  # periodic ones too, besides each restart's and the last stop's


@pytest.mark.slow
@pytest.mark.postgres
def test_killed_and_restarted_on_postgresql_ends_as_an_uninterrupted_run(
    history: tuple[Path, list[str], Outcome], pg_url: str
) -> None:
    events, ids, reference = history
    kills = kill_and_restart(events, pg_url, len(ids), 2)
    assert kills >= 3
    check_recovered(pg_url, ids, reference, _verify(pg_url))


def _tie_events() -> list[Event]:
    def event(eid: str, type_: str, at: str, **data: Any) -> Event:
        return Event.model_validate(
            {"id": eid, "type": type_, "patient_id": "p-tie", "occurred_at": at, "data": data}
        )

    return [
        event(
            "t-1",
            "encounter.discharged",
            "2026-03-02T10:00:00Z",
            encounter_id="enc",
            diagnoses=["I50.9"],
            disposition="01",
        ),
        # arms missing:missing_weights for 03-05 09:00 ...
        event("t-2", "observation.weight", "2026-03-03T09:00:00Z", value=80.0, unit="kg"),
        # ... then escalation:red_flag (1 h to acknowledge) for the same instant
        event("t-3", "symptom.reported", "2026-03-05T08:00:00Z", symptom="chest_pain"),
        event("t-4", "observation.weight", "2026-03-05T12:00:00Z", value=80.1, unit="kg"),
    ]


def test_a_restart_keeps_the_order_of_timers_due_at_the_same_instant(tmp_path: Path) -> None:
    pathways, problems = check_paths([PATHWAYS])
    assert problems == []
    events = _tie_events()
    actions = {}
    for restart in (False, True):
        store = Store.open(f"sqlite:///{tmp_path / f'restart-{restart}.db'}")
        registry = open_registry(store, pathways, START)
        engine = DurableEngine(store, registry)
        engine.submit_many(events[:3])
        if restart:  # as a new process would: from what the store holds
            engine = DurableEngine(store, registry)
        engine.submit_many(events[3:])
        actions[restart] = [(a["id"], a["action"], a["params"]) for a in store.actions()]
        store.close()
    fired = [(action, params.get("reason")) for _, action, params in actions[False][-3:]]
    assert fired == [
        ("escalate", "red_flag_symptom"),  # level 1, for the symptom
        ("escalate", "red_flag_symptom"),  # level 2: escalation: sorts before missing:
        ("outreach_call", "missing_weights"),  # due at the same instant as level 2
    ]
    assert actions[True] == actions[False]
