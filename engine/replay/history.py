"""Reading a recorded history back as inputs the decision core accepts."""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
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
    if not seqs:
        return defaultdict(list), defaultdict(list)
    low, high = min(seqs), max(seqs)
    return _texts(
        store,
        sa.select(t.outbox.c.seq, t.outbox.c.payload).where(t.outbox.c.seq.between(low, high)),
        sa.select(t.audit.c.seq, t.audit.c.record).where(t.audit.c.seq.between(low, high)),
        set(seqs),
    )


@dataclass(frozen=True, slots=True)
class PatientRange:
    """The patients from `first` to `last`, in the database's order of patient ids (which
    BETWEEN follows too: on PostgreSQL, the column's collation, not Python's order), and their
    `inputs` up to sequence `until`: the last input recorded when the ranges were drawn, so that
    every range is read from the same history however long a writer goes on; `until_hash`, its
    hash, names that history (the inputs are hash-chained)."""

    first: str
    last: str
    inputs: int
    until: int
    until_hash: str


def patient_ranges(store: Store, parts: int) -> list[PatientRange]:
    """At most `parts` contiguous ranges of the patients with recorded inputs, about equal in
    inputs: a range ends at the patient who takes the running count of inputs to the next
    multiple of total/parts. A patient's inputs are never split, so a few patients (or one
    with most of the history) give fewer ranges; no inputs, none."""
    with store.engine.connect() as conn:
        head = conn.execute(
            sa.select(t.inputs.c.seq, t.inputs.c.hash).order_by(t.inputs.c.seq.desc()).limit(1)
        ).first()
        if head is None:
            return []
        counts = conn.execute(
            sa.select(t.inputs.c.patient_id, sa.func.count())
            .where(t.inputs.c.seq <= head.seq)
            .group_by(t.inputs.c.patient_id)
            .order_by(t.inputs.c.patient_id)
        ).all()
    total = sum(count for _, count in counts)
    ranges: list[PatientRange] = []
    first: str | None = None
    before = running = 0  # inputs of the patients in earlier ranges; and up to this patient
    for patient, count in counts:
        if first is None:
            first = patient
        running += count
        if running * parts >= total * (len(ranges) + 1):
            ranges.append(PatientRange(first, patient, running - before, head.seq, head.hash))
            first, before = None, running
    return ranges


def inputs_of(store: Store, patients: PatientRange) -> list[sa.Row[Any]]:
    """The inputs recorded for a range of patients, in recorded order. StoreError if `store`
    does not hold the history the range was drawn from (a worker process opens the store
    again from its URL and schema: a check that it found the same one)."""
    with store.engine.connect() as conn:
        head = conn.execute(
            sa.select(t.inputs.c.hash).where(t.inputs.c.seq == patients.until)
        ).scalar()
        if head != patients.until_hash:
            raise StoreError(
                f"{store.engine.url} does not hold the history replayed (input {patients.until} "
                f"is {'another' if head else 'missing'}): not the same store?"
            )
        return list(conn.execute(sa.select(t.inputs).where(_in(patients)).order_by(t.inputs.c.seq)))


def recorded_texts_of(
    store: Store, patients: PatientRange
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """`recorded_texts` of the inputs of a range of patients, found through the inputs'
    patient (ix_inputs_patient): the sequences of a range span the whole history, and each
    worker would otherwise read every range's records. Half of the patients of a history of
    20,000 instances on SQLite: about 0.4 s instead of 0.5 s, out of some 6 s of replay."""
    return _texts(
        store,
        sa.select(t.outbox.c.seq, t.outbox.c.payload)
        .join(t.inputs, t.inputs.c.seq == t.outbox.c.seq)
        .where(_in(patients)),
        sa.select(t.audit.c.seq, t.audit.c.record)
        .join(t.inputs, t.inputs.c.seq == t.audit.c.seq)
        .where(_in(patients)),
        None,
    )


def _in(patients: PatientRange) -> sa.ColumnElement[bool]:
    return sa.and_(
        t.inputs.c.patient_id.between(patients.first, patients.last),
        t.inputs.c.seq <= patients.until,
    )


def _texts(
    store: Store, actions: sa.Select[Any], audit: sa.Select[Any], wanted: set[int] | None
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """The (seq, text) rows of `actions` and of `audit` (put in the order written), by seq;
    only the seqs in `wanted` unless it is None."""
    by_actions: dict[int, list[str]] = defaultdict(list)
    by_audit: dict[int, list[str]] = defaultdict(list)
    with store.engine.connect() as conn:
        for seq, text in conn.execute(actions):
            if wanted is None or seq in wanted:
                by_actions[seq].append(text)
        for seq, text in conn.execute(audit.order_by(t.audit.c.id)):
            if wanted is None or seq in wanted:
                by_audit[seq].append(text)
    return by_actions, by_audit


def decode_actions(texts: list[str]) -> list[dict[str, Any]]:
    """One input's recorded actions, decoded, in the order the core decided them."""
    return sorted((json.loads(text) for text in texts), key=_decided_order)


def decode_audit(texts: list[str]) -> list[dict[str, Any]]:
    return [json.loads(text) for text in texts]


def _decided_order(action: dict[str, Any]) -> tuple[str, int]:
    """The order the core decides in: pathway by pathway (route goes in order of pathway id),
    each instance's actions in the order of its counter."""
    return str(action["pathway"]), int(str(action["id"]).rpartition(".")[2] or 0)
