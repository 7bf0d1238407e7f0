"""The store: SQLite (embedded default, WAL) or PostgreSQL (production), through SQLAlchemy.

One writer appends to it. `write(batch)` commits a group of decided inputs in ONE transaction:
for each input its log record, its outbox actions and its audit records, and a row for each
instance it created (or whose status it changed), all or nothing (group commit: several inputs
per transaction, never part of one). The hash chains continue across batches; `verify()` walks
them.

Instance states and pending timers are written by `snapshot()`, every so many inputs and when
the writer stops, not with every input: rewriting an instance's state (a kilobyte or two of
JSON on a random page) and moving its timer with every event was three quarters of what ingest
wrote to disk and a third of its time (bench/ingest_speed.py). Everything a state holds follows
from the inputs before it, so nothing is lost in between: a restart reads the latest snapshot
and re-decides the inputs after it (engine.runtime.durable).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import date, datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from engine.core import InstanceState
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.store import schema as t
from engine.store.chain import AUDIT_FIELDS, GENESIS, INPUT_FIELDS, hashed, link
from engine.store.connect import WriterLock, create_engine
from engine.store.migrate import upgrade
from engine.store.reads import Reads
from engine.store.rows import Prepared, Recorded, audit_row, compact_json, outbox_row, sorted_json
from engine.store.statements import Statements
from engine.store.times import to_text


class Store(Reads):
    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema  # the PostgreSQL schema given to `open` apart from the URL
        self._read_tails()
        self._sql = Statements.of(engine.dialect)
        self._writer: WriterLock | None = None
        #: the writer's: instance id -> active, as the instances table holds it
        self._rows: dict[str, bool] = {}
        #: the writer's: instances changed since the latest snapshot -> (state, last seq)
        self._changed: dict[str, tuple[InstanceState, int]] = {}

    def _read_tails(self) -> None:
        with self.engine.connect() as conn:
            self.last_seq, self.input_hash = _tail(conn, t.inputs, t.inputs.c.seq)
            self.last_audit, self.audit_hash = _tail(conn, t.audit, t.audit.c.id)
            self.snapshot_seq = int(
                conn.execute(sa.select(sa.func.max(t.snapshots.c.seq))).scalar() or 0
            )
        # Whether every change since the latest snapshot is noted (so a snapshot may be taken):
        # so when nothing was recorded after it; otherwise once a restore has noted them.
        self._complete = self.last_seq == self.snapshot_seq

    def claim_writer(self, wait_seconds: float = 3.0) -> None:
        """Become the store's only writer, until `close()`; StoreError if another process is.

        The hash chains are extended from heads held in memory, so two writers on one store
        would fork them. PostgreSQL: an advisory lock per schema, held by a connection of our
        own; SQLite: an exclusive lock on a file beside the database. Both go when the process
        does, even on SIGKILL. Waits up to `wait_seconds` (a killed writer's PostgreSQL
        session takes a moment to end). Idempotent for this Store."""
        if self._writer is not None:
            return
        lock = WriterLock.take(self.engine, wait_seconds)
        self._writer = lock
        self._read_tails()  # a writer before us may have moved the heads since we opened
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.instances.c.instance_id, t.instances.c.active))
            self._rows = {r.instance_id: bool(r.active) for r in rows}
        self._changed = {}

    @classmethod
    def open(cls, url: str, *, schema: str | None = None) -> Store:
        """Open (creating or upgrading the schema) the store at `url`."""
        engine = create_engine(url, schema=schema)
        try:
            with engine.begin() as conn:
                upgrade(conn)
        except sa.exc.SQLAlchemyError as exc:
            engine.dispose()
            raise StoreError(f"cannot open the store: {exc}") from exc
        return cls(engine, schema)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
        self.engine.dispose()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    # -- pathway versions ---------------------------------------------------------------------

    def save_pathways(self, pathways: Iterable[Pathway], now: datetime) -> None:
        """Record each pathway version; refuse a changed file under an existing version."""
        with self.engine.begin() as conn:
            known = {row.key: row for row in conn.execute(sa.select(t.pathway_versions))}
            for p in pathways:
                row = known.get(p.key)
                if row is not None:
                    if row.source_hash != p.source_hash:
                        raise StoreError(
                            f"{p.key} in {p.file} differs from the {p.key} recorded in the "
                            f"store (from {row.file}): give the changed pathway a new version"
                        )
                    continue
                conn.execute(
                    t.pathway_versions.insert().values(
                        key=p.key,
                        pathway_id=p.id,
                        version=p.version,
                        source_hash=p.source_hash,
                        source_text=p.source_text,
                        file=p.file,
                        loaded_at=to_text(now),
                    )
                )

    def record_holidays(self, holidays: Collection[date]) -> None:
        """The writer decides the inputs after the last one with `holidays`: recorded when they
        differ from the list in effect."""
        calendar, current, start = self.calendar(), frozenset(holidays), self.last_seq + 1
        if calendar.at(start) == current:
            return
        with self.engine.begin() as conn:
            # a list recorded for the same next input (changed again before any input) goes
            conn.execute(t.holidays.delete().where(t.holidays.c.from_seq == start))
            if calendar.at(start - 1) != current:
                conn.execute(
                    t.holidays.insert().values(
                        from_seq=start,
                        dates=compact_json(sorted(d.isoformat() for d in current)),
                    )
                )

    # -- writing ---------------------------------------------------------------------------------

    def write(self, batch: Sequence[Recorded]) -> None:
        """Commit a batch of decided inputs in one transaction (or none of it)."""
        if not batch:
            return
        self._commit(self._prepare(batch))

    def _prepare(self, batch: Sequence[Recorded]) -> Prepared:
        """The rows of a batch, chained to what is committed; numbers each record (`rec.seq`).
        Nothing is written."""
        seq, input_hash, audit_id, audit_hash = (
            self.last_seq,
            self.input_hash,
            self.last_audit,
            self.audit_hash,
        )
        input_rows: list[tuple[Any, ...]] = []
        audit_rows: list[tuple[Any, ...]] = []
        outbox_rows: list[tuple[Any, ...]] = []
        states: dict[str, tuple[InstanceState, int]] = {}
        for rec in batch:
            seq += 1
            rec.seq = seq
            row = {
                "seq": seq,
                "kind": rec.kind,
                "input_id": rec.input_id,
                "patient_id": rec.patient_id,
                "instance_id": rec.instance_id,
                "type": rec.type,
                "occurred_at": to_text(rec.occurred_at),
                "recorded_at": to_text(rec.recorded_at),
                "decided_at": to_text(rec.decided_at),
                "payload": sorted_json(rec.payload),
            }
            fields = hashed(row, INPUT_FIELDS)  # in INPUT_FIELDS order, as the statement
            prev = input_hash
            input_hash = link(input_hash, fields)
            input_rows.append((*fields.values(), prev, input_hash))
            keys = {s.instance_id: s.pathway_key for s in rec.changed}
            for entry in rec.decision.audit:
                audit_id += 1
                arow = audit_row(audit_id, row, entry, keys.get(entry.instance_id, ""))
                fields = hashed(arow, AUDIT_FIELDS)
                prev = audit_hash
                audit_hash = link(audit_hash, fields)
                audit_rows.append((*fields.values(), prev, audit_hash))
            for action in rec.decision.actions:
                outbox_rows.append(outbox_row(seq, action))
            for state in rec.changed:
                states[state.instance_id] = (state, seq)
        # A row for each new instance (so that it can be looked up by id or patient at once)
        # with its state as first written; a changed status for each one ended. The states
        # themselves wait for the next snapshot.
        created: list[tuple[Any, ...]] = []
        statuses: list[tuple[Any, ...]] = []
        for state, last in states.values():
            active = self._rows.get(state.instance_id)
            if active is None:
                created.append(
                    (
                        state.instance_id,
                        state.pathway_key,
                        state.pathway_key.split("@", 1)[0],
                        state.patient_id,
                        state.active,
                        to_text(state.enrolled_at),
                        last,
                        compact_json(state.as_dict()),
                        last,
                    )
                )
            elif active != state.active:
                statuses.append((state.active, last, state.instance_id))
        return Prepared(
            size=len(batch),
            heads=(seq, input_hash, audit_id, audit_hash),
            inputs=input_rows,
            audit=audit_rows,
            outbox=outbox_rows,
            instances=created,
            statuses=statuses,
            changed=states,
        )

    def _commit(self, prepared: Prepared) -> None:
        """Write a prepared batch in one transaction (or none of it); then move the heads."""
        sql = self._sql
        seq, input_hash, audit_id, audit_hash = prepared.heads
        try:
            with self.engine.begin() as conn:
                # Precompiled statements through the driver's executemany: the rows are built
                # above as tuples, and SQLAlchemy's per-row parameter processing (a tenth of
                # ingest time, bench/ingest_speed.py) has nothing to add to them.
                run = partial(sql.run, conn)
                run(sql.inputs, prepared.inputs)
                run(sql.audit, prepared.audit)
                run(sql.outbox, prepared.outbox)
                run(sql.instances, prepared.instances)
                run(sql.status, prepared.statuses)
                run(
                    sql.heads,
                    [("inputs", seq, input_hash), ("audit", audit_id, audit_hash)],
                )
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not commit {prepared.size} input(s): {exc}") from exc
        self.last_seq, self.input_hash = seq, input_hash
        self.last_audit, self.audit_hash = audit_id, audit_hash
        self.changed(prepared.changed)

    def changed(self, states: Mapping[str, tuple[InstanceState, int]]) -> None:
        """Note instance states changed since the latest snapshot, with the seq of the input
        that last changed each: the next snapshot writes them. The writer's commits note
        theirs; a restart notes those it re-decided after the snapshot."""
        self._changed.update(states)
        for instance_id, (state, _) in states.items():
            self._rows[instance_id] = state.active

    def forget_changes(self) -> None:
        """Drop the states noted since the latest snapshot (the writer is about to re-decide
        them from the log, then says `changes_complete`)."""
        self._changed = {}
        self._complete = False

    def changes_complete(self) -> None:
        """Every input after the latest snapshot has had its changed states noted."""
        self._complete = True

    def snapshot(self) -> int:
        """Write the state and pending timers of every instance changed since the latest
        snapshot, as of the last committed input, in one transaction; returns how many.

        The rows are written in instance id order, each page of the instances table once,
        where writing them with every commit wrote a page (and a timer's) per event."""
        if self.snapshot_seq == self.last_seq:
            return 0
        if not self._complete:
            # marking a snapshot without every state changed since the last one would make a
            # restart skip the inputs that changed the others
            raise StoreError(
                "a snapshot needs every state changed since the latest one (the "
                "engine's restore notes them)"
            )
        sql, seq = self._sql, self.last_seq
        states = sorted(self._changed.items())
        rows = [
            (state.active, last, compact_json(state.as_dict()), seq, instance_id)
            for instance_id, (state, last) in states
        ]
        timers = [
            (instance_id, key, to_text(due))
            for instance_id, (state, _) in states
            for key, due in sorted(state.timers.items())
        ]
        try:
            with self.engine.begin() as conn:
                run = partial(sql.run, conn)
                run(sql.snapshot_instance, rows)
                run(sql.cancel_timers, [(instance_id,) for instance_id, _ in states])
                run(sql.arm_timer, timers)
                run(sql.snapshot, [(seq, len(rows))])
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not write a snapshot: {exc}") from exc
        self.snapshot_seq = seq
        self._changed = {}
        return len(rows)

    # -- dead letters: inbound payloads that could not be accepted ----------------------------

    def dead_letter(self, source: str, reason: str, payload: bytes | str, now: datetime) -> int:
        """Keep a refused payload, with why, for review and re-submission. Returns its id."""
        if isinstance(payload, bytes):  # MERGE: the audit work keeps bytes exactly
            payload = payload.decode("utf-8", "backslashreplace")
        with self.engine.begin() as conn:
            result = conn.execute(
                t.dead_letters.insert().values(
                    received_at=to_text(now),
                    source=source,
                    reason=reason,
                    payload=payload,
                    status="held",
                )
            )
            key = result.inserted_primary_key
            assert key is not None
            return int(key[0])

    def set_dead_letter_status(
        self, letter_id: int, status: str, reason: str | None = None
    ) -> None:
        values: dict[str, Any] = {"status": status}
        if reason is not None:
            values["reason"] = reason
        with self.engine.begin() as conn:
            conn.execute(
                t.dead_letters.update().where(t.dead_letters.c.id == letter_id).values(**values)
            )


def _tail(conn: Connection, table: sa.Table, order: sa.Column[Any]) -> tuple[int, str]:
    row = conn.execute(sa.select(order, table.c.hash).order_by(order.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)
