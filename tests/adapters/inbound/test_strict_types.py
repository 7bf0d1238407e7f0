"""Strict types on every channel: nothing is converted into what it was not.

One case per field kind and bad value: the JSON events (every field of every event model in
engine/catalogue/events.py), then the FHIR and HL7 v2 equivalents. `true` once became a 1.0 kg
weight (and a 79 kg "gain" that escalated); a number once became a Unix time.
"""

from __future__ import annotations

import copy
import json
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from adapters.inbound import ack, events_from_fhir, events_from_hl7, events_from_json
from engine.catalogue import Event
from engine.errors import InputError
from tests.adapters.inbound.test_hl7v2 import chf_a03, cr, msh

AT = "2026-03-11T07:30:00+00:00"
DATA: dict[str, dict[str, Any]] = {
    "encounter.discharged": {
        "encounter_id": "E-1",
        "diagnoses": ["I50.9"],
        "disposition": "06",
        "facility": "Riverside",
    },
    "encounter.admitted": {"encounter_id": "E-2", "diagnoses": ["I50.9"]},
    "observation.weight": {"value": 81.4, "unit": "kg"},
    "symptom.reported": {"symptom": "chest_pain"},
    "appointment.booked": {"appointment_id": "A-1", "kind": "follow_up", "start": AT},
    "task.acknowledged": {"task_id": "T-1", "by": "hf_nurse"},
    "foot_exam.completed": {
        "iwgdf_risk": 2,
        "active_ulcer": False,
        "infection": "none",
        "ischemia": False,
        "gangrene": False,
    },
    "condition.diagnosed": {"code": "E11.9"},
    "patient.deceased": {},
}


def event(event_type: str = "observation.weight", **data: Any) -> dict[str, Any]:
    return {
        "id": "ev-1",
        "type": event_type,
        "patient_id": "MRN-4711",
        "occurred_at": AT,
        "data": {**DATA[event_type], **data},
    }


def refused_json(document: Any) -> str:
    with pytest.raises(InputError) as info:
        events_from_json(json.dumps(document))
    return str(info.value)


# -- JSON: every field of every event model --------------------------------------------------------

NUMBER = "must be a JSON number, not "
WHOLE = "must be a whole JSON number, not "
BOOLEAN = "must be a JSON boolean, not "
STRING = "must be a JSON string, not "
ARRAY = "must be a JSON array, not "
TIME = "must be an ISO 8601 string with an offset (2026-03-11T07:30:00+01:00), not "

