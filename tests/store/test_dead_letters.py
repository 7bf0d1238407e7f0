"""Dead letters keep a refused payload exactly as it came in, bytes that are not UTF-8 text
included; `carepath deadletter list` shows them, `retry` re-submits them (and refuses, again and
with the reason, bytes that are still not text); every change is in their hash-chained log, from
any thread."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import Result

from engine.store import Store
from engine.store import schema as t
from engine.store.verify import verify
from tests.store.conftest import LATIN1, PATHWAYS, T0

WEIGHT = {"id": "e-w", "type": "observation.weight", "patient_id": "p-1",
          "occurred_at": "2026-03-02T08:00:00Z", "data": {"value": 80.5, "unit": "kg"}}  # fmt: skip


def intact(store: Store) -> None:
    problems = [r.problem for r in verify(store) if r.problem]
    assert problems == []


@pytest.mark.parametrize(
    ("given", "kept", "as_bytes"),
    [
        ("{oops", "{oops", False),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603", False),
        ("caf\u00e9".encode(), "caf\u00e9", False),  # UTF-8 bytes are text
        (LATIN1, LATIN1, True),
        (b"\xff\xfe\x00\x01", b"\xff\xfe\x00\x01", True),
        (b'{"a": "\x00"}', b'{"a": "\x00"}', True),  # UTF-8, but PostgreSQL text holds no NUL
        ("a\x00b", b"a\x00b", True),
        (b"\xef\xbb\xbfBOM", "\ufeffBOM", False),
    ],
)
def test_a_payload_is_kept_exactly_as_received(
    store: Store, given: bytes | str, kept: bytes | str, as_bytes: bool
) -> None:
    letter_id = store.dead_letter("hl7v2", "refused", given, T0)
    (letter,) = store.dead_letters()
    assert letter["id"] == letter_id
    assert letter["payload"] == kept and isinstance(letter["payload"], bytes) == as_bytes
    raw = given if isinstance(given, bytes) else given.encode()
    assert (kept if isinstance(kept, bytes) else kept.encode()) == raw
    with store.engine.connect() as conn:
        row = conn.execute(sa.select(t.dead_letters)).one()
    if as_bytes:  # and a rendering of them, where the text goes
        assert "\x00" not in row.payload and row.payload_bytes == raw
    intact(store)


def test_list_shows_bytes_as_base64(store_url: str, cli: Callable[..., Result]) -> None:
    store = Store.open(store_url)
    store.dead_letter("json", "not JSON", "{oops", T0)
    store.dead_letter("hl7v2", "not UTF-8 text", LATIN1, T0)
    store.close()
    listed = cli("deadletter", "list", "--db", store_url)
    assert listed.exit_code == 0
    assert [line.split("\t")[2:] for line in listed.stdout.splitlines()] == [
        ["json", "held", "not JSON"],
        ["hl7v2", "held", "not UTF-8 text"],
    ]
    shown = json.loads(cli("deadletter", "list", "--db", store_url, "--json").stdout)
    assert shown[0]["payload"] == "{oops" and "payload_base64" not in shown[0]
    assert shown[1]["payload"] is None
    assert base64.b64decode(shown[1]["payload_base64"]) == LATIN1


def test_retry_refuses_bytes_that_are_not_text_and_says_why(
    store_url: str, cli: Callable[..., Result], tmp_path: Path
) -> None:
    store = Store.open(store_url)
    letter_id = store.dead_letter("json", "not UTF-8 text", json.dumps(WEIGHT).encode()
                                  .replace(b"p-1", b"p-\xe9"), T0)  # fmt: skip
    store.close()
    refused = cli("deadletter", "retry", str(letter_id), "--db", store_url,
                  "--pathways", str(PATHWAYS))  # fmt: skip
    assert refused.exit_code == 1
    why = "the payload is not UTF-8 text (byte 0xe9 at offset"
    assert why in refused.stderr
    store = Store.open(store_url)
    try:
        (letter,) = store.dead_letters()
        assert letter["status"] == "held"
        assert letter["reason"].startswith(f"retried and refused again: {why}")
        intact(store)
    finally:
        store.close()

    not_text = tmp_path / "still.json"
    not_text.write_bytes(b"\xe9")
    again = cli("deadletter", "retry", str(letter_id), "--db", store_url,
                "--payload", str(not_text), "--pathways", str(PATHWAYS))  # fmt: skip
    assert again.exit_code == 2
    assert "still.json: the payload is not UTF-8 text (byte 0xe9 at offset 0)" in again.stderr

    fixed = tmp_path / "fixed.json"
    fixed.write_text(json.dumps(WEIGHT), encoding="utf-8")
    accepted = cli("deadletter", "retry", str(letter_id), "--db", store_url,
                   "--payload", str(fixed), "--pathways", str(PATHWAYS))  # fmt: skip
    assert accepted.exit_code == 0, accepted.stderr
    assert accepted.stdout.strip() == f"dead letter {letter_id}: 1 event(s) accepted"
    store = Store.open(store_url)
    try:
        assert store.dead_letters() == []
        (letter,) = store.dead_letters(None)
        assert letter["status"] == "accepted"
        assert isinstance(letter["payload"], bytes)  # still what came in
        with store.engine.connect() as conn:
            log = conn.execute(
                sa.select(t.dead_letter_log.c.status).order_by(t.dead_letter_log.c.number)
            )
            assert list(log.scalars()) == ["held", "held", "accepted"]
        intact(store)
    finally:
        store.close()


def test_letters_kept_from_many_threads_stay_one_chain(store: Store) -> None:
    """The HTTP handlers keep dead letters from threads of their own, beside the writer."""
    errors: list[BaseException] = []

    def keep(n: int) -> None:
        try:
            for i in range(5):
                letter = store.dead_letter("json", f"bad {n}.{i}", f"{n}.{i}".encode(), T0)
                if i == 4:
                    store.set_dead_letter_status(letter, "held", f"refused again {n}", T0)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=keep, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(store.dead_letters()) == 30
    report = {r.chain: r for r in verify(store)}["dead_letters"]
    assert (report.records, report.problem) == (36, None)
