"""The HL7 ACK/NAK: structure read back with python-hl7, on samples and on garbage."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.inbound import AckCode, ack

A03 = (
    "MSH|^~\\&|ADTSYS|RIVERSIDE|CAREPATH|CPFAC|20260310093000||ADT^A03^ADT_A03|CP-1|P|2.5.1\r"
    "EVN|A03|20260310093000\r"
    "PID|1||MRN-4711\r"
    "PV1|1|I\r"
)


def fields(message: str, segment: str) -> list[str]:
    parsed = hl7.parse(message)
    return [str(f) for f in parsed.segment(segment)]


@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_ack_swaps_sender_and_receiver_and_echoes_the_control_id(code: AckCode) -> None:
    text = "PV1-45: not an HL7 timestamp: '2013x'" if code != "AA" else ""
    answer = ack(A03, code, text)
    assert answer.endswith("\r") and answer.count("\r") == 2
    header = fields(answer, "MSH")
    assert header[3:7] == ["CAREPATH", "CPFAC", "ADTSYS", "RIVERSIDE"]
    assert header[9] == "ACK^A03^ACK"
    assert header[10] == "ACKCP-1"
    assert header[11:13] == ["P", "2.5.1"]
    msa = fields(answer, "MSA")
    assert msa[1:3] == [code, "CP-1"]
    assert msa[3:] == ([text] if text else [])


def test_ack_time_and_control_id_come_from_the_caller() -> None:
    at = datetime(2026, 3, 10, 9, 30, 5, tzinfo=timezone(timedelta(hours=-5)))
    header = fields(ack(A03, "AA", at=at, control_id="A-77"), "MSH")
    assert header[7] == "20260310093005-0500"
    assert header[10] == "A-77"
    assert fields(ack(A03, "AA", at=datetime(2026, 1, 1, tzinfo=UTC)), "MSH")[7] == (
        "20260101000000+0000"
    )
    assert fields(ack(A03, "AA"), "MSH")[7] == ""  # no clock here: MSH-7 only when given


def test_nak_text_is_escaped_into_one_field() -> None:
    text = "bad | field ^ with & and ~ and \\ and\r\nnew lines"
    answer = ack(A03, "AE", text)
    msa = hl7.parse(answer).segment("MSA")
    assert len(msa) == 4
    assert msa.extract_field(field_num=3) == "bad | field ^ with & and ~ and \\ and new lines"


def test_ack_keeps_the_senders_separators_and_older_versions_get_two_components() -> None:
    message = "MSH#!~\\&#APP#FAC#ME#US#2005#SEC#ADT!A01#77#T#2.3\rPID#1##X\r"
    answer = ack(message, "AE", "a#b!c")
    assert answer.startswith("MSH#!~\\&#ME#US#APP#FAC###ACK!A01#ACK77#T#2.3\r")
    assert answer.split("\r")[1] == "MSA#AE#77#a\\F\\b\\S\\c"


@pytest.mark.parametrize(
    "message",
    ["", "hello", b"\xff\xfe\x00garbage", "MSH", "MSH|", "MSH|^~\\&", "PID|1||2\rMSH|^^^^|x"],
)
def test_unreadable_messages_still_get_a_nak(message: str | bytes) -> None:
    answer = ack(message, "AE", "does not parse")
    header = fields(answer, "MSH")
    assert header[1:3] == ["|", "^~\\&"]
    assert header[9] == "ACK"
    assert fields(answer, "MSA")[1:] == ["AE", "", "does not parse"]


def test_every_sample_gets_a_well_formed_ack(shared_samples: Path) -> None:
    for path in sorted((shared_samples / "hl7v2").glob("*.hl7")):
        raw = path.read_bytes()
        inbound = hl7.parse(raw.decode())
        answer = ack(b"\xef\xbb\xbf" + raw.replace(b"\r", b"\n"), "AA")
        header = fields(answer, "MSH")
        assert header[3:7] == [str(inbound["MSH"][0][n]) for n in (5, 6, 3, 4)], path.name
        assert fields(answer, "MSA")[1:] == ["AA", str(inbound["MSH"][0][10])], path.name
        trigger = str(inbound["MSH"][0][9][0][1])
        version = str(inbound["MSH"][0][12])
        expected = f"ACK^{trigger}" + ("" if version == "2.3" else "^ACK")
        assert header[9] == expected, path.name


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300)), st.text(max_size=80))
def test_ack_never_raises_and_always_answers_with_msh_and_msa(
    message: str | bytes, text: str
) -> None:
    answer = ack(message, "AE", text)
    segments = answer.rstrip("\r").split("\r")
    assert [s[:3] for s in segments] == ["MSH", "MSA"]
    assert segments[1].split(segments[0][3])[1] == "AE"