#: (event type, field, bad value, message). Booleans and strings are not numbers, numbers are
#: not strings or ids, 1 and "yes" are not booleans, a string is not a list, a number (or a
#: string of digits) is not a time.
DATA_CASES: list[tuple[str, str, Any, str]] = [
    # a number (observation.weight.value): an int is fine (below), nothing else
    ("observation.weight", "value", True, NUMBER + "true"),
    ("observation.weight", "value", False, NUMBER + "false"),
    ("observation.weight", "value", "80", NUMBER + "the string '80'"),
    ("observation.weight", "value", "80.5", NUMBER + "the string '80.5'"),
    ("observation.weight", "value", [80], NUMBER + "an array"),
    ("observation.weight", "value", {"kg": 80}, NUMBER + "an object"),
    ("observation.weight", "value", None, NUMBER + "null"),
    ("observation.weight", "value", 10**400, f"the number 1{'0' * 23}... is too large"),
    ("observation.weight", "unit", 1, "Input should be 'kg' or 'lb'"),
    ("observation.weight", "unit", True, "Input should be 'kg' or 'lb'"),
    # a whole number (foot_exam.completed.iwgdf_risk)
    ("foot_exam.completed", "iwgdf_risk", True, WHOLE + "true"),
    ("foot_exam.completed", "iwgdf_risk", "2", WHOLE + "the string '2'"),
    ("foot_exam.completed", "iwgdf_risk", 2.0, WHOLE + "the number 2.0"),
    ("foot_exam.completed", "iwgdf_risk", 2.5, WHOLE + "the number 2.5"),
    # booleans (active_ulcer, ischemia, gangrene)
    ("foot_exam.completed", "active_ulcer", 1, BOOLEAN + "the number 1"),
    ("foot_exam.completed", "active_ulcer", "true", BOOLEAN + "the string 'true'"),
    ("foot_exam.completed", "ischemia", 0, BOOLEAN + "the number 0"),
    ("foot_exam.completed", "ischemia", "no", BOOLEAN + "the string 'no'"),
    ("foot_exam.completed", "gangrene", "yes", BOOLEAN + "the string 'yes'"),
    ("foot_exam.completed", "gangrene", None, BOOLEAN + "null"),
    ("foot_exam.completed", "infection", 0, "Input should be 'none', 'mild', 'moderate' or ..."),
    # ids and text are strings, not numbers (4711 is not "4711")
    ("encounter.discharged", "encounter_id", 88001, STRING + "the number 88001"),
    ("encounter.discharged", "disposition", 6, STRING + "the number 6"),
    ("encounter.discharged", "facility", 5, STRING + "the number 5"),
    ("encounter.discharged", "facility", True, STRING + "true"),
    ("encounter.admitted", "encounter_id", ["E-2"], STRING + "an array"),
    ("appointment.booked", "appointment_id", 1, STRING + "the number 1"),
    ("appointment.booked", "kind", 1, "Input should be 'follow_up', 'home_visit', ..."),
    ("task.acknowledged", "task_id", 17, STRING + "the number 17"),
    ("task.acknowledged", "by", True, STRING + "true"),
    ("task.acknowledged", "pathway", 1, STRING + "the number 1"),
    ("task.acknowledged", "escalation", False, STRING + "false"),
    ("condition.diagnosed", "code", 250, STRING + "the number 250"),
    ("condition.diagnosed", "code", 50.9, STRING + "the number 50.9"),
    ("symptom.reported", "symptom", 1, "Input should be 'dyspnea_at_rest', ..."),
    # lists of codes are lists, of strings
    ("encounter.discharged", "diagnoses", "I50.9", ARRAY + "the string 'I50.9'"),
    ("encounter.discharged", "diagnoses", {"code": "I50.9"}, ARRAY + "an object"),
    ("encounter.admitted", "diagnoses[1]", ["I50.9", 428], STRING + "the number 428"),
    ("encounter.admitted", "diagnoses[0]", [True], STRING + "true"),
    # times are ISO 8601 strings with an offset, never a Unix time
    ("appointment.booked", "start", 1773214200, TIME + "the number 1773214200"),
    ("appointment.booked", "start", 1773214200.5, TIME + "the number 1773214200.5"),
    ("appointment.booked", "start", "1773214200", TIME + "the string '1773214200'"),
    ("appointment.booked", "start", True, TIME + "true"),
    ("appointment.booked", "start", "2026-03-16", "Input should have timezone info"),
    # no data where none is defined
    ("patient.deceased", "note", "x", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(
    ("event_type", "field", "value", "message"),
    DATA_CASES,
    ids=[f"{t}.{f}={v!r:.20}" for t, f, v, _ in DATA_CASES],
)
def test_json_data_fields_are_strict(event_type: str, field: str, value: Any, message: str) -> None:
    """`field` is where the problem is: `diagnoses[1]` for the second code of the list."""
    error = refused_json(event(event_type, **{field.split("[")[0]: value}))
    if message.endswith("..."):
        assert error.startswith(f"data.{field}: {message[:-3]}")
    else:
        assert error == f"data.{field}: {message}"


#: The envelope: ids are strings, the type a string, the time an ISO string, data an object.
EVENT_CASES: list[tuple[str, Any, str]] = [
    ("id", 1, STRING + "the number 1"),
    ("id", True, STRING + "true"),
    ("patient_id", 4711, STRING + "the number 4711"),
    ("patient_id", 4711.0, STRING + "the number 4711.0"),
    ("patient_id", ["MRN-4711"], STRING + "an array"),
    ("type", 7, STRING + "the number 7"),
    ("occurred_at", 1773214200, TIME + "the number 1773214200"),
    ("occurred_at", "1773214200", TIME + "the string '1773214200'"),
    ("occurred_at", False, TIME + "false"),
    ("occurred_at", "2026-03-11", "Input should have timezone info"),
    ("data", [], "must be a JSON object, not an array"),
    ("data", "value=80", "must be a JSON object, not the string 'value=80'"),
]


@pytest.mark.parametrize(("field", "value", "message"), EVENT_CASES)
def test_json_event_fields_are_strict(field: str, value: Any, message: str) -> None:
    assert refused_json({**event(), field: value}) == f"{field}: {message}"


@pytest.mark.parametrize(
    ("data", "stored"),
    [
        ({"value": 80}, {"value": 80.0, "unit": "kg"}),  # an int is the number it is
        ({"value": 80.5}, {"value": 80.5, "unit": "kg"}),
        ({"value": 185, "unit": "lb"}, {"value": 185.0, "unit": "lb"}),
    ],
)
def test_whole_numbers_are_numbers(data: dict[str, Any], stored: dict[str, Any]) -> None:
    (accepted,) = events_from_json(json.dumps(event(**data)))
    assert accepted.data == stored
    assert isinstance(accepted.data["value"], float)


def test_every_problem_of_a_bad_event_is_listed() -> None:
    error = refused_json(
        event("foot_exam.completed", iwgdf_risk="3", active_ulcer=1, gangrene="false")
    )
    assert error == (
        f"data.iwgdf_risk: {WHOLE}the string '3' (and 2 more: "
        f"data.active_ulcer: {BOOLEAN}the number 1; data.gangrene: {BOOLEAN}the string 'false')"
    )


@pytest.mark.parametrize(
    ("event_type", "data", "field"),
    [
        ("action.failed", {"action_id": 7, "action": "notify"}, "action_id"),
        ("action.failed", {"action_id": "a", "action": "notify", "error": 500}, "error"),
        ("action.succeeded", {"action_id": "a", "action": "notify", "reference": 1}, "reference"),
    ],
)
def test_engine_only_events_are_strict_too(
    event_type: str, data: dict[str, Any], field: str
) -> None:
    """Refused from senders (only the engine records them); the models are strict all the same."""
    with pytest.raises(ValidationError) as info:
        Event.model_validate({**event(), "type": event_type, "data": data})
    (error,) = info.value.errors()
    assert (error["loc"], error["type"]) == (("data", field), "string_type")


def test_the_weight_that_escalated_is_refused() -> None:
    """The tester's case: `true` for a weight became 1.0 kg, then a 79 kg 'gain'."""
    readings = [event(value=80.1), {**event(value=True), "id": "ev-2"}]
    assert refused_json(readings) == f"[1].data.value: {NUMBER}true"


# -- FHIR: the same kinds, as FHIR JSON writes them -----------------------------------------------

UCUM = "http://unitsofmeasure.org"
KIND = "urn:carepath:appointment-kind"


def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "w-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/MRN-4711"},
        "effectiveDateTime": AT,
        "valueQuantity": {"value": 81.4, "unit": "kg", "system": UCUM, "code": "kg"},
    }


