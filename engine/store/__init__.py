"""The store: the input log, pathway versions, instances, timers, outbox and audit trail.

Modules: `store` (the writer: group commits and snapshots), `reads` (queries), `rows` (what a
group of decided inputs becomes), `statements` (its SQL), `outbox`, `connect` (engine and
writer lock), `chain` (hash chains) and `verify` (their check), `schema` and `migrate`."""

from engine.store.connect import create_engine, default_url
from engine.store.outbox import Outbox, OutboxItem, Outcome
from engine.store.rows import Recorded
from engine.store.store import Store

__all__ = [
    "Outbox",
    "OutboxItem",
    "Outcome",
    "Recorded",
    "Store",
    "create_engine",
    "default_url",
]
