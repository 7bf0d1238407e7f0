"""Reading one HL7 v2 message: decode and normalise it, check the envelope, split it with
python-hl7 and read fields without ever raising (shared/samples/hl7v2/PARSE_NOTES.md).

    decode(bytes | str)       text: in MSH-18's character set, else UTF-8; no BOM, no MLLP start
    Message.parse(text)       segments, after `_segment_lines` and `_header` checked them
    Segment.value(f, c, s)    field f, component c, subcomponent s (first repetition), or None
    raw_header(text)          MSH split by hand, for an ACK to a message that does not parse

Every refusal is an InputError located at the segment, field or line.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import hl7

from adapters.inbound._common import short
from adapters.inbound.payload import decode_bytes
from engine.errors import InputError

__all__ = ["Header", "Message", "Segment", "decode", "raw_header"]

_SEGMENT_LINE = re.compile(r"[A-Z][A-Z0-9]{2}")
#: MSH-18 character sets (HL7 table 0211) we decode, and their Python codecs. Every one of them
#: writes the header in ASCII, so MSH-18 can be read before the message is decoded. No MSH-18
#: means UTF-8 (of which ASCII, the HL7 default, is a part); any other set is refused by name
#: (UNICODE UTF-16/32 and the ISO 2022 sets are not ASCII-compatible, and UNICODE alone does
#: not say which encoding).
CHARSETS = {
    "ASCII": "ascii",
    "8859/1": "iso8859-1",
    "8859/2": "iso8859-2",
    "8859/3": "iso8859-3",
    "8859/4": "iso8859-4",
    "8859/5": "iso8859-5",
    "8859/6": "iso8859-6",
    "8859/7": "iso8859-7",
    "8859/8": "iso8859-8",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}
_BOM = "\ufeff"
_BOM_BYTES = b"\xef\xbb\xbf"


class Segment:
    """One segment, read by 1-based field, component and subcomponent numbers (first
    repetition). `value` never raises: absent, empty, whitespace and `""` are all None."""

    def __init__(self, node: Any, esc: str, separators: str) -> None:
        self._node = node
        self._esc = esc
        # python-hl7's order: segment, field, repetition, component, subcomponent
        self._separators = separators
        self.id = _first_leaf(node)[:3]

    def name(self, n: int) -> str:
        return f"{self.id}[{n}]" if n > 1 else self.id

    def value(self, field: int, component: int = 1, sub: int = 1) -> str | None:
        node = self._node
        if isinstance(node, str) or field >= len(node):
            return None
        raw = _at(node[field], (1, component, sub))
        text = self._unescape(raw).strip()
        return None if text in ("", '""') else text

    def _unescape(self, raw: str) -> str:
        esc = self._esc
        if not esc or esc not in raw:
            return raw
        seps = self._separators
        table = {"F": seps[1], "R": seps[2], "S": seps[3], "T": seps[4], "E": esc}
        pattern = re.escape(esc) + "([FRSTE])" + re.escape(esc)
        return re.sub(pattern, lambda m: table[m.group(1)], raw)


class _Absent(Segment):
    """A segment the message does not have: every field is empty."""

    def __init__(self, segment_id: str) -> None:
        super().__init__([segment_id], "", "\r|~^&")


class Message:
    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.msh = segments[0]

    @classmethod
    def parse(cls, text: str) -> Message:
        lines = _segment_lines(text)
        header = _header(lines[0])
        body = "\r".join(lines)
        try:
            parsed = hl7.parse(body)
        except Exception as exc:  # python-hl7 validates nothing: whatever it raises is bad input
            raise InputError(
                f"does not parse as HL7 v2 ({type(exc).__name__})", location="MSH"
            ) from None
        separators = f"\r{header.sep}{header.enc[1]}{header.enc[0]}{header.enc[3]}"
        return cls([Segment(node, header.enc[2], separators) for node in parsed])

    def all(self, segment_id: str) -> Iterator[Segment]:
        return (s for s in self.segments if s.id == segment_id)

    def first(self, segment_id: str) -> Segment:
        return next(self.all(segment_id), _Absent(segment_id))

    def required(self, segment_id: str, context: str) -> Segment:
        segment = next(self.all(segment_id), None)
        if segment is None:
            raise InputError(f"segment missing (required in {context})", location=segment_id)
        return segment

    def control_id(self) -> str:
        value = self.msh.value(10)
        if value is None:
            raise InputError("no message control id", location="MSH-10")
        return value

    def sender(self) -> str:
        """MSH-3^MSH-4 (namespace ids): control ids are unique only per sending system, so
        two hospitals both sending `MSG00001` must not be taken for one message resent."""
        app = self.msh.value(3) or self.msh.value(3, 2) or ""
        facility = self.msh.value(4) or self.msh.value(4, 2) or ""
        return f"{app}^{facility}"


class Header:
    def __init__(self, sep: str, enc: str, fields: list[str]) -> None:
        self.sep = sep
        self.enc = enc  # component, repetition, escape, subcomponent[, truncation]
        self.fields = fields  # fields[n] is MSH-n (fields[1] the separator, [2] the encoding)


def decode(message: str | bytes) -> str:
    """Decoded text, without leading whitespace (MLLP's start byte) or a byte-order mark.

    Bytes are decoded strictly in the character set MSH-18 declares (`CHARSETS`), or as UTF-8
    when it declares none; a byte the set cannot decode is refused at MSH-18, naming its offset
    in `message`. A set we do not read is refused by name; so is a UTF-8 byte-order mark on a
    message that declares an ISO 8859 part (its text would be read as the wrong set). Nothing
    is ever replaced."""
    if isinstance(message, str):
        try:
            message.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise InputError(f"not text at character {exc.start}", location="MSH") from None
        return message.lstrip().removeprefix(_BOM)
    start = len(message) - len(message.lstrip())
    data = message[start:]
    bom = data.startswith(_BOM_BYTES)
    if bom:
        data, start = data[len(_BOM_BYTES) :], start + len(_BOM_BYTES)
    declared = _declared_charset(data)
    codec = CHARSETS.get(declared) if declared else "utf-8"
    if codec is None:
        raise InputError(
            f"character set {short(declared)} is not one Carepath reads "
            f"({', '.join(CHARSETS)}; none declared means UTF-8)",
            location="MSH-18",
        )
    if bom and codec not in ("utf-8", "ascii"):  # ASCII is UTF-8: a BOM does not contradict it
        raise InputError(
            f"the message starts with a UTF-8 byte-order mark but declares {declared}",
            location="MSH-18",
        )
    if declared:
        name, note = f"{declared}, the character set MSH-18 declares", ""
    else:
        name, note = "UTF-8", "; MSH-18 declares no other character set"
    return decode_bytes(data, codec, name=name, note=note, location="MSH-18", offset=start)


def _declared_charset(data: bytes) -> str:
    """MSH-18 (first repetition) read from the raw bytes: every set we read writes the header
    in ASCII."""
    head = data[:2000].decode("latin-1")
    header = raw_header(head)
    value = header.fields[18] if len(header.fields) > 18 else ""
    return " ".join(value.split(header.enc[1])[0].split()).upper()


def raw_header(text: str) -> Header:
    """MSH split by hand, for the ACK and MSH-18: never raises, defaults when unreadable."""
    start = text.find("MSH")
    line = re.split(r"[\r\n]", text[start:], maxsplit=1)[0] if start >= 0 else ""
    if len(line) < 8 or line[3].isalnum() or line[3].isspace():
        return Header("|", "^~\\&", ["MSH", "|", "^~\\&"])
    sep = line[3]
    parts = line.split(sep)
    enc = parts[1] if len(parts) > 1 else ""
    if not _good_encoding(sep, enc):
        return Header("|", "^~\\&", ["MSH", "|", "^~\\&"])
    return Header(sep, enc, ["MSH", sep, *parts[1:]])


def _segment_lines(text: str) -> list[str]:
    """Segments, one per line: CR is the separator; CRLF becomes CR; a bare LF is a separator
    when a segment follows it (files saved with LF) and part of the field text otherwise."""
    text = text.replace("\r\n", "\r")
    # Split on CR, then on LFs that start a segment (LF + "ABC" + the field separator or end).
    lines: list[str] = []
    for chunk in text.split("\r"):
        lines.extend(re.split(r"\n(?=\s*[A-Z][A-Z0-9]{2}(?:[^A-Za-z0-9\s]|\s*$))", chunk))
    segments = [line.strip() for line in lines if line.strip()]
    if not segments:
        raise InputError("empty message", location="MSH")
    if not segments[0].startswith("MSH"):
        what = segments[0][:3]
        if what in ("FHS", "BHS"):
            raise InputError("batches are not accepted: send one message at a time", location=what)
        raise InputError(f"a message starts with MSH, not {short(what)}", location="MSH")
    count = sum(1 for line in segments if line.startswith("MSH"))
    if count > 1:
        raise InputError(f"{count} messages in one payload: send one at a time", location="MSH")
    sep = segments[0][3:4]
    for n, line in enumerate(segments[1:], start=2):
        if not _SEGMENT_LINE.match(line) or (len(line) > 3 and line[3] != sep):
            raise InputError(f"not an HL7 segment: {short(line, 12)}", location=f"line {n}")
    return segments


def _header(line: str) -> Header:
    if len(line) < 8:
        raise InputError("MSH segment too short", location="MSH")
    sep = line[3]
    if sep.isalnum() or sep.isspace():
        raise InputError(f"field separator {short(sep)} is not usable", location="MSH-1")
    parts = line.split(sep)
    enc = parts[1]
    if not _good_encoding(sep, enc):
        raise InputError(
            f"encoding characters {short(enc)} are not valid (four distinct symbols such as ^~\\&)",
            location="MSH-2",
        )
    return Header(sep, enc, ["MSH", sep, *parts[1:]])


def _good_encoding(sep: str, enc: str) -> bool:
    chars = sep + enc
    return (
        len(enc) in (4, 5)
        and len(set(chars)) == len(chars)
        and not any(c.isalnum() or c.isspace() for c in chars)
    )


def _at(node: Any, path: tuple[int, ...]) -> str:
    """The text at a 1-based path below a python-hl7 container. python-hl7 collapses a level
    with no separator into its text, so a str met early stands for position 1 all the way down;
    a list deeper than the path is followed by its first child."""
    for depth, index in enumerate(path):
        if isinstance(node, str):
            return node if all(i == 1 for i in path[depth:]) else ""
        if index > len(node):
            return ""
        node = node[index - 1]
    return _first_leaf(node)


def _first_leaf(node: Any) -> str:
    while not isinstance(node, str):
        if not node:
            return ""
        node = node[0]
    return node