def encounter() -> dict[str, Any]:
    return {
        "resourceType": "Encounter",
        "id": "enc-1",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/MRN-4711"},
        "period": {"start": "2026-03-05T14:00:00+00:00", "end": "2026-03-10T09:15:00+00:00"},
        "reasonCode": [{"coding": [{"system": "http://snomed.info/sct", "code": "42343007"}]}],
        "diagnosis": [{"condition": {"reference": "Condition/dx1"}, "rank": 1}],
        "hospitalization": {
            "dischargeDisposition": {
                "coding": [
                    {"system": "https://www.nubc.org/CodeSystem/PatDischargeStatus", "code": "06"}
                ]
            }
        },
    }


def appointment() -> dict[str, Any]:
    return {
        "resourceType": "Appointment",
        "id": "ap-1",
        "meta": {"lastUpdated": "2026-03-11T10:00:00+00:00"},
        "status": "booked",
        "appointmentType": {"coding": [{"system": KIND, "code": "follow_up"}]},
        "start": "2026-03-16T09:00:00Z",
        "end": "2026-03-16T09:30:00Z",
        "minutesDuration": 30,
        "participant": [{"actor": {"reference": "Patient/MRN-4711"}, "status": "accepted"}],
    }


def patient_bundle(**patient: Any) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "Patient", "id": "MRN-4711", **patient}},
            {"resource": observation()},
        ],
    }


