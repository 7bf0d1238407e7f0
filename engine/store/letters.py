"""Dead letters: inbound payloads that could not be accepted, kept exactly as they came in, with
the reason, for review and re-submission (`carepath deadletter`).

A payload is kept as text when it is UTF-8 text without a NUL character (which PostgreSQL's text
cannot hold); otherwise its bytes are kept in `payload_bytes`, and `payload` holds a readable
rendering of them (`render`). Every change of a letter is an entry in the hash-chained
`dead_letter_log`, written in the transaction that makes it: held (it came in), held again
(a retry refused, with the new reason), accepted. Each entry carries the `content` hash of what
came in, so a letter whose payload, source or time received was changed, or whose status or
reason does not match its latest entry, is found by `audit verify`."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.errors import StoreError
from engine.store import schema as t
from engine.store.chain import LETTER_FIELDS, canonical
from engine.store.heads import Appender
from engine.store.times import to_text

CHAIN = "dead_letters"


def stored(payload: bytes | str) -> tuple[str, bytes | None]:
    """(payload text, payload bytes) as the row keeps `payload`: the text, and no bytes; or a
    rendering and the bytes, exactly as received."""
    if isinstance(payload, str):
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: what a lenient decode made of bytes
            payload = _undecoded(payload)
        else:
            if "\x00" not in payload:
                return payload, None
            payload = payload.encode("utf-8")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return render(payload), bytes(payload)
    return (text, None) if "\x00" not in text else (render(payload), bytes(payload))


def _undecoded(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")  # the bytes it was decoded from
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


def render(raw: bytes) -> str:
    """Bytes as readable text: UTF-8 where they are, `\\xNN` for each byte that is not, and for
    NUL."""
    return raw.decode("utf-8", "backslashreplace").replace("\x00", "\\x00")


def payload_of(row: Mapping[str, Any]) -> bytes | str:
    """A letter's payload as it came in: its text, or its bytes."""
    raw = row["payload_bytes"]
    return bytes(raw) if raw is not None else str(row["payload"])


def raw_bytes(row: Mapping[str, Any]) -> bytes:
    payload = payload_of(row)
    return payload if isinstance(payload, bytes) else payload.encode("utf-8")


def content(received_at: str, source: str, raw: bytes) -> str:
    """The hash of what came in: when, through what, and the payload's bytes."""
    fields = {
        "received_at": received_at,
        "source": source,
        "payload": hashlib.sha256(raw).hexdigest(),
    }
    return hashlib.sha256(canonical(fields)).hexdigest()


def keep(conn: Connection, source: str, reason: str, payload: bytes | str, now: datetime) -> int:
    """Insert a letter, held, and its first log entry; returns its id."""
    log = Appender.lock(conn, CHAIN, t.dead_letter_log, LETTER_FIELDS)
    text, raw = stored(payload)
    received_at = to_text(now)
    key = conn.execute(
        t.dead_letters.insert().values(
            received_at=received_at,
            source=source,
            reason=reason,
            payload=text,
            payload_bytes=raw,
            status="held",
        )
    ).inserted_primary_key
    assert key is not None
    letter_id = int(key[0])
    log.append(
        {
            "letter_id": letter_id,
            "at": received_at,
            "status": "held",
            "reason": reason,
            "content": content(received_at, source, raw if raw is not None else text.encode()),
        }
    )
    log.close()
    return letter_id


def change(
    conn: Connection, letter_id: int, status: str, reason: str | None, now: datetime
) -> None:
    """Set a letter's status (and reason), with a log entry saying so."""
    log = Appender.lock(conn, CHAIN, t.dead_letter_log, LETTER_FIELDS)
    entry = t.dead_letter_log.c
    latest = conn.execute(
        sa.select(entry.reason, entry.content)
        .where(entry.letter_id == letter_id)
        .order_by(entry.number.desc())
        .limit(1)
    ).first()
    if latest is None:
        raise StoreError(f"no dead letter {letter_id} in the log")
    values: dict[str, Any] = {"status": status}
    if reason is not None:
        values["reason"] = reason
    updated = conn.execute(
        t.dead_letters.update().where(t.dead_letters.c.id == letter_id).values(**values)
    ).rowcount
    if not updated:
        raise StoreError(f"no dead letter {letter_id}")
    # what came in, as the log has it: a letter changed behind our back stays found out
    log.append(
        {
            "letter_id": letter_id,
            "at": to_text(now),
            "status": status,
            "reason": reason if reason is not None else latest.reason,
            "content": latest.content,
        }
    )
    log.close()
