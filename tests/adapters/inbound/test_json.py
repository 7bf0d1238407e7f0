"""JSON events: one object or a list, every problem located by index and field."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.inbound import events_from_json
from engine.catalogue import Event
from engine.errors import InputError


def weight(n: int = 1, value: Any = 81.4) -> dict[str, Any]:
    return {
        "id": f"w-{n}",
        "type": "observation.weight",
        "patient_id": "MRN-4711",
        "occurred_at": "2026-03-11T07:30:00+00:00",
        "data": {"value": value, "unit": "kg"},
    }


def refused(payload: str | bytes) -> InputError:
    with pytest.raises(InputError) as info:
        events_from_json(payload)
    return info.value


def test_one_event_object() -> None:
    (event,) = events_from_json(json.dumps(weight()))
    assert event == Event(
        id="w-1",
        type="observation.weight",
        patient_id="MRN-4711",
        occurred_at=datetime(2026, 3, 11, 7, 30, tzinfo=UTC),
        data={"value": 81.4, "unit": "kg"},
    )


def test_a_list_bytes_and_a_byte_order_mark() -> None:
    payload = json.dumps(
        [weight(1), weight(2), {**weight(3), "type": "patient.deceased", "data": {}}]
    )
    events = events_from_json(b"\xef\xbb\xbf" + payload.encode())
    assert [e.id for e in events] == ["w-1", "w-2", "w-3"]
    assert events_from_json("[]") == []
    assert events_from_json("\ufeff" + payload) == events


def test_problems_are_located_by_index_and_field() -> None:
    error = refused(json.dumps([weight(1), weight(2), weight(3, value=-1)]))
    assert str(error) == "[2].data.value: Input should be greater than 0"
    assert error.location == "[2].data.value"


def test_every_problem_of_every_event_is_listed() -> None:
    bad_type = {**weight(4), "type": "weight.taken"}
    error = refused(json.dumps([weight(1), weight(2, value="heavy"), weight(3), bad_type]))
    assert error.location == "[1].data.value"
    assert str(error).startswith(
        "[1].data.value: must be a JSON number, not the string 'heavy' "
        "(and 1 more: [3].type: unknown event type 'weight.taken' (known: action.failed, "
    )


def test_a_single_object_has_no_index() -> None:
    event = weight()
    del event["patient_id"]
    assert str(refused(json.dumps(event))) == "patient_id: Field required"


@pytest.mark.parametrize(
    ("occurred_at", "expected"),
    [
        ("2026-03-11T07:30:00", "occurred_at: Input should have timezone info"),
        (1773214200, "occurred_at: must be an ISO 8601 string with an offset"),
        ("yesterday", "occurred_at: Input should be a valid datetime or date, "),
    ],
)
def test_occurred_at_needs_an_offset(occurred_at: Any, expected: str) -> None:
    assert str(refused(json.dumps({**weight(), "occurred_at": occurred_at}))).startswith(expected)


def test_engine_only_events_are_refused() -> None:
    failed = {
        **weight(),
        "type": "action.failed",
        "data": {"action_id": "a-1", "action": "escalate", "error": "smtp down"},
    }
    assert str(refused(json.dumps([weight(), failed]))) == (
        "[1].type: 'action.failed' is recorded by the engine only"
    )


def test_extra_and_missing_data_fields() -> None:
    event = {**weight(), "data": {"value": 81.4, "unit": "stone"}}
    assert str(refused(json.dumps(event))) == "data.unit: Input should be 'kg' or 'lb'"
    event = {**weight(), "data": {"value": 81.4, "unit": "kg", "scale": "bt-3"}}
    assert str(refused(json.dumps(event))) == "data.scale: Extra inputs are not permitted"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        ("", "not valid JSON: Expecting value (line 1, column 1)"),
        ('{"id": "x",', "not valid JSON: Expecting property name enclosed in double quotes "),
        ("42", "expected an event object or a list of them, not a number"),
        ('"event"', "expected an event object or a list of them, not a string"),
        ("null", "expected an event object or a list of them, not null"),
        ("[1, true]", "[0]: an event is a JSON object, not a number (and 1 more: [1]: an event"),
        (b"\xff{}", "not UTF-8 (byte 0)"),
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep (line 1, column 65)"),
    ],
)
def test_not_events(payload: str | bytes, expected: str) -> None:
    assert str(refused(payload)).startswith(expected)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
EVENTISH = st.fixed_dictionaries(
    {
        "id": st.text(max_size=5) | JSON,
        "type": st.sampled_from(["observation.weight", "patient.deceased", "task.acknowledged"])
        | JSON,
        "patient_id": st.just("p") | JSON,
        "occurred_at": st.sampled_from(["2026-03-11T07:30:00Z", "2026-03-11"]) | JSON,
        "data": JSON,
    }
)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), JSON.map(json.dumps)))
def test_anything_raises_only_input_error(payload: str | bytes) -> None:
    try:
        events = events_from_json(payload)
    except InputError as error:
        assert str(error)
    else:
        assert all(isinstance(e, Event) for e in events)


@settings(max_examples=200, deadline=None)
@given(st.lists(EVENTISH, max_size=3) | EVENTISH)
def test_eventish_objects_raise_only_input_error(document: Any) -> None:
    try:
        events_from_json(json.dumps(document))
    except InputError as error:
        assert str(error)


def test_lone_surrogates_are_not_text() -> None:
    error = refused('{"id": "\\ud800", "type": "patient.deceased"}')
    assert str(error) == "contains '\\ud800', which is not text"