def changed(resource: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """`resource` with the element at `path` ('valueQuantity.value', 'diagnosis.0.rank') set."""
    out = copy.deepcopy(resource)
    *parents, last = path.split(".")
    node: Any = out
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return out


WEIGHT = "Observation.valueQuantity.value"
#: (id, resource, element, bad value, location, message): what fhir.resources itself refuses (with
#: its message made precise) and what it would convert, which we refuse.
FHIR_CASES: list[tuple[str, dict[str, Any], str, Any, str, str]] = [
    # decimal: not a boolean, not a string (it would parse "80"), not an array
    ("decimal-true", observation(), "valueQuantity.value", True, WEIGHT, NUMBER + "true"),
    (
        "decimal-string",
        observation(),
        "valueQuantity.value",
        "80",
        WEIGHT,
        NUMBER + "the string '80'",
    ),
    ("decimal-array", observation(), "valueQuantity.value", [80], WEIGHT, NUMBER + "an array"),
    # integer types: not 1.0, not a string, not a boolean
    (
        "integer-float",
        encounter(),
        "diagnosis.0.rank",
        1.0,
        "Encounter.diagnosis[0].rank",
        WHOLE + "the number 1.0",
    ),
    (
        "integer-string",
        appointment(),
        "minutesDuration",
        "30",
        "Appointment.minutesDuration",
        NUMBER + "the string '30'",
    ),
    (
        "integer-true",
        appointment(),
        "minutesDuration",
        True,
        "Appointment.minutesDuration",
        NUMBER + "true",
    ),
    # strings (ids, codes, references) are not numbers
    ("id-number", observation(), "id", 123, "Observation.id", STRING + "the number 123"),
    (
        "code-number",
        encounter(),
        "hospitalization.dischargeDisposition.coding.0.code",
        6,
        "Encounter.hospitalization.dischargeDisposition.coding[0].code",
        STRING + "the number 6",
    ),
    (
        "reference-number",
        observation(),
        "subject.reference",
        4711,
        "Observation.subject.reference",
        STRING + "the number 4711",
    ),
    # dateTime, instant: never a number, which it would read as a Unix time
    (
        "dateTime-unix",
        observation(),
        "effectiveDateTime",
        1773214200,
        "Observation.effectiveDateTime",
        STRING + "the number 1773214200",
    ),
    (
        "period-unix",
        encounter(),
        "period.end",
        1773214200,
        "Encounter.period.end",
        STRING + "the number 1773214200",
    ),
    (
        "start-unix",
        appointment(),
        "start",
        1773214200,
        "Appointment.start",
        STRING + "the number 1773214200",
    ),
    (
        "dateTime-true",
        observation(),
        "effectiveDateTime",
        True,
        "Observation.effectiveDateTime",
        "must be an ISO 8601 string, not true",
    ),
    # complex elements are objects: never a string it would parse as JSON (another patient)
    (
        "reference-json-string",
        observation(),
        "subject",
        json.dumps({"reference": "Patient/OTHER"}),
        "Observation.subject",
        'must be a JSON object, not the string \'{"reference": "Patient/OTHER"}\'',
    ),
    (
        "quantity-array",
        observation(),
        "valueQuantity",
        [{"value": 80}],
        "Observation.valueQuantity",
        "must be a JSON object (Quantity), not an array",
    ),
    # arrays are arrays
    (
        "coding-object",
        observation(),
        "code.coding",
        {"system": "http://loinc.org", "code": "29463-7"},
        "Observation.code.coding",
        ARRAY + "an object",
    ),
    (
        "coding-json-string",
        observation(),
        "code.coding",
        '[{"system": "http://loinc.org"}]',
        "Observation.code.coding",
        ARRAY + 'the string \'[{"system": "http://loinc.org"}]\'',
    ),
]


@pytest.mark.parametrize(
    ("resource", "path", "value", "location", "message"),
    [case[1:] for case in FHIR_CASES],
    ids=[case[0] for case in FHIR_CASES],
)
def test_fhir_elements_are_strict(
    resource: dict[str, Any], path: str, value: Any, location: str, message: str
) -> None:
    with pytest.raises(InputError) as info:
        events_from_fhir(changed(resource, path, value))
    assert (info.value.location, str(info.value)) == (location, f"{location}: {message}")


@pytest.mark.parametrize(
    ("patient", "message"),
    [
        ({"active": 1}, BOOLEAN + "the number 1"),
        ({"active": "true"}, BOOLEAN + "the string 'true'"),
        ({"birthDate": 19480212}, "must be an ISO 8601 string, not the number 19480212"),
        ({"birthDate": 0}, STRING + "the number 0"),  # 1970-01-01 to fhir.resources
        ({"name": [{"given": "Jane"}]}, ARRAY + "the string 'Jane'"),
    ],
)
def test_context_entries_are_strict_too(patient: dict[str, Any], message: str) -> None:
    with pytest.raises(InputError) as info:
        events_from_fhir(patient_bundle(**patient))
    location, _ = str(info.value).split(": ", 1)
    assert str(info.value) == f"{location}: {message}"
    assert location.startswith("Bundle.entry[0].resource.")


def test_fhir_whole_numbers_are_decimals() -> None:
    (accepted,) = events_from_fhir(changed(observation(), "valueQuantity.value", 80))
    assert accepted.data == {"value": 80.0, "unit": "kg"}


# -- HL7 v2: every value is text; what is read must be exactly what HL7 writes ---------------------

LONDON = ZoneInfo("Europe/London")


def a03(msh18: str = "", pv1_45: str = "20260310091500", facility: str = "RIVERSIDE") -> str:
    """The synthetic CHF discharge of test_hl7v2.py, with MSH-18, PV1-45 and the facility set."""
    header = msh(f18=msh18) if msh18 else msh()
    return cr(chf_a03(msh=header, pv1={3: f"CARD^12^B^{facility}", 45: pv1_45}))


def refused_hl7(message: str | bytes) -> str:
    with pytest.raises(InputError) as info:
        events_from_hl7(message, default_tz=LONDON)
    return str(info.value)


@pytest.mark.parametrize(
    ("pv1_45", "expected"),
    [
        ("1773214200", "PV1-45: not a valid date and time: '1773214200'"),  # a Unix time
        ("2026-03-10T09:15:00Z", "PV1-45: not an HL7 timestamp: '2026-03-10T09:15:00Z'"),
        ("20260310 0915", "PV1-45: not an HL7 timestamp: '20260310 0915'"),
        ("true", "PV1-45: not an HL7 timestamp: 'true'"),
        (
            "202603",
            "PV1-45: timestamp '202603' is too coarse for an event time (at least YYYYMMDD)",
        ),
    ],
)
def test_hl7_times_are_hl7_timestamps(pv1_45: str, expected: str) -> None:
    assert refused_hl7(a03(pv1_45=pv1_45)) == expected


def test_the_a03_used_here_maps() -> None:
    (accepted,) = events_from_hl7(a03(), default_tz=LONDON)
    assert accepted.data["facility"] == "RIVERSIDE"


# The character set: as MSH-18 declares it, strictly; UTF-8 when it declares none.
CITTA = "CITT\u00c0"


@pytest.mark.parametrize(
    ("msh18", "encoding"),
    [
        ("", "utf-8"),
        ("UNICODE UTF-8", "utf-8"),
        ("8859/1", "latin-1"),
        ("8859/15", "iso8859-15"),
        ("8859/7", "iso8859-7"),
        ("unicode  utf-8", "utf-8"),  # case and spacing as senders write them
    ],
)
def test_hl7_is_read_in_the_declared_character_set(msh18: str, encoding: str) -> None:
    facility = "\u0391\u0398\u0397\u039d\u0391" if encoding == "iso8859-7" else CITTA
    (accepted,) = events_from_hl7(a03(msh18, facility=facility).encode(encoding), default_tz=LONDON)
    assert accepted.data["facility"] == facility


LATIN1 = a03(facility=CITTA).encode("latin-1")
ASCII_UTF8 = a03("ASCII", facility=CITTA).encode("utf-8")
UNDEFINED = a03("8859/8", facility="X").encode("ascii").replace(b"^X|", b"^\xff|")


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            LATIN1,
            f"MSH-18: not UTF-8 (byte {LATIN1.index(0xC0)}): invalid start byte (0xc0); MSH-18 "
            "declares no other character set",
        ),
        (
            ASCII_UTF8,
            f"MSH-18: not ASCII, the character set MSH-18 declares (byte {ASCII_UTF8.index(0xC3)}"
            "): ordinal not in range(128) (0xc3)",
        ),
        (
            UNDEFINED,
            "MSH-18: not 8859/8, the character set MSH-18 declares (byte "
            f"{UNDEFINED.index(0xFF)}): character maps to <undefined> (0xff)",
        ),
        (
            a03("UNICODE UTF-16", facility="X").encode("ascii"),
            "MSH-18: character set 'UNICODE UTF-16' is not one Carepath reads (ASCII, 8859/1, ",
        ),
        (
            a03("ISO IR87", facility="X").encode("ascii"),
            "MSH-18: character set 'ISO IR87' is not one Carepath reads (ASCII, 8859/1, ",
        ),
        (
            b"\xef\xbb\xbf" + a03("8859/1", facility=CITTA).encode("utf-8"),
            "MSH-18: the message starts with a UTF-8 byte-order mark but declares 8859/1",
        ),
        (
            b"\x0b" + LATIN1 + b"\x1c\r",  # MLLP framing counts in the offset
            f"MSH-18: not UTF-8 (byte {LATIN1.index(0xC0) + 1}): ",
        ),
    ],
    ids=[
        "undeclared-latin1",
        "ascii-with-utf8",
        "undefined-byte",
        "utf16",
        "jis",
        "bom-8859",
        "mllp",
    ],
)
def test_hl7_character_sets_are_honoured_or_refused_by_name(message: bytes, expected: str) -> None:
    assert refused_hl7(message).startswith(expected)


def test_a_nak_for_an_undecodable_message_replaces_nothing() -> None:
    message = a03(facility=CITTA).encode("latin-1").replace(b"|ADTSYS|", b"|ADT\xdfSYS|")
    answer = ack(message, "AE", "MSH-18: not UTF-8")
    assert "\ufffd" not in answer
    header = answer.split("\r")[0].split("|")
    assert header[2:6] == ["CAREPATH", "CAREPATH", "", "RIVERSIDE"]  # ADT\xdfSYS: not echoed
    assert answer.split("\r")[1] == "MSA|AE|CP-A03-0001|MSH-18: not UTF-8"
