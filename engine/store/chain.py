"""Hash chains: each record's hash covers its own fields and the previous record's hash, so an
edit, a deletion, an insertion or a reordering anywhere breaks the chain from that point on."""

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


def hashed(row: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {name: row[name] for name in names}
