"""HL7 v2 ADT into events: every public sample, the quirks of PARSE_NOTES.md made on the fly,
a synthetic CHF discharge, and precise errors for malformed messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.inbound import events_from_hl7
from engine.catalogue import Event
from engine.errors import InputError

LONDON = ZoneInfo("Europe/London")


def seg(name: str, fields: dict[int, str]) -> str:
    """A segment with the given fields set (1-based), the others empty."""
    values = [""] * max(fields)
    for n, value in fields.items():
        values[n - 1] = value
    return "|".join([name, *values])


def msh(control: str = "CP-A03-0001", kind: str = "ADT^A03^ADT_A03", **extra: str) -> str:
    fields = {
        3: "ADTSYS",
        4: "RIVERSIDE",
        5: "CAREPATH",
        6: "CAREPATH",
        7: "20260310093000",
        9: kind,
        10: control,
        11: "P",
        12: "2.5.1",
    }
    fields.update({int(k.removeprefix("f")): v for k, v in extra.items()})
    # MSH-1 is the separator itself: field n is at position n-1 after "MSH|"
    values = [""] * max(fields)
    values[0] = "^~\\&"
    for n, value in fields.items():
        if n >= 3:
            values[n - 2] = value
    return "MSH|" + "|".join(values)


PV1_CHF = {
    2: "I",
    3: "CARD^12^B^RIVERSIDE",
    19: "V-88001^^^RIVERSIDE^VN",
    36: "06",
    44: "20260305140000",
    45: "20260310091500",
}


def chf_a03(**overrides: Any) -> list[str]:
    """A CHF discharge (synthetic; written for these tests): DG1 I50.9, PV1-36 06."""
    pv1 = {**PV1_CHF, **overrides.get("pv1", {})}
    return [
        overrides.get("msh", msh()),
        "EVN|A03|20260310093000||||20260310091600",
        "PID|1||MRN-4711^^^RIVERSIDE^MR~9434765919^^^NHS^NH||DOE^JANE||19480212|F",
        seg("PV1", pv1),
        "DG1|1|I10|I50.9^Heart failure, unspecified^I10||20260305|A",
        "DG1|2|I10|E11.9^Type 2 diabetes mellitus without complications^I10||20260305|S",
        "DG1|3|SCT|42343007^Congestive heart failure^SCT||20260305|S",
        "DG1|4|I10|I50.9^Heart failure, unspecified^I10||20260305|F",
    ]


def cr(lines: list[str]) -> str:
    return "\r".join(lines) + "\r"


def one(message: str | bytes, **kwargs: Any) -> Event:
    events = events_from_hl7(message, default_tz=kwargs.pop("tz", LONDON), **kwargs)
    assert len(events) == 1
    return events[0]


def refused(message: str | bytes, **kwargs: Any) -> InputError:
    with pytest.raises(InputError) as info:
        events_from_hl7(message, default_tz=LONDON, **kwargs)
    return info.value


# -- the public samples ----------------------------------------------------------------------------

PLUS7 = timezone(timedelta(hours=7))

#: What each sample in ../shared/samples/hl7v2 becomes (the default A04 policy: "admit").
SAMPLES: dict[str, dict[str, Any] | None] = {
    "01_adt_a01_v23_pid_pv1_dg1_python-hl7.hl7": {
        "id": "hl7v2:HNAM_PM^HNA500:Q150084616T145947960:A01",
        "type": "encounter.admitted",
        "patient_id": "2148790",
        "occurred_at": datetime(2014, 2, 10, 22, 53, tzinfo=LONDON),  # PV1-44, naive; no EVN
        "data": {"encounter_id": "01", "diagnoses": ["440.21"]},  # ICD-9, passed on as sent
    },
    "02_adt_a04_v25_vinah_python-hl7.hl7": {
        "id": "hl7v2:^ABCHS:12334456778890:A04",
        "type": "encounter.admitted",
        "patient_id": "0000112234",
        "occurred_at": datetime(2006, 7, 5, tzinfo=LONDON),  # EVN-2, naive, summer time
        "data": {"encounter_id": "hl7v2-msg:^ABCHS:12334456778890", "diagnoses": []},
    },
    "03_adt_a01_v23_dg1_fhirconverter_ADT01-23.hl7": {
        "id": "hl7v2:AccMgr^1:599102:A01",
        "type": "encounter.admitted",
        "patient_id": "10006579",
        "occurred_at": datetime(2005, 1, 10, 4, 55, 2, tzinfo=PLUS7),
        "data": {"encounter_id": "40007716", "diagnoses": ["71596"]},  # trailing spaces gone
    },
    "04_adt_a01_v251_hl7std_everyman_fhirconverter_ADT01-28.hl7": {
        "id": "hl7v2:ADT1^GOOD HEALTH HOSPITAL:MSG00001:A01",
        "type": "encounter.admitted",
        "patient_id": "PATID1234",
        "occurred_at": datetime(2007, 8, 18, 11, 23, tzinfo=PLUS7),  # EVN-2: no PV1-44
        "data": {
            "encounter_id": "hl7v2-msg:ADT1^GOOD HEALTH HOSPITAL:MSG00001",
            "diagnoses": [],
        },
    },
    "05_adt_a04_v23_fhirconverter_ADT04-23.hl7": {
        "id": "hl7v2:NES^NINTENDO:Q123456789T123456789X123456:A04",
        "type": "encounter.admitted",
        "patient_id": "123456789",
        "occurred_at": datetime(2001, 1, 1, tzinfo=PLUS7),
        "data": {"encounter_id": "0123456789", "diagnoses": []},
    },
    "07_adt_a08_v28_kitchensink_dg1_fhirconverter_ADT-A08-01.hl7": None,  # A08: ignored
    "08_adt_a03_v25_hapi_adt_a03.hl7": {
        "id": "hl7v2:IRIS^SANTER:263206:A03",
        "type": "encounter.discharged",
        "patient_id": "5520255",
        "occurred_at": datetime(2008, 3, 3, 15, 8, tzinfo=LONDON),  # PV1-45, naive
        # PV1-36 empty; PV1-3 has no facility component: MSH-4
        "data": {"encounter_id": "2008003369", "diagnoses": [], "facility": "SANTER"},
    },
    "09_adt_a01_v24_epic_uclh_emap_A01.hl7": {
        "id": "hl7v2:EPIC^UCLH:31644:A01",
        "type": "encounter.admitted",
        "patient_id": "40800000",
        "occurred_at": datetime(2013, 2, 11, 10, 0, 52, tzinfo=LONDON),
        "data": {"encounter_id": "123412341234", "diagnoses": []},
    },
    "11_adt_a04_v24_epic_uclh_emap_A04.hl7": {
        "id": "hl7v2:EPIC^UCLH:31644:A04",  # same MSH-10 as 09: the trigger keeps them apart
        "type": "encounter.admitted",
        "patient_id": "40800000",
        "occurred_at": datetime(2013, 2, 11, 10, 0, 52, tzinfo=LONDON),
        "data": {"encounter_id": "123412341234", "diagnoses": []},
    },
}
KITCHEN_SINK_A03 = "06_adt_a03_v28_kitchensink_dg1_fhirconverter_ADT-A03-01.hl7"


def variants(raw: bytes) -> dict[str, str | bytes]:
    """The sample as stored (CR), and as the originals came: LF, CRLF, BOM-prefixed."""
    text = raw.decode("utf-8")
    lf = text.replace("\r", "\n")
    return {
        "cr-bytes": raw,
        "cr-str": text,
        "lf": lf,
        "crlf-bytes": text.replace("\r", "\r\n").encode(),
        "bom-lf-bytes": b"\xef\xbb\xbf" + lf.encode(),
        "bom-str": "\ufeff" + text,
        "mllp-framed": b"\x0b" + raw + b"\x1c\r",
        "blank-lines": lf.replace("\n", "\n\n  \n"),
    }


def sample(shared_samples: Path, name: str) -> bytes:
    path = shared_samples / "hl7v2" / name
    if not path.is_file():
        pytest.skip(f"sample {name} not in {path.parent}")
    return path.read_bytes()


def expected_event(spec: dict[str, Any]) -> Event:
    return Event.model_validate(spec)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_sample_maps_in_every_framing(shared_samples: Path, name: str) -> None:
    raw = sample(shared_samples, name)
    spec = SAMPLES[name]
    for variant, message in variants(raw).items():
        events = events_from_hl7(message, default_tz=LONDON)
        if spec is None:
            assert events == [], variant
        else:
            assert events == [expected_event(spec)], variant


def test_a04_policy_decides_what_a_registration_is(shared_samples: Path) -> None:
    outpatient = sample(shared_samples, "05_adt_a04_v23_fhirconverter_ADT04-23.hl7")  # PV1-2 O
    assert one(outpatient, a04_policy="admit").type == "encounter.admitted"
    assert events_from_hl7(outpatient, default_tz=LONDON, a04_policy="admit_inpatient") == []
    assert events_from_hl7(outpatient, default_tz=LONDON, a04_policy="ignore") == []
    inpatient = cr([msh(kind="ADT^A04", f10="R-1"), "PID|1||P-1", seg("PV1", {2: "I"})])
    assert one(inpatient, a04_policy="admit_inpatient").type == "encounter.admitted"
    assert events_from_hl7(inpatient, default_tz=LONDON, a04_policy="ignore") == []


def test_the_kitchen_sink_a03_free_text_disposition_is_refused(shared_samples: Path) -> None:
    raw = sample(shared_samples, KITCHEN_SINK_A03)
    error = refused(raw)
    assert error.location == "PV1-36"
    assert str(error) == (
        "PV1-36: discharge disposition 'Admitted as Inpatient' is not a code "
        "(HL7 table 0112 / UB-04, e.g. '01' home, '06' home health)"
    )


def test_the_kitchen_sink_a03_with_a_coded_disposition(shared_samples: Path) -> None:
    """Everything else in that message is read: MSH-9 A03 beats EVN-1 A01, the odd +0110
    offset of PV1-45 is kept, the SNOMED DG1 code, PV1-3's facility, PV1-19's CX.1."""
    text = sample(shared_samples, KITCHEN_SINK_A03).decode()
    text = text.replace("|Admitted as Inpatient^Sample^ACR|", "|09^Admitted as inpatient^HL70112|")
    event = one(text.replace("\r", "\n"))
    assert event == Event(
        id="hl7v2:ADTApp^GHHSFacility:MSG00001:A03",
        type="encounter.discharged",
        patient_id="PATID1234",
        occurred_at=datetime(2015, 2, 9, 11, 34, 19, tzinfo=timezone(timedelta(minutes=70))),
        data={
            "encounter_id": "40007716",
            "diagnoses": ["422504002"],
            "disposition": "09",
            "facility": "HOMERTON UNIVER",
        },
    )
    assert event.occurred_at.utcoffset() == timedelta(hours=1, minutes=10)


# -- a CHF discharge -------------------------------------------------------------------------------


def test_chf_discharge_with_home_health() -> None:
    event = one(cr(chf_a03()))
    assert event == Event(
        id="hl7v2:ADTSYS^RIVERSIDE:CP-A03-0001:A03",
        type="encounter.discharged",
        patient_id="MRN-4711",
        occurred_at=datetime(2026, 3, 10, 9, 15, tzinfo=UTC),  # PV1-45, London in winter
        data={
            "encounter_id": "V-88001",
            "diagnoses": ["I50.9", "E11.9", "42343007"],  # every DG1, in order, no repeats
            "disposition": "06",
            "facility": "RIVERSIDE",
        },
    )


def test_naive_times_are_read_in_the_configured_zone() -> None:
    new_york = ZoneInfo("America/New_York")
    event = one(cr(chf_a03()), tz=new_york)
    assert event.occurred_at == datetime(2026, 3, 10, 9, 15, tzinfo=new_york)
    summer = one(cr(chf_a03(pv1={45: "20260710091500"})))
    assert summer.occurred_at.utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    ("pv1", "evn", "expected"),
    [
        ({45: '""'}, "EVN|A03|20260310093000||||20260310091600", datetime(2026, 3, 10, 9, 16)),
        ({45: ""}, "EVN|A03|20260310093000||||", datetime(2026, 3, 10, 9, 30)),
        ({45: ""}, None, datetime(2026, 3, 10, 9, 30)),  # no EVN at all: MSH-7
        ({45: "20260310091500^M"}, None, datetime(2026, 3, 10, 9, 15)),  # TS with precision
        ({45: "20260310"}, None, datetime(2026, 3, 10)),  # day precision: start of the day
        ({45: "20260310091530.25+0000"}, None, datetime(2026, 3, 10, 9, 15, 30, 250000)),
    ],
)
def test_discharge_time_falls_back_through_evn_to_msh(
    pv1: dict[int, str], evn: str | None, expected: datetime
) -> None:
    lines = chf_a03(pv1=pv1)
    lines = [line for line in lines if not line.startswith("EVN")]
    if evn is not None:
        lines.insert(1, evn)
    got = one(cr(lines)).occurred_at
    assert got == expected.replace(tzinfo=got.tzinfo)
    assert got.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("6", "06"), ("1", "01"), ("01", "01"), ("19", "19"), ("06^Home health^HL70112", "06")],
)
def test_disposition_is_a_two_digit_string(value: str, expected: str) -> None:
    assert one(cr(chf_a03(pv1={36: value}))).data["disposition"] == expected


@pytest.mark.parametrize("value", ["", '""', "  "])
def test_no_disposition(value: str) -> None:
    assert "disposition" not in one(cr(chf_a03(pv1={36: value}))).data


def test_a_resent_message_is_the_same_event_and_another_sender_is_not() -> None:
    first = one(cr(chf_a03()))
    assert one(cr(chf_a03())).id == first.id
    other = one(cr(chf_a03(msh=msh(f3="OTHERSYS"))))
    assert other.id != first.id
    no_visit = chf_a03(pv1={19: ""})
    assert one(cr(no_visit)).data["encounter_id"] == "hl7v2-msg:ADTSYS^RIVERSIDE:CP-A03-0001"
    assert one(cr(no_visit)).data["encounter_id"] == one(cr(no_visit)).data["encounter_id"]


def test_a_very_long_control_id_gives_a_hashed_id_within_bounds() -> None:
    event = one(cr(chf_a03(msh=msh(control="X" * 150), pv1={19: ""})))
    assert len(event.id) <= 128 and event.id.startswith("hl7v2:#")
    assert len(event.data["encounter_id"]) <= 128
    assert one(cr(chf_a03(msh=msh(control="X" * 150)))).id == event.id


def test_escapes_and_custom_separators() -> None:
    lines = chf_a03(pv1={3: r"CARD^12^B^ST JOHN\T\ST MARY"})
    assert one(cr(lines)).data["facility"] == "ST JOHN&ST MARY"
    custom = cr([line.replace("|", "#").replace("^", "!") for line in chf_a03()])
    event = one(custom)
    assert event.data["encounter_id"] == "V-88001"
    assert event.data["diagnoses"] == ["I50.9", "E11.9", "42343007"]


def test_trigger_from_msh_not_evn_and_evn_only_as_a_last_resort() -> None:
    lines = chf_a03()
    lines[1] = "EVN|A01|20260310093000"
    assert one(cr(lines)).type == "encounter.discharged"
    lines[0] = msh(kind="ADT")
    lines[1] = "EVN|A03|20260310093000"
    assert one(cr(lines)).type == "encounter.discharged"


def test_a_line_feed_inside_a_field_stays_in_the_field() -> None:
    lines = chf_a03()
    lines.append("NTE|1||patient lives alone\nneeds scales\nPV1 check at home")
    assert one(cr(lines)).data["encounter_id"] == "V-88001"


def test_z_segments_and_other_segments_are_tolerated() -> None:
    lines = [*chf_a03(), "ZLW|1|whatever^we^do not read", "PD1", "OBX|1|TX|X||y"]
    assert one(cr(lines)).type == "encounter.discharged"


def test_latin1_when_msh18_says_so_and_utf8_otherwise() -> None:
    lines = chf_a03(msh=msh(f18="8859/1"), pv1={3: "CARD^12^B^CITTÀ"})
    event = one(cr(lines).encode("latin-1"))
    assert event.data["facility"] == "CITTÀ"
    assert one(cr(chf_a03(pv1={3: "CARD^12^B^CITTÀ"})).encode()).data["facility"] == "CITTÀ"
    error = refused(cr(chf_a03(pv1={3: "CARD^12^B^CITTÀ"})).encode("latin-1"))
    assert error.location == "MSH-18"


@pytest.mark.parametrize("trigger", ["A08", "A02", "A05", "A31", "A40"])
def test_adt_triggers_we_do_not_read_give_no_event(trigger: str) -> None:
    assert events_from_hl7(cr(chf_a03(msh=msh(kind=f"ADT^{trigger}"))), default_tz=LONDON) == []


# -- refusals --------------------------------------------------------------------------------------


def replace_segment(lines: list[str], name: str, new: str | None) -> list[str]:
    out = [new if line.startswith(name) else line for line in lines]
    return [line for line in out if line is not None]


MALFORMED: list[tuple[str, str | bytes, str]] = [
    (
        "PV1-45 garbage",
        cr(chf_a03(pv1={45: "2013x"})),
        "PV1-45: not an HL7 timestamp: '2013x'",
    ),
    (
        "PV1-45 a year only",
        cr(chf_a03(pv1={45: "2013"})),
        "PV1-45: timestamp '2013' is too coarse for an event time (at least YYYYMMDD)",
    ),
    (
        "PV1-45 month 13",
        cr(chf_a03(pv1={45: "20131345"})),
        "PV1-45: not a valid date and time: '20131345'",
    ),
    (
        "PV1-45 offset out of range",
        cr(chf_a03(pv1={45: "201301011200+2500"})),
        "PV1-45: not a valid UTC offset in '201301011200+2500'",
    ),
    (
        "EVN-6 bad, PV1-45 empty: no silent fallback past it",
        cr(replace_segment(chf_a03(pv1={45: ""}), "EVN", "EVN|A03|20260310093000||||yesterday")),
        "EVN-6: not an HL7 timestamp: 'yesterday'",
    ),
    (
        "no PID",
        cr(replace_segment(chf_a03(), "PID", None)),
        "PID: segment missing (required in an ADT message)",
    ),
    (
        "empty PID-3",
        cr(replace_segment(chf_a03(), "PID", "PID|1||~9434765919^^^NHS^NH")),
        "PID-3: no patient identifier (PID-3.1 is empty)",
    ),
    (
        "no PV1 in an A03",
        cr(replace_segment(chf_a03(), "PV1", None)),
        "PV1: segment missing (required in ADT^A03)",
    ),
    ("no MSH-10", cr(chf_a03(msh=msh(control=""))), "MSH-10: no message control id"),
    (
        "not ADT",
        cr(chf_a03(msh=msh(kind="ORU^R01"))),
        "MSH-9: message type 'ORU' is not accepted: Carepath reads ADT only",
    ),
    (
        "cancel discharge",
        cr(chf_a03(msh=msh(kind="ADT^A13"))),
        "MSH-9.2: ADT^A13 (cancel discharge/end visit) is not applied automatically: a pathway "
        "may already have acted on what it cancels; review it by hand",
    ),
    (
        "no trigger anywhere",
        cr(replace_segment(chf_a03(msh=msh(kind="ADT")), "EVN", None)),
        "MSH-9.2: no trigger event (MSH-9.2 and EVN-1 are empty)",
    ),
    (
        "a diagnosis code with a space",
        cr([*chf_a03()[:-1], "DG1|4|I10|I50 9^Heart failure^I10"]),
        "DG1[4]-3: diagnosis code 'I50 9' is not a code (1-64 characters, no spaces)",
    ),
    ("not HL7 at all", "hello world", "MSH: a message starts with MSH, not 'hel'"),
    ("empty", b"", "MSH: empty message"),
    ("only whitespace", "\r\n \n", "MSH: empty message"),
    (
        "two messages",
        cr(chf_a03()) + cr(chf_a03(msh=msh(control="2"))),
        "MSH: 2 messages in one payload: send one at a time",
    ),
    (
        "a batch",
        "BHS|^~\\&|X\r" + cr(chf_a03()) + "BTS|1\r",
        "BHS: batches are not accepted: send one message at a time",
    ),
    (
        "bad encoding characters",
        cr(chf_a03(msh=msh().replace("^~\\&", "^^\\&", 1))),
        "MSH-2: encoding characters '^^\\\\&' are not valid (four distinct symbols such as ^~\\&)",
    ),
    ("MSH too short", "MSH|^~\r", "MSH: MSH segment too short"),
    (
        "a line that is not a segment",
        cr([*chf_a03()[:3], "this is a note", *chf_a03()[3:]]),
        "line 4: not an HL7 segment: 'this is a no...'",
    ),
    (
        "a patient id too long",
        cr(replace_segment(chf_a03(), "PID", "PID|1||" + "9" * 129)),
        "PID-3: patient identifier longer than 128 characters: '" + "9" * 40 + "...'",
    ),
]


@pytest.mark.parametrize(
    ("message", "expected"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_messages_are_refused_precisely(message: str | bytes, expected: str) -> None:
    error = refused(message)
    assert str(error) == expected
    assert error.location == expected.split(":", 1)[0]


# -- nothing but InputError ------------------------------------------------------------------------

_HL7ISH = st.text(
    alphabet=st.sampled_from(list('MSHPIDVEGN0123456789AT|^~\\&"\r\n +-. \ufeff\x0b\x1cé')),
    max_size=300,
)
_HEADERS = st.sampled_from(
    [msh(), msh(kind="ADT^A01"), msh(kind="ADT^A04"), msh(kind="ADT"), msh(f18="8859/1")]
)
_BODY = st.lists(
    st.sampled_from(
        [
            *chf_a03()[1:],
            "EVN|A03",
            "EVN",
            "PV1",
            "PID",
            "DG1",
            "DG1|1||^^",
            seg("PV1", {2: "I", 36: "99", 44: "2026", 45: '""'}),
            seg("PV1", {3: "^^^\\T\\", 19: "\\F\\", 45: "20260101+9999"}),
            "PID|1||~",
            "ZZZ|1",
            "",
        ]
    ),
    max_size=8,
)
_LINES = st.builds(lambda head, body: [head, *body], _HEADERS, _BODY)


def _mutate(lines: list[str], data: st.DataObject) -> str:
    text = "\r".join(lines)
    for _ in range(data.draw(st.integers(0, 2))):
        if not text:
            break
        at = data.draw(st.integers(0, len(text) - 1))
        text = text[:at] + data.draw(_HL7ISH) + text[at + data.draw(st.integers(0, 3)) :]
    return text


def _only_input_errors(message: str | bytes) -> None:
    try:
        events = events_from_hl7(message, default_tz=LONDON, a04_policy="admit_inpatient")
    except InputError as error:
        assert str(error)
    else:
        assert all(isinstance(e, Event) for e in events)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400), _HL7ISH))
def test_arbitrary_input_raises_only_input_error(message: str | bytes) -> None:
    _only_input_errors(message)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_LINES, st.data())
def test_mutated_messages_raise_only_input_error(lines: list[str], data: st.DataObject) -> None:
    _only_input_errors(_mutate(lines, data))
    _only_input_errors(_mutate(chf_a03(), data).encode())
