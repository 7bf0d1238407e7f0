"""What a store holds, read back: the queries behind restart, replay, the API and the CLI.
None of them writes; `Store` (engine.store.store) adds the writer's side."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from engine.core import InstanceState
from engine.store import schema as t
from engine.store.rows import action_order


class Reads:
    """The read-only queries over a store's database."""

    engine: Engine
    snapshot_seq: int

    def pathway_sources(self) -> list[tuple[str, str, str]]:
        """(key, file, YAML text) of every recorded pathway version."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.pathway_versions).order_by(t.pathway_versions.c.key))
            return [(r.key, r.file, r.source_text) for r in rows]

    # -- reading state back --------------------------------------------------------------------

    def instances(self) -> Iterator[InstanceState]:
        """The instance states of the latest snapshot (oldest change first): what a restart
        starts from, before it re-decides the inputs after `snapshot_seq`. Instances created
        since are left out (those inputs create them again)."""
        c = t.instances.c
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(c.state)
                .where(c.state_seq <= self.snapshot_seq)
                .order_by(c.last_seq, c.enrolled_at, c.instance_id)
            )
            for row in rows:
                yield InstanceState.from_dict(json.loads(row.state))

    def inputs_after(self, seq: int) -> Iterator[sa.Row[Any]]:
        """The input log after `seq`, in order."""
        with self.engine.connect() as conn:
            yield from conn.execute(
                sa.select(t.inputs).where(t.inputs.c.seq > seq).order_by(t.inputs.c.seq)
            )

    def calendar(self) -> Calendar:
        """The holiday lists recorded, each with the input it applies from."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.holidays).order_by(t.holidays.c.from_seq)).all()
        return Calendar(
            [int(r.from_seq) for r in rows],
            [frozenset(date.fromisoformat(d) for d in json.loads(r.dates)) for r in rows],
        )

    def action_texts_after(self, seq: int) -> dict[int, list[str]]:
        """The recorded actions of the inputs after `seq` as stored (`action_text`), by input."""
        texts: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(
                sa.select(t.outbox.c.seq, t.outbox.c.payload).where(t.outbox.c.seq > seq)
            ):
                texts.setdefault(row.seq, []).append(row.payload)
        return texts

    def clock(self, through: int | None = None) -> datetime | None:
        """The engine's clock after the input `through` (default: the last): the time the
        latest input was decided at. A duplicate does not move the clock (MemoryEngine.submit),
        so duplicates do not count."""
        query = sa.select(sa.func.max(t.inputs.c.decided_at)).where(t.inputs.c.kind != "duplicate")
        if through is not None:
            query = query.where(t.inputs.c.seq <= through)
        with self.engine.connect() as conn:
            value = conn.execute(query).scalar()
        return datetime.fromisoformat(value) if value else None

    def known_event_ids(self, ids: Sequence[str]) -> set[str]:
        return set(self.known_events(ids))

    def known_events(self, ids: Sequence[str]) -> dict[str, str]:
        """The events among `ids` the input log holds: id -> the payload recorded (its JSON
        text), to tell an exact repeat from a different event sent under the same id."""
        if not ids:
            return {}
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                rows = conn.execute(
                    sa.select(t.inputs.c.input_id, t.inputs.c.payload).where(
                        t.inputs.c.input_id.in_(chunk),
                        # The partial index's own condition, spelled out: SQLite uses a
                        # partial index only when the query repeats its WHERE term (it
                        # cannot infer it from kind = 'event'), and otherwise scanned the
                        # whole input log for every group (63 ms per group at 300,000
                        # inputs, a third of ingest time: bench/ingest_speed.py).
                        t.inputs.c.kind != "duplicate",
                        t.inputs.c.kind == "event",
                    )
                )
                found.update((row.input_id, row.payload) for row in rows)
        return found

    def inputs(
        self, *, patient_id: str | None = None, instance_id: str | None = None
    ) -> Iterator[sa.Row[Any]]:
        query = sa.select(t.inputs).order_by(t.inputs.c.seq)
        if patient_id is not None:
            query = query.where(t.inputs.c.patient_id == patient_id)
        if instance_id is not None:
            with self.engine.connect() as conn:
                patient = conn.execute(
                    sa.select(t.instances.c.patient_id).where(
                        t.instances.c.instance_id == instance_id
                    )
                ).scalar()
            query = query.where(t.inputs.c.patient_id == (patient or ""))
        with self.engine.connect() as conn:
            yield from conn.execute(query)

    def actions(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.outbox.c.payload).order_by(t.outbox.c.seq, t.outbox.c.action_id)
        if patient_id is not None:
            query = query.where(t.outbox.c.patient_id == patient_id)
        with self.engine.connect() as conn:
            rows = [json.loads(p) for p in conn.execute(query).scalars()]
        return sorted(rows, key=action_order)

    def audit_records(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.audit.c.record).order_by(t.audit.c.id)
        with self.engine.connect() as conn:
            records = [json.loads(r) for r in conn.execute(query).scalars()]
        if patient_id is not None:
            records = [r for r in records if r.get("patient_id") == patient_id]
        return records

    def dead_letters(self, status: str | None = "held") -> list[dict[str, Any]]:
        query = sa.select(t.dead_letters).order_by(t.dead_letters.c.id)
        if status is not None:
            query = query.where(t.dead_letters.c.status == status)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def instances_of(self, patient_id: str) -> list[InstanceState]:
        """A patient's instances, each as of its latest snapshot (or its creation): the running
        engine holds them as of now (DurableEngine.current)."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.instances.c.state)
                .where(t.instances.c.patient_id == patient_id)
                .order_by(t.instances.c.last_seq)
            )
            return [InstanceState.from_dict(json.loads(r.state)) for r in rows]

    def instance(self, instance_id: str) -> InstanceState | None:
        """An instance as of its latest snapshot (or its creation); see `instances_of`."""
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(t.instances.c.state).where(t.instances.c.instance_id == instance_id)
            ).scalar()
        return InstanceState.from_dict(json.loads(state)) if state else None

    def instance_actions(self, instance_id: str) -> list[dict[str, Any]]:
        """The instance's actions with their status and outcome."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.outbox)
                .where(t.outbox.c.instance_id == instance_id)
                .order_by(t.outbox.c.seq, t.outbox.c.action_id)
            )
            out = []
            for r in rows:
                action = json.loads(r.payload)
                action["status"] = r.status
                action["outcome"] = json.loads(r.outcome) if r.outcome else None
                out.append(action)
        return sorted(out, key=action_order)

    def instance_audit(self, instance_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.audit.c.record)
                .where(t.audit.c.instance_id == instance_id)
                .order_by(t.audit.c.id)
            )
            return [json.loads(r) for r in rows.scalars()]

    def pending_timers(self) -> list[tuple[str, str, str]]:
        with self.engine.connect() as conn:
            return [
                (r.instance_id, r.key, r.due_utc)
                for r in conn.execute(
                    sa.select(t.timers).order_by(
                        t.timers.c.due_utc, t.timers.c.instance_id, t.timers.c.key
                    )
                )
            ]


@dataclass(frozen=True, slots=True)
class Calendar:
    """The holiday lists a store's inputs were decided with: `lists[i]` from input
    `starts[i]` on. Before the first (or in a store from before they were recorded): none."""

    starts: list[int]
    lists: list[frozenset[date]]

    def at(self, seq: int) -> frozenset[date]:
        index = bisect_right(self.starts, seq) - 1
        return self.lists[index] if index >= 0 else frozenset()
