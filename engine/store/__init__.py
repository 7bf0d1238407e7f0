"""The store: the input log, pathway versions, instances, timers, outbox and audit trail.

Modules: `store` (the writer: group commits and snapshots), `reads` (queries), `rows` (what a
group of decided inputs becomes), `statements` (its SQL), `outbox`, `letters` (dead letters),
`connect` (engine and writer lock), `chain` (hash chains), `heads` (their heads), `verify`
(their check), `crosscheck` (what they vouch for) and `report` (what the check says), `schema`
and `migrate`."""

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
