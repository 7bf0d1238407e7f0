"""Reading a recorded history back as inputs the decision core accepts."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from engine.catalogue import Event
from engine.core import EventInput, Registry, TimerInput, compile_pathway
from engine.core.inputs import Input
from engine.definition.loader import load_text
from engine.errors import DefinitionError, StoreError
from engine.store import Store
from engine.store import schema as t


def pinned_registry(store: Store) -> Registry:
    """Every pathway version recorded in the store, exactly as recorded."""
    registry = Registry()
    for key, file, text in store.pathway_sources():
        pathway, problems = load_text(file, text)
        if pathway is None:
            raise DefinitionError(problems)
        if pathway.key != key:
            raise StoreError(f"recorded pathway {key} now loads as {pathway.key}")
        registry.add(compile_pathway(pathway))
    return registry


def as_input(row: Any) -> Input | None:
    """The input a log record holds (None for a duplicate, which decided nothing)."""
    payload = json.loads(row.payload)
    recorded_at = datetime.fromisoformat(row.recorded_at)
    if row.kind == "event":
        return EventInput(Event.model_validate(payload), recorded_at, seq=row.seq)
    if row.kind == "timer":
        return TimerInput(
            payload["instance_id"],
            payload["timer"],
            datetime.fromisoformat(payload["due_at"]),
            recorded_at,
            seq=row.seq,
        )
    return None


def recorded_texts(
    store: Store, seqs: list[int]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Recorded actions and audit records as stored (JSON text), by the input sequence that
    decided them; audit records in the order they were written, actions not yet in decided
    order (see `decode_actions`).

    Kept as text and decoded one input at a time while replaying: decoded up front, a history
    of 100,000 instances held a million small dicts for the whole replay, and the garbage
    collector walked them over and over (bench/ingest_speed.py); strings are not tracked."""
    actions: dict[int, list[str]] = defaultdict(list)
    audits: dict[int, list[str]] = defaultdict(list)
    if not seqs:
        return actions, audits
    low, high = min(seqs), max(seqs)
    wanted = set(seqs)
    with store.engine.connect() as conn:
        for row in conn.execute(
            sa.select(t.outbox.c.seq, t.outbox.c.payload).where(t.outbox.c.seq.between(low, high))
        ):
            if row.seq in wanted:
                actions[row.seq].append(row.payload)
        for row in conn.execute(
            sa.select(t.audit.c.seq, t.audit.c.record)
            .where(t.audit.c.seq.between(low, high))
            .order_by(t.audit.c.id)
        ):
            if row.seq in wanted:
                audits[row.seq].append(row.record)
    return actions, audits


def decode_actions(texts: list[str]) -> list[dict[str, Any]]:
    """One input's recorded actions, decoded, in the order the core decided them."""
    return sorted((json.loads(text) for text in texts), key=_decided_order)


def decode_audit(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts]


def _decided_order(action: dict[str, Any]) -> tuple[str, int]:
    """The order the core decides in: pathway by pathway (route goes in order of pathway id),
    each instance's actions in the order of its counter."""
    return str(action["pathway"]), int(str(action["id"]).rpartition(".")[2] or 0)
