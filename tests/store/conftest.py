"""Fixtures for the store tests: the shipped pathways, a small recorded history, the CLI."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from engine.catalogue import Event
from engine.cli import app
from engine.core import Registry
from engine.definition.loader import check_paths
from engine.definition.model import Pathway

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
