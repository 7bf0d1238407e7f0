"""Fixtures for replay and what-if: a recorded CHF cohort on each store, and the CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from engine.catalogue import Event
from engine.cli import app
from engine.definition.loader import check_paths
from engine.definition.model import Pathway
from engine.runtime.durable import DurableEngine, open_registry
from engine.store import Store

ROOT = Path(__file__).resolve().parents[2]
PATHWAYS = ROOT / "pathways"
D = datetime(2026, 3, 2, 10, tzinfo=UTC)  # a Monday: every CHF patient is discharged at D


def _event(eid: str, type_: str, patient: str, at: datetime, **data: object) -> Event:
    return Event.model_validate(
        {"id": eid, "type": type_, "patient_id": patient, "occurred_at": at, "data": data}
    )


def _cohort() -> list[Event]:
    """Seven patients. Weights are taken at 08:00 on days 1 and 2 after D.

    p-01  gains 0.7 kg in 24 h (under 1.0 kg, over 0.5 kg), acknowledged; booked on day 1
    p-02  gains 1.5 kg in 24 h: escalated, acknowledged; booked on day 1
    p-03  gains 0.2 kg; books the follow-up on day 4 (after 3 days, before 5)
    p-04  steady weights; never books the follow-up
    p-05  steady weights; booked on day 2, attended on day 6
    p-06  a diabetes diagnosis (the other pathway)
    p-07  a CHF discharge to a nursing facility (not enrolled)
    """
    events: list[Event] = []
    n = 0

    def add(type_: str, patient: str, at: datetime, **data: object) -> None:
        nonlocal n
        n += 1
        events.append(_event(f"ev-{n:03d}", type_, patient, at, **data))

    weights = {"p-01": (80.0, 80.7), "p-02": (80.0, 81.5), "p-03": (80.0, 80.2),
               "p-04": (75.0, 75.1), "p-05": (90.0, 89.8)}  # fmt: skip
    booked = {"p-01": 1, "p-02": 1, "p-03": 4, "p-05": 2}
    for patient in weights:
        add("encounter.discharged", patient, D, encounter_id=f"enc-{patient}",
            diagnoses=["I50.23"], disposition="01")  # fmt: skip
    add("condition.diagnosed", "p-06", D, code="E11.9")
    add("encounter.discharged", "p-07", D, encounter_id="enc-p-07", diagnoses=["I50.9"],
        disposition="03")  # fmt: skip
    for day in (1, 2):
        for patient, (first, second) in weights.items():
            at = D.replace(hour=8) + timedelta(days=day)
            add("observation.weight", patient, at, value=first if day == 1 else second, unit="kg")
    for patient in ("p-01", "p-02"):
        add("task.acknowledged", patient, D.replace(hour=9) + timedelta(days=2),
            pathway="chf-post-discharge", escalation="weight_gain", by="nurse-7")  # fmt: skip
    for patient, day in booked.items():
        add("appointment.booked", patient, D + timedelta(days=day, hours=1),
            appointment_id=f"ap-{patient}", kind="follow_up",
            start=(D + timedelta(days=6)).isoformat())  # fmt: skip
    add("appointment.attended", "p-05", D + timedelta(days=6), appointment_id="ap-p-05",
        kind="follow_up")  # fmt: skip
    add("observation.weight", "p-02", D.replace(hour=8) + timedelta(days=8), value=80.9, unit="kg")
    return sorted(events, key=lambda e: e.occurred_at)


COHORT = _cohort()


@pytest.fixture(scope="session")
def pathways() -> list[Pathway]:
    loaded, problems = check_paths([PATHWAYS])
    assert problems == []
    return loaded


@pytest.fixture
def cohort() -> list[Event]:
    return list(COHORT)


@pytest.fixture
def recorded(store_url: str, pathways: list[Pathway], cohort: list[Event]) -> Iterator[Store]:
    """The cohort decided and committed on the store, in three groups, some events re-sent."""
    store = Store.open(store_url)
    engine = DurableEngine(store, open_registry(store, pathways, D))
    engine.submit_many(cohort[:12])
    engine.submit_many(cohort[8:20])  # four re-sent: duplicates
    engine.submit_many(cohort[20:])
    yield store
    store.close()


@pytest.fixture
def cli() -> Callable[..., Result]:
    """Run `carepath ARGS...` in-process; output is wide enough that nothing wraps."""
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(app, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)

    return run
