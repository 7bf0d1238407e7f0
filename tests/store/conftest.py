"""Fixtures for the store tests: the shipped pathways, a small recorded history, a store that
holds some of everything, the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from engine.catalogue import Event
from engine.cli import app
from engine.core import Registry
from engine.definition.loader import check_paths
from engine.definition.model import Pathway
from engine.runtime.dispatch import Dispatcher
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import OutboxItem, Outcome, Store

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"


def _event(eid: str, type_: str, patient: str, at: str, **data: object) -> Event:
    return Event.model_validate(
        {"id": eid, "type": type_, "patient_id": patient, "occurred_at": at, "data": data}
    )


#: Four patients over a week: a CHF patient whose weight rises, acknowledged, booked and seen;
#: a discharge to a nursing facility (not enrolled); a CHF red flag left unacknowledged (timers
#: escalate it, and the follow-up deadlines fall due); a diabetes diagnosis.
HISTORY = [
    _event("e-009", "condition.diagnosed", "p-004", "2026-03-02T09:00:00Z", code="E11.9"),
    _event(
        "e-001", "encounter.discharged", "p-001", "2026-03-02T10:00:00Z",
        encounter_id="enc-1", diagnoses=["I50.23"], disposition="06",
    ),
    _event(
        "e-006", "encounter.discharged", "p-002", "2026-03-02T12:00:00Z",
        encounter_id="enc-2", diagnoses=["I50.9"], disposition="03",
    ),
    _event(
        "e-007", "encounter.discharged", "p-003", "2026-03-02T14:00:00Z",
        encounter_id="enc-3", diagnoses=["84114007"], disposition="01",
    ),
    _event("e-002", "observation.weight", "p-001", "2026-03-03T08:00:00Z", value=80.0, unit="kg"),
    _event("e-008", "symptom.reported", "p-003", "2026-03-03T20:00:00Z", symptom="chest_pain"),
    _event("e-003", "observation.weight", "p-001", "2026-03-04T08:00:00Z", value=81.2, unit="kg"),
    _event(
        "e-004", "task.acknowledged", "p-001", "2026-03-04T10:00:00Z",
        pathway="chf-post-discharge", escalation="weight_gain", by="nurse-7",
    ),
    _event(
        "e-005", "appointment.booked", "p-001", "2026-03-05T09:00:00Z",
        appointment_id="ap-1", kind="follow_up", start="2026-03-08T09:00:00Z",
    ),
    _event(
        "e-010", "appointment.attended", "p-001", "2026-03-08T09:00:00Z",
        appointment_id="ap-1", kind="follow_up",
    ),
]  # fmt: skip


@pytest.fixture(scope="session")
def pathways() -> list[Pathway]:
    loaded, problems = check_paths([PATHWAYS])
    assert problems == []
    return loaded


@pytest.fixture(scope="session")
def registry(pathways: list[Pathway]) -> Registry:
    return Registry.of(pathways)


@pytest.fixture
def history() -> list[Event]:
    return list(HISTORY)


@pytest.fixture
def events_file(tmp_path: Path, history: list[Event]) -> Path:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(e.model_dump_json() + "\n" for e in history), encoding="utf-8")
    return path


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `carepath ARGS...` in-process; output is wide enough that nothing wraps."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)

    return run


T0 = datetime(2026, 3, 1, tzinfo=UTC)
HOLIDAY = date(2026, 3, 3)
#: bytes that are not UTF-8 text, as an HL7 v2 feed in Latin-1 sends them
LATIN1 = "MSH|^~\\&|LAB|H|CP|H|202603021000||ADT^A03|1|P|2.5\rPID|||p-9||M\xfcller".encode(
    "latin-1"
)


class Carried:
    """A flow registry that carries every action out at once, without Prefect: bookings fail
    (no slot), everything else succeeds with a reference."""

    def run_group(
        self, pathway_key: str, items: Sequence[OutboxItem], ports: object
    ) -> list[Outcome]:
        return [
            Outcome(i.action_id, True, reference=f"ref-{i.action_id}")
            if i.action["action"] != "book_follow_up"
            else Outcome(i.action_id, False, error="no slot")
            for i in items
        ]


@pytest.fixture
def lived_in(store_url: str, pathways: list[Pathway], history: list[Event]) -> Iterator[Store]:
    """A store holding some of everything, as a service leaves it after a crash: the history
    (with a holiday, then another list), timers fired, snapshots every 4 inputs, actions
    carried out (succeeded, failed) and pending, dead letters (text, bytes that are not UTF-8,
    one retried and refused again, one accepted), and a tail after the latest snapshot in
    which an instance ended (its row says so; its state is the snapshot's). Opened, not
    claimed: the tests tamper with it and verify it, or restart on it."""
    store = Store.open(store_url)
    registry = open_registry(store, pathways, T0)
    engine = DurableEngine(store, registry, holidays=[HOLIDAY], snapshot_every=4)
    engine.submit_many(history[:5])
    engine.submit_many(history[5:])
    engine.close()
    store = Store.open(store_url)
    engine = DurableEngine(store, registry, holidays=[HOLIDAY, date(2026, 3, 17)],
                           snapshot_every=4)  # fmt: skip
    engine.advance(datetime(2026, 3, 20, tzinfo=UTC))
    clock = store.clock()
    assert clock is not None
    dispatch = Dispatcher(store, Carried(), None, engine.submit_many, clock=lambda: clock,
                          batch_size=12)  # fmt: skip
    dispatch.run_once()
    store.dead_letter("json", "not JSON: line 1", "{oops", T0)
    store.dead_letter("hl7v2", "not UTF-8 text", LATIN1, T0)
    store.dead_letter("json", "a NUL", b'{"id": "\x00"}', T0)
    refused = store.dead_letter("fhir", "not a resource", "[]", T0)
    store.set_dead_letter_status(refused, "held", "retried and refused again: still not", T0)
    accepted = store.dead_letter("json", "unknown event type", '{"type": "x"}', T0)
    store.set_dead_letter_status(accepted, "accepted", None, T0)
    engine.submit_many([_event("e-out", "patient.opted_out", "p-003", "2026-03-20T08:00:00Z")])
    assert store.last_seq > store.snapshot_seq  # the tail
    store.close()  # a crash: no snapshot of the tail
    opened = Store.open(store_url)
    yield opened
    opened.close()
