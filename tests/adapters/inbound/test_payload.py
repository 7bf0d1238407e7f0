"""Raw bodies: `decode_text` (strict UTF-8, never replacing) and `parse_json` (strict JSON,
depth checked before parsing), and the adapters that read bytes through them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from adapters.inbound import decode_text, events_from_fhir, events_from_json, parse_json
from adapters.inbound.payload import MAX_DEPTH, depth
from engine.errors import InputError

EVENT = {
    "id": "w-1",
    "type": "observation.weight",
    "patient_id": "MRN-4711",
    "occurred_at": "2026-03-11T07:30:00+00:00",
    "data": {"value": 81.4, "unit": "kg"},
}


def refused(call: Any, *args: Any, **kwargs: Any) -> str:
    with pytest.raises(InputError) as info:
        call(*args, **kwargs)
    return str(info.value)


# -- decode_text -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        (b"", ""),
        (b"plain ASCII", "plain ASCII"),
        ("Citt\u00e0".encode(), "Citt\u00e0"),
        (b"\xef\xbb\xbf{}", "{}"),  # the BOM is removed
        (b"\xef\xbb\xbf\xef\xbb\xbf{}", "\ufeff{}"),  # once: a second one is content
        ("\ufeffalready text", "already text"),
        ("\U0001f600 \u20ac", "\U0001f600 \u20ac"),
    ],
)
def test_utf8_is_decoded_and_one_bom_removed(payload: bytes | str, text: str) -> None:
    assert decode_text(payload) == text


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"\xff{}", "not UTF-8 (byte 0): invalid start byte (0xff)"),
        # a Latin-1 patient id: refused at its byte, never stored as MRN-\ufffd
        (b'{"patient_id": "M\xdcLLER"}', "not UTF-8 (byte 17): invalid continuation byte (0xdc)"),
        (b"\xef\xbb\xbfab\xe9", "not UTF-8 (byte 5): unexpected end of data (0xe9)"),  # BOM counted
        (b"ok \xe2\x82", "not UTF-8 (byte 3): unexpected end of data (0xe2 0x82)"),
        (b"\xc0\xaf", "not UTF-8 (byte 0): invalid start byte (0xc0)"),  # overlong '/'
        (b"a\xed\xa0\x80b", "not UTF-8 (byte 1): invalid continuation byte (0xed)"),  # surrogate
        (b"\xfe\xff\x00{", "not UTF-8 (byte 0): invalid start byte (0xfe)"),  # UTF-16 is not UTF-8
        ("lone \ud800", "not text (character 5): '\\ud800' is a lone surrogate"),
    ],
)
def test_what_is_not_utf8_is_refused_at_its_offset(payload: bytes | str, expected: str) -> None:
    assert refused(decode_text, payload) == expected


# -- parse_json ------------------------------------------------------------------------------------


def test_json_documents_parse() -> None:
    assert parse_json(b'{"a": [1, 2.5, true, null, "x"]}') == {"a": [1, 2.5, True, None, "x"]}
    assert parse_json("\ufeff[]") == []
    assert parse_json('"\\ud83d\\ude00"') == "\U0001f600"  # a surrogate pair is one character


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"{\xff}", "not UTF-8 (byte 1): invalid start byte (0xff)"),
        ("", "not valid JSON: Expecting value (line 1, column 1)"),
        ('{"a": 1,}', "not valid JSON: Expecting property name enclosed in double quotes "),
        ('{"value": NaN}', "not valid JSON: NaN is not a JSON number"),
        ("[Infinity]", "not valid JSON: Infinity is not a JSON number"),
        ("[-Infinity]", "not valid JSON: -Infinity is not a JSON number"),
        ('{"value": 1e400}', "not valid JSON: the number '1e400' is too large"),
        ("[" + "9" * 5000 + "]", "not valid JSON: a number with more than 4300 digits"),
        (
            '{"value": 80, "unit": "kg", "value": true}',
            "the key 'value' is given twice in one object: only one can be meant",
        ),
        ('{"id": "\\ud800"}', "contains '\\ud800', which is not text"),
        ('["\\udc00 low"]', "contains '\\udc00', which is not text"),
    ],
)
def test_what_python_would_accept_but_json_is_not(payload: str | bytes, expected: str) -> None:
    assert refused(parse_json, payload).startswith(expected)


def nested(levels: int, leaf: str = "1") -> str:
    text = leaf
    for n in range(levels):
        text = f'{{"k": {text}}}' if n % 2 else f"[{text}]"
    return text


def test_depth_is_counted_in_objects_and_arrays() -> None:
    assert depth(json.loads(nested(7))) == 7
    assert depth(1) == 0 and depth([]) == 1 and depth({"a": [{}]}) == 3
    assert parse_json(nested(MAX_DEPTH)) == json.loads(nested(MAX_DEPTH))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (nested(MAX_DEPTH + 1), "nested more than 64 levels deep (line 1, column 225)"),
        ("[" * 100_000 + "]" * 100_000, "nested more than 64 levels deep (line 1, column 65)"),
        ("[" * 100_000, "nested more than 64 levels deep (line 1, column 65)"),  # and unclosed
        ('{"a":\n' * 70 + "1" + "}" * 70, "nested more than 64 levels deep (line 65, column 1)"),
    ],
)
def test_too_deep_is_refused_before_parsing(text: str, expected: str) -> None:
    assert refused(parse_json, text) == expected


def test_depth_can_be_set_and_brackets_inside_strings_do_not_count() -> None:
    assert refused(parse_json, "[[[1]]]", max_depth=2).startswith("nested more than 2 levels")
    brackets = json.dumps({"note": '[[[[{{{{ \\" ]]]] \\\\' * 50, "a": [[1]]})
    assert parse_json(brackets, max_depth=3)["a"] == [[1]]
    assert refused(parse_json, '["\\"[[[[[[", [[[1]]]]', max_depth=3) == (
        "nested more than 3 levels deep (line 1, column 16)"
    )


def test_an_unterminated_string_full_of_escaped_quotes_is_quick_and_clean() -> None:
    text = '["' + '\\"[' * 200_000  # quadratic for a naive string scanner
    assert refused(parse_json, text).startswith("not valid JSON: Unterminated string")


def test_every_real_fhir_sample_passes_with_the_default_depth(shared_samples: Path) -> None:
    """Whole Synthea patient Bundles (1 MB, 11 levels) included: the default leaves room."""
    files = sorted((shared_samples / "fhir").rglob("*.json"))
    assert files
    deepest = max(depth(parse_json(file.read_bytes())) for file in files)
    assert deepest == 11
    assert 5 * deepest <= MAX_DEPTH


# -- the adapters read bytes through them ----------------------------------------------------------


def test_json_events_refuse_bytes_that_are_not_utf8() -> None:
    body = json.dumps({**EVENT, "patient_id": "M\u00dcLLER"}, ensure_ascii=False).encode("latin-1")
    assert refused(events_from_json, body) == (
        "not UTF-8 (byte 60): invalid continuation byte (0xdc)"
    )
    (event,) = events_from_json(body.decode("latin-1").encode("utf-8"))
    assert event.patient_id == "M\u00dcLLER"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (json.dumps(EVENT).replace("81.4", "NaN"), "not valid JSON: NaN is not a JSON number"),
        (
            json.dumps(EVENT).replace('"MRN-4711"', '"MRN-4711", "patient_id": "MRN-0001"'),
            "the key 'patient_id' is given twice in one object: only one can be meant",
        ),
        ("[" * 65 + json.dumps(EVENT) + "]" * 65, "nested more than 64 levels deep (line 1, "),
    ],
)
def test_json_events_use_parse_json(body: str, expected: str) -> None:
    assert refused(events_from_json, body).startswith(expected)


def weight_observation(**extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "id": "w-1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
        "subject": {"reference": "Patient/MRN-4711"},
        "effectiveDateTime": "2026-03-11T07:30:00+00:00",
        "valueQuantity": {
            "value": 81.4,
            "unit": "kg",
            "system": "http://unitsofmeasure.org",
            "code": "kg",
        },
        **extra,
    }


def deep_extension(levels: int) -> dict[str, Any]:
    deep: dict[str, Any] = {"url": "http://example.org/x", "valueString": "leaf"}
    for _ in range(levels):
        deep = {"url": "http://example.org/x", "extension": [deep]}
    return deep


def test_fhir_bodies_are_read_with_parse_json() -> None:
    resource = weight_observation()
    as_dict = events_from_fhir(resource)
    assert events_from_fhir(json.dumps(resource)) == as_dict
    assert events_from_fhir(b"\xef\xbb\xbf" + json.dumps(resource).encode()) == as_dict
    body = json.dumps(weight_observation(extension=[deep_extension(40)]))
    assert refused(events_from_fhir, body).startswith("nested more than 64 levels deep (line 1, ")
    assert refused(events_from_fhir, body.encode() + b"\xff").startswith("not UTF-8 (byte ")


def nest_text(inner: str, opening: str, closing: str, levels: int) -> str:
    """`inner` wrapped in `levels` openings and closings, built as text: json.dumps itself
    recurses and could not write what this test sends."""
    return opening * levels + inner + closing * levels


@pytest.mark.parametrize("levels", [31, 1_000, 100_000])
def test_deep_fhir_is_refused_never_a_recursion_error(levels: int) -> None:
    """extension.extension... and contained resources inside contained resources, as the raw
    body and (where a test can build it) as parsed JSON, which the service once parsed itself."""
    leaf = json.dumps(weight_observation())
    extension = (
        leaf[:-1]
        + ', "extension": ['
        + nest_text(
            '{"url": "http://example.org/x", "valueString": "leaf"}',
            '{"url": "http://example.org/x", "extension": [',
            "]}",
            levels,
        )
        + "]}"
    )
    contained = nest_text(leaf, leaf[:-1] + ', "contained": [', "]}", levels)
    for body in (extension, contained):
        assert refused(events_from_fhir, body).startswith(
            "nested more than 64 levels deep (line 1, column "
        )
        assert refused(events_from_fhir, body.encode()).startswith("nested more than 64 levels")
        if levels < 500:  # json.loads recurses too: a test cannot parse deeper ones itself
            assert refused(events_from_fhir, json.loads(body)) == (
                "Observation: nested more than 64 levels deep"
            )
