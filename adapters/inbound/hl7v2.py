"""HL7 v2 ADT messages into events, and the ACK/NAK that answers them.

Theory of operation. A message arrives as bytes (HTTP body, MLLP frame) or text. We (steps 1-3
are `_hl7message.py`)

1. normalise it (shared/samples/hl7v2/PARSE_NOTES.md, quirks 1 and 7): decode strictly (in the
   character set MSH-18 declares: ASCII, ISO 8859 parts, UNICODE UTF-8; UTF-8 when it declares
   none; never replacing a byte), strip a byte-order mark and MLLP framing, make every segment end
   in a single CR (CRLF and LF separators are what made both python-hl7 and hl7apy silently return
   one segment), drop empty lines and whitespace around segments;
2. check the envelope ourselves (one MSH, sane encoding characters, every line a segment), so
   that python-hl7, which validates nothing, is only handed messages it can split correctly;
3. split with python-hl7 and read fields through `Segment.value`, which never raises, unescapes
   only the separator escapes (\\F\\ \\S\\ \\R\\ \\T\\ \\E\\), strips whitespace and treats the
   HL7 explicit null `""` as no value;
4. map by the trigger event in MSH-9.2 (never EVN-1, quirk 3):

       A03            -> encounter.discharged
       A01            -> encounter.admitted
       A04            -> encounter.admitted (the contract; see A04Policy: clinical risk)
       A11, A13       -> InputError: a cancelled admission/discharge needs a person
       other ADT      -> [] (A08 included: see docs/adapters.md for why)
       not ADT        -> InputError

Every failure is an InputError located at the segment and field (`PV1-45: not an HL7 timestamp:
'2013x'`), so the payload goes to the dead-letter table and the sender gets a NAK saying why.
No I/O and no clock: naive HL7 times are read in the `default_tz` the deployment configures.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any, Literal

from hl7.datatypes import parse_datetime

from adapters.inbound._common import disposition_code, is_code, make_event, short, stable_id
from adapters.inbound._hl7message import Header, Message, Segment, decode, raw_header
from engine.catalogue import Event
from engine.errors import InputError

__all__ = ["A04Policy", "AckCode", "ack", "events_from_hl7"]

AckCode = Literal["AA", "AE", "AR"]

#: What an ADT^A04 (register a patient) becomes.
#:   "admit"            every A04 is `encounter.admitted` (the contract in issue 6; the default);
#:   "admit_inpatient"  only an A04 whose PV1-2 patient class is I (inpatient);
#:   "ignore"           A04 produces no event.
#: Clinical risk: `encounter.admitted` ends the CHF pathway as a readmission. Many hospitals send
#: A04 for outpatient and clinic registrations, which would include the very follow-up visit the
#: pathway asks for. Sites whose A04s are outpatient registrations should choose
#: "admit_inpatient" or "ignore".
A04Policy = Literal["admit", "admit_inpatient", "ignore"]

_DISCHARGE = "A03"
_ADMISSIONS = ("A01", "A04")
_CANCELLATIONS = {
    "A11": "cancel admit/visit notification",
    "A13": "cancel discharge/end visit",
}
# YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]
_DTM = re.compile(
    r"(?P<dtm>\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?)"
    r"(?P<tz>[+-]\d{4})?"
)
# -- the public functions --------------------------------------------------------------------------


def events_from_hl7(
    message: str | bytes, *, default_tz: tzinfo, a04_policy: A04Policy = "admit"
) -> list[Event]:
    """The events one HL7 v2 message stands for: one, or none for ADT triggers we do not read.

    `default_tz` is the zone of timestamps that carry no offset (the deployment's
    `default_timezone`). Raises InputError, naming the segment and field, for anything else.
    """
    msg = Message.parse(decode(message))
    kind = (msg.msh.value(9, 1) or "").upper()
    if kind != "ADT":
        raise InputError(
            f"message type {short(kind)} is not accepted: Carepath reads ADT only",
            location="MSH-9",
        )
    trigger = msg.msh.value(9, 2) or msg.first("EVN").value(1)
    if trigger is None:
        raise InputError("no trigger event (MSH-9.2 and EVN-1 are empty)", location="MSH-9.2")
    trigger = trigger.upper()
    if trigger in _CANCELLATIONS:
        raise InputError(
            f"ADT^{trigger} ({_CANCELLATIONS[trigger]}) is not applied automatically: a pathway "
            "may already have acted on what it cancels; review it by hand",
            location="MSH-9.2",
        )
    if trigger == _DISCHARGE:
        return [_discharge(msg, default_tz)]
    if trigger in _ADMISSIONS:
        if trigger == "A04" and not _a04_admits(msg, a04_policy):
            return []
        return [_admission(msg, trigger, default_tz)]
    return []


def ack(
    message: str | bytes,
    code: AckCode,
    text: str = "",
    *,
    at: datetime | None = None,
    control_id: str | None = None,
) -> str:
    """The HL7 original-mode acknowledgement of `message`: MSH + MSA, never raising.

    MSA-1 is `code` (AA accepted, AE error: the message was refused, AR reject: resend later),
    MSA-2 the inbound MSH-10, MSA-3 `text`. The header swaps sender and receiver (MSH-3/4 <->
    MSH-5/6), keeps the inbound separators, processing id (MSH-11) and version (MSH-12), and
    answers MSH-9 `ACK^<trigger>^ACK`. MSH-7 is `at` (the caller's clock; left empty without
    one), MSH-10 is `control_id` or `ACK<inbound MSH-10>`. A message too broken to read still
    gets an answer, with the standard separators and empty echoed fields.
    """
    try:
        raw, readable = decode(message), True
    except InputError:
        # Undecodable: read the header byte for byte (latin-1 maps each byte to one character,
        # replacing none), and echo only the fields that are plain ASCII, so that nothing we
        # could not read is echoed as something else.
        raw = message.decode("latin-1") if isinstance(message, bytes) else message
        readable = False
    header = raw_header(raw)
    sep, enc = header.sep, header.enc
    component = enc[0]

    def field(n: int) -> str:
        value = header.fields[n] if n < len(header.fields) else ""
        return value if readable or value.isascii() else ""

    inbound_id = field(10).split(component)[0].strip()
    trigger = field(9).split(component)[1].strip() if component in field(9) else ""
    version = field(12).split(component)[0].strip() or "2.5"
    msh9 = "ACK"
    if trigger:
        msh9 += f"{component}{trigger}"
        if _version(version) >= (2, 3, 1):
            msh9 += f"{component}ACK"
    msh = [
        "MSH",
        enc,
        field(5),
        field(6),
        field(3),
        field(4),
        _format_dtm(at) if at is not None else "",
        "",
        msh9,
        _escape(control_id, header) if control_id is not None else f"ACK{inbound_id}",
        field(11) or "P",
        field(12) or version,
    ]
    msa = ["MSA", code, inbound_id, _escape(text, header)] if text else ["MSA", code, inbound_id]
    return "\r".join(sep.join(seg) for seg in (msh, msa)) + "\r"


# -- mapping ---------------------------------------------------------------------------------------


def _discharge(msg: Message, default_tz: tzinfo) -> Event:
    pv1 = msg.required("PV1", "ADT^A03")
    data: dict[str, Any] = {
        "encounter_id": _encounter_id(msg, pv1),
        "diagnoses": _diagnoses(msg),
        "disposition": _disposition(pv1),
        "facility": pv1.value(3, 4) or msg.msh.value(4) or msg.msh.value(4, 2),
    }
    occurred = _event_time(msg, pv1, 45, default_tz)
    return _event(msg, "A03", "encounter.discharged", occurred, data)


def _admission(msg: Message, trigger: str, default_tz: tzinfo) -> Event:
    pv1 = msg.required("PV1", f"ADT^{trigger}")
    data = {"encounter_id": _encounter_id(msg, pv1), "diagnoses": _diagnoses(msg)}
    occurred = _event_time(msg, pv1, 44, default_tz)
    return _event(msg, trigger, "encounter.admitted", occurred, data)


def _event(
    msg: Message, trigger: str, event_type: str, occurred: datetime, data: dict[str, Any]
) -> Event:
    where = f"ADT^{trigger}"
    return make_event(
        stable_id("hl7v2", msg.sender(), msg.control_id(), trigger),
        event_type,
        _patient_id(msg),
        occurred,
        data,
        where=where,
    )


def _a04_admits(msg: Message, policy: A04Policy) -> bool:
    if policy == "admit":
        return True
    if policy == "ignore":
        return False
    pv1 = msg.required("PV1", "ADT^A04")
    return (pv1.value(2) or "").upper() == "I"


def _patient_id(msg: Message) -> str:
    """PID-3, first repetition, CX.1: the sending system's own patient id (MRN). The assigning
    authority is not kept, so one deployment must use one identifier space (docs/adapters.md)."""
    pid = msg.required("PID", "an ADT message")
    value = pid.value(3, 1)
    if value is None:
        raise InputError("no patient identifier (PID-3.1 is empty)", location="PID-3")
    if len(value) > 128:
        raise InputError(
            f"patient identifier longer than 128 characters: {short(value)}", location="PID-3"
        )
    return value


def _encounter_id(msg: Message, pv1: Segment) -> str:
    """PV1-19 visit number (CX.1); without one, a stable id made from the message's own id. An
    admission and the discharge of the same stay then have different encounter ids."""
    visit = pv1.value(19, 1)
    if visit is not None and len(visit) <= 128:
        return visit
    if visit is not None:
        raise InputError(
            f"visit number longer than 128 characters: {short(visit)}", location="PV1-19"
        )
    return stable_id("hl7v2-msg", msg.sender(), msg.control_id())


def _diagnoses(msg: Message) -> list[str]:
    """DG1-3.1 of every DG1, in order, without repeats, whatever the coding system (ICD-10,
    ICD-9, SNOMED CT, local): the codes are passed on as sent, never translated."""
    codes: list[str] = []
    for n, dg1 in enumerate(msg.all("DG1"), start=1):
        code = dg1.value(3, 1)
        if code is None:
            continue  # a DG1 with only a description (DG1-4) carries no code we can read
        if not is_code(code):
            raise InputError(
                f"diagnosis code {short(code)} is not a code (1-64 characters, no spaces)",
                location=f"{dg1.name(n)}-3",
            )
        if code not in codes:
            codes.append(code)
    return codes


def _disposition(pv1: Segment) -> str | None:
    """PV1-36 (HL7 table 0112 / UB-04), component 1 in versions where it is a CWE. Kept as a
    string ("01" stays "01"); a single digit gets its leading zero back. Free text is refused
    rather than dropped: the disposition decides who is enrolled and who gets a home visit."""
    value = pv1.value(36, 1)
    if value is None:
        return None
    if not is_code(value):
        raise InputError(
            f"discharge disposition {short(value)} is not a code (HL7 table 0112 / UB-04, "
            "e.g. '01' home, '06' home health)",
            location="PV1-36",
        )
    return disposition_code(value)


def _event_time(msg: Message, pv1: Segment, pv1_field: int, default_tz: tzinfo) -> datetime:
    """The first of PV1-45 (discharge) or PV1-44 (admit), EVN-6 (event occurred), EVN-2
    (recorded), MSH-7 that has a value. A value that is present but wrong is an error: we never
    fall back past a bad timestamp."""
    evn = msg.first("EVN")
    candidates = (
        (f"PV1-{pv1_field}", pv1.value(pv1_field, 1)),
        ("EVN-6", evn.value(6, 1)),
        ("EVN-2", evn.value(2, 1)),
        ("MSH-7", msg.msh.value(7, 1)),
    )
    for location, value in candidates:
        if value is not None:
            return _timestamp(value, location, default_tz)
    raise InputError(
        f"no event time: PV1-{pv1_field}, EVN-6, EVN-2 and MSH-7 are all empty", location="MSH-7"
    )


def _timestamp(value: str, location: str, default_tz: tzinfo) -> datetime:
    """An HL7 DTM/TS. At least day precision (a bare year or month is no event time); an
    offset, however odd (+0110), is kept; without one the time is read in `default_tz`."""
    match = _DTM.fullmatch(value)
    if match is None:
        raise InputError(f"not an HL7 timestamp: {short(value)}", location=location)
    digits, offset = match["dtm"], match["tz"]
    if len(digits) < 8:
        raise InputError(
            f"timestamp {short(value)} is too coarse for an event time (at least YYYYMMDD)",
            location=location,
        )
    try:
        naive: datetime = parse_datetime(digits)
    except (ValueError, OverflowError):
        raise InputError(f"not a valid date and time: {short(value)}", location=location) from None
    if offset is None:
        return naive.replace(tzinfo=default_tz)
    hours, minutes = int(offset[1:3]), int(offset[3:5])
    if hours > 23 or minutes > 59:
        raise InputError(f"not a valid UTC offset in {short(value)}", location=location)
    delta = timedelta(hours=hours, minutes=minutes)
    return naive.replace(tzinfo=timezone(-delta if offset[0] == "-" else delta))


# -- the ACK ---------------------------------------------------------------------------------------


def _escape(text: str, header: Header) -> str:
    esc = header.enc[2]
    out = text.replace(esc, f"{esc}E{esc}")
    for char, code in (
        (header.sep, "F"),
        (header.enc[0], "S"),
        (header.enc[1], "R"),
        (header.enc[3], "T"),
    ):
        out = out.replace(char, f"{esc}{code}{esc}")
    return " ".join(out.split())  # no CR/LF inside a field


def _format_dtm(at: datetime) -> str:
    stamp = at.strftime("%Y%m%d%H%M%S")
    offset = at.utcoffset()
    if offset is None:
        return stamp
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{stamp}{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"


def _version(text: str) -> tuple[int, ...]:
    parts: list[int] = []
    for bit in text.split("."):
        if not bit.isdigit():
            break
        parts.append(int(bit))
    return tuple(parts)
