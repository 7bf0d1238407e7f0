"""What a store holds, read back: the queries behind restart, replay, the API and the CLI.
None of them writes; `Store` (engine.store.store) adds the writer's side."""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from engine.core import InstanceState
from engine.errors import StoreError
from engine.store import schema as t
from engine.store.chain import SNAPSHOT_FIELDS, StateDigest, hashed, link, state_hash
from engine.store.letters import payload_of
from engine.store.rows import action_order, compact_json
from engine.store.statements import Statements


class Reads:
    """The read-only queries over a store's database."""

    engine: Engine
    snapshot_seq: int
    _sql: Statements

    def pathway_sources(self) -> list[tuple[str, str, str]]:
        """(key, file, YAML text) of every recorded pathway version."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.pathway_versions).order_by(t.pathway_versions.c.key))
            return [(r.key, r.file, r.source_text) for r in rows]

    def pathway_hashes(self) -> dict[str, str]:
        """key -> the sha256 recorded with the version's text when it was first recorded."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.pathway_versions.c.key, t.pathway_versions.c.source_hash)
            )
            return {r.key: r.source_hash for r in rows}

    # -- reading state back --------------------------------------------------------------------

    def instances(self) -> Iterator[InstanceState]:
        """The instance states of the latest snapshot (oldest change first): what a restart
        starts from, before it re-decides the inputs after `snapshot_seq`. Instances created
        since are left out (those inputs create them again).

        Checked before they are trusted: the snapshot's record must be its chain's head, with
        its own hash, and the states read must have the digest it recorded. If not, StoreError
        (after the last state, before the iteration ends: a caller that uses the states only
        once it has them all, as a restart does, never acts on them). Read by the store's
        writer, or by anyone while nobody writes: a snapshot taken meanwhile by another process
        would be reported as a mismatch."""
        c = t.instances.c
        digest = StateDigest()
        with self.engine.connect() as conn:
            expected, number = self._snapshot_digest(conn)
            rows = conn.execute(
                sa.select(c.instance_id, c.last_seq, c.state)
                .where(c.state_seq <= self.snapshot_seq)
                .order_by(c.last_seq, c.enrolled_at, c.instance_id)
            )
            for row in rows:
                digest.add(state_hash(row.instance_id, row.last_seq, row.state))
                yield InstanceState.from_dict(json.loads(row.state))
        if digest.value != expected.value:
            raise StoreError(
                f"the instance states of snapshot {number} (as of input {self.snapshot_seq}) "
                "are not the ones it recorded (their digest differs): the instances table was "
                "changed outside Carepath. The engine does not start on them; `carepath audit "
                "verify` names what changed"
            )

    def _snapshot_digest(self, conn: sa.Connection) -> tuple[StateDigest, int]:
        """The digest the latest snapshot recorded (none: the digest of no states), and its
        number; StoreError unless its record is intact and the head of its chain."""
        if not self.snapshot_seq:
            return StateDigest(), 0
        row = conn.execute(sa.select(t.snapshots).where(t.snapshots.c.seq == self.snapshot_seq))
        record = row.first()
        head = conn.execute(
            sa.select(t.chain_heads.c.last, t.chain_heads.c.hash).where(
                t.chain_heads.c.chain == "snapshots"
            )
        ).first()
        problem = None
        if record is None:
            problem = "is gone"
        elif record.digest is None:
            problem = "has no digest of its states"
        elif link(record.prev_hash, hashed(dict(record._mapping), SNAPSHOT_FIELDS)) != record.hash:
            problem = "was edited after it was written"
        elif head is None or (int(head.last), head.hash) != (int(record.number), record.hash):
            problem = "is not the last snapshot its chain records"
        if problem is not None:
            raise StoreError(
                f"the latest snapshot (as of input {self.snapshot_seq}) {problem}: the store "
                "was changed outside Carepath. The engine does not start on it; `carepath "
                "audit verify` names what changed"
            )
        assert record is not None
        return StateDigest.of(record.digest), int(record.number)

    def inputs_after(self, seq: int) -> Iterator[sa.Row[Any]]:
        """The input log after `seq`, in order."""
        with self.engine.connect() as conn:
            yield from conn.execute(
                sa.select(t.inputs).where(t.inputs.c.seq > seq).order_by(t.inputs.c.seq)
            )

    def calendar(self) -> Calendar:
        """The holiday lists recorded, each with the input it applies from."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.holidays).order_by(t.holidays.c.number)).all()
        return Calendar.of(
            (int(r.from_seq), frozenset(date.fromisoformat(d) for d in json.loads(r.dates)))
            for r in rows
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
        with self.engine.connect() as conn:
            rows = conn.exec_driver_sql(self._sql.known, (compact_json(list(ids)),))
            return {input_id: payload for input_id, payload in rows}

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
        """The dead letters (with `status`; None: all), oldest first: id, received_at, source,
        reason, status, and the payload as it came in (text, or bytes that are not UTF-8
        text)."""
        query = sa.select(t.dead_letters).order_by(t.dead_letters.c.id)
        if status is not None:
            query = query.where(t.dead_letters.c.status == status)
        with self.engine.connect() as conn:
            letters = []
            for row in conn.execute(query):
                letter = dict(row._mapping)
                letter["payload"] = payload_of(letter)
                del letter["payload_bytes"]
                letters.append(letter)
            return letters

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

    @classmethod
    def of(cls, recorded: Iterable[tuple[int, frozenset[date]]]) -> Calendar:
        """From the lists in the order they were recorded, each with the input it applies
        from: a later list for the same input replaces the earlier one (it was changed again
        before any input was decided), and a list equal to the one before it is no change."""
        starts: list[int] = []
        lists: list[frozenset[date]] = []
        for start, dates in recorded:
            while starts and starts[-1] >= start:
                starts.pop()
                lists.pop()
            if (lists[-1] if lists else frozenset()) != dates:
                starts.append(start)
                lists.append(dates)
        return cls(starts, lists)

    def at(self, seq: int) -> frozenset[date]:
        index = bisect_right(self.starts, seq) - 1
        return self.lists[index] if index >= 0 else frozenset()
