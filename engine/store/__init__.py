"""The store: the input log, pathway versions, instances, timers, outbox and audit trail."""

from engine.store.store import (
    Outbox,
    OutboxItem,
    Outcome,
    Recorded,
    Store,
    create_engine,
    default_url,
)

__all__ = [
    "Outbox",
    "OutboxItem",
    "Outcome",
    "Recorded",
    "Store",
    "create_engine",
    "default_url",
]
