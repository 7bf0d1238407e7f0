"""Hash chains: each record's hash covers its own fields and the previous record's hash, so an
edit, a deletion, an insertion or a reordering anywhere breaks the chain from that point on.

The chains and the fields each record's hash covers:

    inputs        INPUT_FIELDS       the input log (seq 1, 2, 3...)
    audit         AUDIT_FIELDS       the decisions (id 1, 2, 3...)
    pathways      PATHWAY_FIELDS     the pathway versions; the text by its sha256, `source_hash`
    outbox        OUTBOX_FIELDS      each action as decided; not its status (which changes as it
                                     is carried out, and is checked against the input log)
    holidays      HOLIDAY_FIELDS     each holiday list and the input it applies from
    snapshots     SNAPSHOT_FIELDS    each snapshot, with the digest of the states it holds
    dead_letters  LETTER_FIELDS      every change of every dead letter (dead_letter_log)

The records of the last five are numbered 1, 2, 3... in a `number` column of their own."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

GENESIS = "0" * 64

#: `json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, built once:
#: `json.dumps` with options builds a new encoder for every call (same text).
_CANONICAL = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def canonical(fields: Mapping[str, Any]) -> bytes:
    return _CANONICAL(fields).encode()


def link(prev_hash: str, fields: Mapping[str, Any]) -> str:
    return hashlib.sha256(prev_hash.encode() + canonical(fields)).hexdigest()


INPUT_FIELDS = (
    "seq",
    "kind",
    "input_id",
    "patient_id",
    "instance_id",
    "type",
    "occurred_at",
    "recorded_at",
    "decided_at",
    "payload",
)
AUDIT_FIELDS = ("id", "seq", "instance_id", "pathway_key", "kind", "rule", "record")
PATHWAY_FIELDS = ("number", "key", "pathway_id", "version", "source_hash", "file", "loaded_at")
OUTBOX_FIELDS = (
    "number",
    "action_id",
    "seq",
    "instance_id",
    "patient_id",
    "pathway_key",
    "action",
    "payload",
)
HOLIDAY_FIELDS = ("number", "from_seq", "dates")
SNAPSHOT_FIELDS = ("number", "seq", "instances", "digest")
LETTER_FIELDS = ("number", "letter_id", "at", "status", "reason", "content")


def hashed(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}


def text_hash(text: str) -> str:
    """The sha256 of a text as UTF-8 (a pathway version's `source_hash`)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# -- the digest of a snapshot's states ------------------------------------------------------------


def state_hash(instance_id: str, last_seq: int, state: str) -> str:
    """The sha256 of one instance row as a snapshot holds it: its id, the input that last
    changed it and its state (JSON text). The row's `hash` column holds it."""
    data = f"{len(instance_id)}:{instance_id}{int(last_seq)}:{state}".encode()
    return hashlib.sha256(data).hexdigest()


_BITS = 4096
_MODULUS = 1 << _BITS


def _element(row_hash: str) -> int:
    return int.from_bytes(hashlib.shake_256(bytes.fromhex(row_hash)).digest(_BITS // 8), "big")


class StateDigest:
    """The digest of a set of instance rows: the sum, modulo 2**4096, of each row's
    `state_hash` stretched to 4,096 bits (SHAKE-256). An additive multiset hash (AdHash): kept
    up to date as rows change (the old row's element taken away, the new one's added) at the
    cost of the rows that changed, and the same whatever order the rows are read in.

    Why so wide: with 256 bits, someone able to vary the text of many rows could find, by
    Wagner's generalised-birthday algorithm, variations whose sum is a given digest in about
    2**31 steps for 32,768 rows; at 4,096 bits that takes about 2**195 steps even for a million
    rows. Stored as 1,024 hex digits."""

    __slots__ = ("value",)

    def __init__(self, value: int = 0) -> None:
        self.value = value % _MODULUS

    @classmethod
    def of(cls, text: str | None) -> StateDigest:
        return cls(int(text, 16) if text else 0)

    def add(self, row_hash: str) -> None:
        self.value = (self.value + _element(row_hash)) % _MODULUS

    def remove(self, row_hash: str) -> None:
        self.value = (self.value - _element(row_hash)) % _MODULUS

    def hex(self) -> str:
        return format(self.value, f"0{_BITS // 4}x")
