"""InstanceState.copy is built field by field (it is on the hot path): it must carry every field,
and changing the copy the way the core does must leave the original as it was."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from engine.core.facts import remember
from engine.core.moments import fixed
from engine.core.state import InstanceState, OpenChain

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _state() -> InstanceState:
    return InstanceState(
        instance_id="i-1",
        pathway_key="chf-post-discharge@1",
        patient_id="pt-1",
        enrolled_at=T0,
        active=True,
        exit_reason="why",
        actions_count=7,
        readings={"observation.weight": [(T0, 80.0), (T0 + timedelta(days=1), 80.5)]},
        last_seen={"observation.weight": T0 + timedelta(days=1)},
        booked={"follow_up"},
        attended={"home_visit"},
        fired={"outreach_call"},
        chains={"weight_gain": OpenChain(1, ("i-1.3",), "weight_gain_24h", False, "r")},
        timers={"missing:missing_weights": T0 + timedelta(days=3)},
    )


def test_copy_carries_every_field() -> None:
    state = _state()
    copy = state.copy()
    assert copy == state
    for f in dataclasses.fields(InstanceState):
        assert getattr(copy, f.name) == getattr(state, f.name), f.name
    assert copy.as_dict() == state.as_dict()


def test_changing_a_copy_as_the_core_does_leaves_the_original() -> None:
    state = _state()
    before = state.as_dict()
    copy = state.copy()
    remember(copy, "observation.weight", T0 + timedelta(days=2), 81.0, 14 * 86400)
    remember(copy, "observation.weight", T0 + timedelta(days=30), 82.0, 14 * 86400)
    copy.last_seen["observation.weight"] = T0 + timedelta(days=30)
    copy.booked.add("foot_screening")
    copy.attended.add("follow_up")
    copy.fired.add("notify")
    copy.chains["weight_gain"].level = 2
    copy.chains["red_flag"] = OpenChain(1, ("i-1.9",), "red", True, "r2")
    copy.timers["exit:completed"] = T0
    copy.actions_count += 1
    assert state.as_dict() == before
    assert copy.readings["observation.weight"] == [(T0 + timedelta(days=30), 82.0)]


def test_remember_keeps_readings_in_time_order_after_equal_times() -> None:
    state = _state()
    at = T0 + timedelta(days=1)
    remember(state, "observation.weight", at, 79.0, 14 * 86400)
    assert state.readings["observation.weight"] == [(T0, 80.0), (at, 80.5), (at, 79.0)]


def test_fixed_keeps_the_instant_and_the_offset() -> None:
    plus2 = datetime.fromisoformat("2026-03-06T23:00:00+02:00")
    again = fixed(plus2)
    assert again == plus2
    assert again.isoformat() == plus2.isoformat()
    assert again.weekday() == plus2.weekday()
    assert fixed(datetime.fromisoformat("2026-03-07T01:00:00+02:00")).tzinfo is again.tzinfo
    assert fixed(datetime.fromisoformat("2026-03-07T01:00:00+00:00")).tzinfo is UTC


def test_fixed_relabels_event_offsets_and_leaves_zones_alone() -> None:
    from zoneinfo import ZoneInfo

    from engine.catalogue import Event

    event = Event.model_validate(
        {
            "id": "e",
            "type": "patient.deceased",
            "patient_id": "p",
            "occurred_at": "2026-03-06T23:00:00-05:00",
            "data": {},
        }
    )
    again = fixed(event.occurred_at)
    assert again == event.occurred_at and again.isoformat() == event.occurred_at.isoformat()
    paris = datetime(2026, 3, 29, 1, 0, tzinfo=ZoneInfo("Europe/Paris"))
    assert fixed(paris) is paris
