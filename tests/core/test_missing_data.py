"""The missing-weights timer: counted from D until the first reading, then from the latest one,
and moved only forward (docs/engine.md, "What a late event can and cannot change")."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from engine.catalogue import Event
from engine.core import CompiledPathway, EventInput, InstanceState, TimerInput, decide

D = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)  # a Monday
H = timedelta(hours=1)
KEY = "missing:missing_weights"


def discharged(chf: CompiledPathway) -> InstanceState:
    event = Event.model_validate(
        {
            "id": "dis",
            "type": "encounter.discharged",
            "patient_id": "p",
            "occurred_at": D.isoformat(),
            "data": {"encounter_id": "e", "diagnoses": ["I50.9"], "disposition": "01"},
        }
    )
    state, _ = decide(chf, None, EventInput(event, D), D)
    assert state is not None
    assert state.timers[KEY] == D + 48 * H
    return state


def weight(chf: CompiledPathway, state: InstanceState, taken: datetime, arrives: datetime):
    event = Event.model_validate(
        {
            "id": f"w-{taken.isoformat()}",
            "type": "observation.weight",
            "patient_id": "p",
            "occurred_at": taken.isoformat(),
            "data": {"value": 80.0, "unit": "kg"},
        }
    )
    new, decision = decide(chf, state, EventInput(event, arrives), arrives)
    assert new is not None
    assert not decision.actions
    return new, [t for t in decision.timers if t.timer == KEY]


@pytest.mark.parametrize(
    ("taken", "arrives", "due"),
    [
        pytest.param(D + 30 * H, D + 30 * H, D + 78 * H, id="on-time-reading-restarts-silence"),
        pytest.param(D + 47 * H, D + 47 * H, D + 95 * H, id="first-reading-just-in-time"),
        pytest.param(D - H, D + H, D + 48 * H, id="reading-taken-before-D-arrives-after"),
        pytest.param(D - 5 * H, D + 47 * H, D + 48 * H, id="reading-before-D-arrives-late"),
    ],
)
def test_first_reading(chf: CompiledPathway, taken: datetime, arrives: datetime, due: datetime):
    state, _ = weight(chf, discharged(chf), taken, arrives)
    assert state.timers[KEY] == due


def test_a_late_first_reading_does_not_pull_the_timer_back_into_the_past(chf: CompiledPathway):
    state = discharged(chf)
    fired, decision = decide(
        chf, state, TimerInput(state.instance_id, KEY, D + 48 * H, D + 48 * H), D + 48 * H
    )
    assert fired is not None
    assert [a.params["reason"] for a in decision.actions] == ["missing_weights"]
    assert fired.timers[KEY] == D + 96 * H
    # taken an hour after D, arriving on day 3: due D+49h would already be past
    after, changes = weight(chf, fired, D + H, D + 72 * H)
    assert after.timers[KEY] == D + 96 * H
    assert changes == []
    assert after.last_seen["observation.weight"] == D + H


def test_a_late_older_reading_does_not_restart_the_silence(chf: CompiledPathway):
    state, _ = weight(chf, discharged(chf), D + 27 * H, D + 27 * H)
    assert state.timers[KEY] == D + 75 * H
    later, changes = weight(chf, state, D + 21 * H, D + 49 * H)
    assert later.timers[KEY] == D + 75 * H
    assert changes == []


def test_a_late_reading_newer_than_the_last_does_not_set_a_timer_in_the_past(
    chf: CompiledPathway,
) -> None:
    state, _ = weight(chf, discharged(chf), D + 10 * H, D + 10 * H)
    assert state.timers[KEY] == D + 58 * H
    fired, _ = decide(
        chf, state, TimerInput(state.instance_id, KEY, D + 58 * H, D + 58 * H), D + 58 * H
    )
    assert fired is not None
    # taken after the last reading, but arriving after its own 48 h have passed
    after, changes = weight(chf, fired, D + 20 * H, D + 80 * H)
    assert after.timers[KEY] == D + 106 * H
    assert changes == []
    assert after.last_seen["observation.weight"] == D + 20 * H


def test_the_missing_data_audit_names_when_a_reading_was_last_seen(chf: CompiledPathway) -> None:
    state = discharged(chf)
    first, decision = decide(
        chf, state, TimerInput(state.instance_id, KEY, D + 48 * H, D + 48 * H), D + 48 * H
    )
    assert first is not None
    assert [(e.kind, dict(e.facts)) for e in decision.audit] == [
        ("missing-data", {"last_seen": None})
    ]
    later, _ = weight(chf, first, D + 50 * H, D + 50 * H)
    _, decision = decide(
        chf, later, TimerInput(state.instance_id, KEY, D + 98 * H, D + 98 * H), D + 98 * H
    )
    assert [(e.kind, dict(e.facts)) for e in decision.audit] == [
        ("missing-data", {"last_seen": (D + 50 * H).isoformat()})
    ]
