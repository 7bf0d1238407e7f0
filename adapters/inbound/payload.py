"""Raw bodies into text and JSON documents, refusing what is not exactly that, never repairing.

    decode_text(payload)                 UTF-8 text, a leading byte-order mark removed
    parse_json(payload, max_depth=64)    one JSON document: strict UTF-8, strict JSON, not too deep

The service calls these on every body it receives, before any adapter or model sees it. Nothing
here replaces a character, drops a byte or guesses a meaning: `errors="replace"` once turned a
patient id with a stray Latin-1 byte into a different patient id, and stored it. A body that is
not what it must be raises InputError saying where (the byte offset; the line and column) and
why, so the sender can find it and the service can keep the body as a dead letter.

Depth is checked before parsing, by counting brackets outside strings (no recursion), because
Python's json, pydantic and fhir.resources all recurse: a body nested thousands deep would end
in a RecursionError, an HTTP 500 and a dropped connection. The deepest real document we know of,
a Synthea patient Bundle, nests 11 levels; `MAX_DEPTH` leaves room for five times that.
"""

from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from adapters.inbound._common import require_text, short
from engine.errors import InputError

__all__ = ["MAX_DEPTH", "decode_bytes", "decode_text", "depth", "parse_json"]

#: How deeply a JSON document may nest (objects and arrays; scalars add nothing).
MAX_DEPTH = 64

_BOM = b"\xef\xbb\xbf"
# A string token (closed, or running to the end of an unterminated string: linear either way),
# or a bracket. Brackets inside strings are skipped with their string.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.S)
# `\ud800`-style escapes: only a document that has one can hold a lone surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def decode_text(payload: bytes | str) -> str:
    """The text of a raw body: UTF-8, with a leading byte-order mark removed.

    Bytes that are not UTF-8 raise InputError naming the offset of the first bad byte (counted
    from the start of `payload`, BOM included) and the byte itself: `not UTF-8 (byte 17):
    invalid start byte (0xe9)`. Text given as `str` must be encodable (no lone surrogates).
    Nothing is ever replaced.
    """
    if isinstance(payload, str):
        require_encodable(payload)
        return payload.removeprefix("\ufeff")
    if payload.startswith(_BOM):
        return decode_bytes(payload[len(_BOM) :], "utf-8", name="UTF-8", offset=len(_BOM))
    return decode_bytes(payload, "utf-8", name="UTF-8")


def decode_bytes(
    data: bytes, codec: str, *, name: str, location: str = "", offset: int = 0, note: str = ""
) -> str:
    """`data` decoded strictly with the Python `codec`. InputError at the first byte it cannot
    decode: `not <name> (byte <offset + n>): <reason> (0x..)<note>`."""
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        bad = " ".join(f"0x{b:02x}" for b in exc.object[exc.start : min(exc.end, exc.start + 4)])
        raise InputError(
            f"not {name} (byte {offset + exc.start}): {exc.reason} ({bad}){note}",
            location=location,
        ) from None


def require_encodable(text: str, location: str = "") -> None:
    """Text must encode as UTF-8: a lone surrogate (from a `\\ud800` escape, or a str built
    with surrogateescape) is not a character and no store can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"not text (character {exc.start}): {text[exc.start]!r} is a lone surrogate",
            location=location,
        ) from None


def parse_json(payload: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """One JSON document from a raw body, refused unless it is strictly JSON.

    Raises InputError when the bytes are not UTF-8 (see `decode_text`); when the document nests
    objects and arrays more than `max_depth` deep (checked before parsing, without recursion);
    when it is not valid JSON (line and column); for what Python's json would accept but JSON
    is not: `NaN`, `Infinity`, `-Infinity`, a number too large for a float (`1e400`) or with
    more than 4300 digits; for a key given twice in one object (JSON leaves open which one
    counts, so we do not choose); and for strings holding lone surrogates (`"\\ud800"`).
    """
    text = decode_text(payload)
    _check_depth(text, max_depth)
    try:
        document = json.loads(
            text,
            parse_constant=_no_constant,
            parse_float=_finite_float,
            object_pairs_hook=_object,
        )
    except json.JSONDecodeError as exc:
        raise InputError(
            f"not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except ValueError:  # int() refuses more than sys.get_int_max_str_digits() digits
        limit = sys.get_int_max_str_digits()
        raise InputError(f"not valid JSON: a number with more than {limit} digits") from None
    except RecursionError:  # not reached with a sane max_depth: the check above comes first
        raise InputError(f"nested more than {max_depth} levels deep") from None
    if _SURROGATE_ESCAPE.search(text):
        require_text(document)
    return document


def depth(document: Any) -> int:
    """How deeply parsed JSON nests objects and arrays (0 for a scalar), without recursion."""
    deepest, stack = 0, [(document, 1)]
    while stack:
        value, level = stack.pop()
        if isinstance(value, dict):
            values: Any = value.values()
        elif isinstance(value, list):
            values = value
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in values)
    return deepest


def _check_depth(text: str, max_depth: int) -> None:
    if text.count("[") + text.count("{") <= max_depth:
        return  # too few brackets to be too deep: the common case, decided in C
    level = 0
    for match in _TOKEN.finditer(text):
        char = text[match.start()]
        if char == "[" or char == "{":
            level += 1
            if level > max_depth:
                at = match.start()
                line = text.count("\n", 0, at) + 1
                column = at - text.rfind("\n", 0, at)
                raise InputError(
                    f"nested more than {max_depth} levels deep (line {line}, column {column})"
                )
        elif char != '"':
            level -= 1


def _no_constant(name: str) -> Any:
    raise InputError(f"not valid JSON: {name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise InputError(f"not valid JSON: the number {short(text)} is too large")
    return value


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise InputError(
                    f"the key {short(key)} is given twice in one object: only one can be meant"
                )
            seen.add(key)
    return document
