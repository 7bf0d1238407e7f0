"""The store: SQLite (embedded default, WAL) or PostgreSQL (production), through SQLAlchemy.

One writer appends to it. `write(batch)` commits a group of decided inputs in ONE transaction:
for each input its log record, its outbox actions and its audit records, and a row for each
instance it created (or whose status it changed), all or nothing (group commit: several inputs
per transaction, never part of one). The hash chains (engine.store.chain) continue across
batches, from heads held in memory, hashed as the rows are built and written by the same
statements; `audit verify` (engine.store.verify) walks them.

Instance states and pending timers are written by `snapshot()`, every so many inputs and when
the writer stops, not with every input: rewriting an instance's state (a kilobyte or two of
JSON on a random page) and moving its timer with every event was three quarters of what ingest
wrote to disk and a third of its time (bench/ingest_speed.py). Everything a state holds follows
from the inputs before it, so nothing is lost in between: a restart reads the latest snapshot
and re-decides the inputs after it (engine.runtime.durable).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from engine.core import InstanceState
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.store import letters
from engine.store import schema as t
from engine.store.chain import (
    AUDIT_FIELDS,
    GENESIS,
    HOLIDAY_FIELDS,
    INPUT_FIELDS,
    PATHWAY_FIELDS,
    SNAPSHOT_FIELDS,
    StateDigest,
    hashed,
    link,
    state_hash,
)
from engine.store.connect import WriterLock, create_engine
from engine.store.heads import Appender, read_head
from engine.store.migrate import upgrade
from engine.store.reads import Reads
from engine.store.rows import Prepared, Recorded, audit_row, compact_json, outbox_row, sorted_json
from engine.store.statements import Statements, outbox_fields
from engine.store.times import to_text

log = logging.getLogger("carepath.store")

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
        #: a snapshot being prepared between groups (begin_snapshot)
        self._staged: _Staged | None = None

    def _read_tails(self) -> None:
        with self.engine.connect() as conn:
            self.last_seq, self.input_hash = _tail(conn, t.inputs, t.inputs.c.seq)
            self.last_audit, self.audit_hash = _tail(conn, t.audit, t.audit.c.id)
            self.last_action, self.outbox_hash = read_head(conn, "outbox", t.outbox)
            self.last_snapshot, self.snapshot_hash = read_head(conn, "snapshots", t.snapshots)
            latest = conn.execute(
                sa.select(t.snapshots.c.seq, t.snapshots.c.digest)
                .order_by(t.snapshots.c.seq.desc())
                .limit(1)
            ).first()
            self.snapshot_seq = int(latest.seq) if latest else 0
            #: the digest of the states the latest snapshot holds (chain.StateDigest)
            self.snapshot_digest = StateDigest.of(latest.digest if latest else None)
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
        self._staged = None

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
        if self._staged is not None and self._staged.writing is not None:
            self._staged.writing.join()  # a snapshot written behind ends, or rolls back
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
            chain = Appender.lock(conn, "pathways", t.pathway_versions, PATHWAY_FIELDS)
            known: dict[str, Any] = {
                row.key: row
                for row in conn.execute(
                    sa.select(
                        t.pathway_versions.c.key,
                        t.pathway_versions.c.source_hash,
                        t.pathway_versions.c.file,
                    )
                )
            }
            for p in pathways:
                row = known.get(p.key)
                if row is not None:
                    if row.source_hash != p.source_hash:
                        raise StoreError(
                            f"{p.key} in {p.file} differs from the {p.key} recorded in the "
                            f"store (from {row.file}): give the changed pathway a new version"
                        )
                    continue
                known[p.key] = chain.append(
                    {
                        "key": p.key,
                        "pathway_id": p.id,
                        "version": p.version,
                        "source_hash": p.source_hash,
                        "source_text": p.source_text,
                        "file": p.file,
                        "loaded_at": to_text(now),
                    }
                )
            chain.close()

    def record_holidays(self, holidays: Collection[date]) -> None:
        """The writer decides the inputs after the last one with `holidays`: recorded when they
        differ from the list in effect (a list changed again before any input was decided is a
        second row for the same input, which wins: the chain is only appended to)."""
        calendar, current, start = self.calendar(), frozenset(holidays), self.last_seq + 1
        if calendar.at(start) == current:
            return
        with self.engine.begin() as conn:
            chain = Appender.lock(conn, "holidays", t.holidays, HOLIDAY_FIELDS)
            chain.append(
                {
                    "from_seq": start,
                    "dates": compact_json(sorted(d.isoformat() for d in current)),
                }
            )
            chain.close()

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
        action_number, outbox_hash = self.last_action, self.outbox_hash
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
                action_number += 1
                values = (*outbox_row(seq, action), action_number)
                prev = outbox_hash
                outbox_hash = link(outbox_hash, outbox_fields(values))
                outbox_rows.append((*values, prev, outbox_hash))
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
                text = compact_json(state.as_dict())
                created.append(
                    (
                        state.instance_id,
                        state.pathway_key,
                        state.pathway_key.split("@", 1)[0],
                        state.patient_id,
                        state.active,
                        to_text(state.enrolled_at),
                        last,
                        text,
                        last,
                        state_hash(state.instance_id, last, text),
                    )
                )
            elif active != state.active:
                statuses.append((state.active, state.instance_id))
        return Prepared(
            size=len(batch),
            heads=(seq, input_hash, audit_id, audit_hash, action_number, outbox_hash),
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
        seq, input_hash, audit_id, audit_hash, action_number, outbox_hash = prepared.heads
        heads = [("inputs", seq, input_hash), ("audit", audit_id, audit_hash)]
        if action_number != self.last_action:
            heads.append(("outbox", action_number, outbox_hash))
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
                run(sql.heads, heads)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not commit {prepared.size} input(s): {exc}") from exc
        self.last_seq, self.input_hash = seq, input_hash
        self.last_audit, self.audit_hash = audit_id, audit_hash
        self.last_action, self.outbox_hash = action_number, outbox_hash
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
        them from the log, then says `changes_complete`), and a snapshot being prepared."""
        self.settle_snapshot(wait=True)
        self._changed = {}
        self._staged = None
        self._complete = False

    def changes_complete(self) -> None:
        """Every input after the latest snapshot has had its changed states noted."""
        self._complete = True

    # -- snapshots ------------------------------------------------------------------------------
    #
    #   begin_snapshot      the states changed since the latest snapshot, set aside as of now
    #   prepare_snapshot    a slice at a time between the writer's groups: serialized, hashed,
    #                       the digest brought up to date
    #   finish_snapshot     written in one transaction; or write_snapshot_behind: on another
    #                       connection, in a thread, while the writer goes on (PostgreSQL),
    #                       taken in by settle_snapshot
    #
    # In one piece, serializing and writing 10,000 states held the writer for 1.5-3 s under
    # load: every request behind it waited (p99 over a second, timers 2.7 s late:
    # bench/service_load.py).

    def snapshot(self) -> int:
        """Write the state and pending timers of every instance changed since the latest
        snapshot, as of the last committed input; returns how many. A snapshot staged or being
        written is finished first, then one taken of the rest."""
        written = self.settle_snapshot(wait=True)
        if self._staged is not None:
            written += self.finish_snapshot()
        if self.begin_snapshot():
            written += self.finish_snapshot()
        return written

    @property
    def snapshot_staged(self) -> bool:
        """Whether a snapshot is being prepared or written (`begin_snapshot`)."""
        return self._staged is not None

    @property
    def snapshot_writing(self) -> bool:
        """Whether a snapshot is being written behind (`write_snapshot_behind`)."""
        return self._staged is not None and self._staged.writing is not None

    def begin_snapshot(self) -> bool:
        """Start a snapshot as of the last committed input: set aside the states changed since
        the latest one (later commits note theirs for the next). False if there is nothing to
        snapshot or one is under way."""
        if self._staged is not None or self.snapshot_seq == self.last_seq:
            return False
        if not self._complete:
            # marking a snapshot without every state changed since the last one would make a
            # restart skip the inputs that changed the others
            raise StoreError(
                "a snapshot needs every state changed since the latest one (the "
                "engine's restore notes them)"
            )
        digest = StateDigest(self.snapshot_digest.value)
        self._staged = _Staged(self.last_seq, sorted(self._changed.items()), digest)
        self._changed = {}
        return True

    def prepare_snapshot(self, limit: int | None = None) -> bool:
        """Serialize and hash up to `limit` (all, if None) more of the staged states, and bring
        the digest up to date with them (less the hashes of the rows they replace, read back
        one query per slice); True once every one is. The states are the engine's as of the
        staged input: each decision makes new ones and leaves these unchanged, and the rows
        they replace are not touched by commits (those add rows, or flip `active`)."""
        staged = self._staged
        if staged is None or staged.writing is not None:
            return True
        stop = len(staged.states) if limit is None else min(len(staged.states),
                                                             staged.done + limit)
        part = staged.states[staged.done : stop]
        if part:
            with self.engine.connect() as conn:
                replaced = self._held_hashes(conn, [instance_id for instance_id, _ in part])
            for row_hash in replaced:
                staged.digest.remove(row_hash)
        for instance_id, (state, last) in part:
            text = compact_json(state.as_dict())
            row_hash = state_hash(instance_id, last, text)
            staged.digest.add(row_hash)
            # not `active`: the commits keep it (an instance that ended after the staged
            # input is inactive in the table already, its exit in the log, and stays so)
            staged.rows.append((last, text, staged.seq, row_hash, instance_id))
            staged.timers.extend(
                (instance_id, key, to_text(due)) for key, due in sorted(state.timers.items())
            )
        staged.done = stop
        return stop == len(staged.states)

    def finish_snapshot(self) -> int:
        """Write the staged snapshot (prepared whole first, if it is not) in one transaction;
        returns how many states it wrote. On failure the staged states go back to the next
        snapshot's, and StoreError is raised."""
        if self._staged is None:
            return 0
        self.prepare_snapshot()
        staged, self._staged = self._staged, None
        try:
            done = self._write_snapshot(staged)
        except StoreError:
            self._unstage(staged)
            raise
        return self._written(staged, done)

    def write_snapshot_behind(self) -> None:
        """Write the staged (and wholly prepared) snapshot on a connection of its own, in a
        thread, while the writer goes on committing groups; `settle_snapshot` takes the result
        in. For PostgreSQL, whose transactions run side by side (the snapshot's rows are not
        the commits' but for an instance ending meanwhile, whose commit then waits for it);
        SQLite has one writer at a time, so there `finish_snapshot` is as fast."""
        staged = self._staged
        assert staged is not None and staged.done == len(staged.states)
        outcome: list[tuple[str, str, StateDigest] | BaseException] = []

        def write() -> None:
            try:
                outcome.append(self._write_snapshot(staged))
            except BaseException as exc:  # taken in (and raised) by settle_snapshot
                outcome.append(exc)

        staged.outcome = outcome
        staged.writing = threading.Thread(target=write, name="carepath-snapshot", daemon=True)
        staged.writing.start()

    def settle_snapshot(self, *, wait: bool = False) -> int:
        """Take in a snapshot written behind, if it is done (or once done, `wait`): returns how
        many states it wrote (0 if none was written, or it is still being written). One that
        failed puts its states back into the next snapshot's (the log still has it all)."""
        staged = self._staged
        if staged is None or staged.writing is None:
            return 0
        if wait:
            staged.writing.join()
        elif staged.writing.is_alive():
            return 0
        self._staged = None
        (result,) = staged.outcome
        if isinstance(result, BaseException):
            self._unstage(staged)
            log.warning("snapshot not written, will retry: %s", type(result).__name__)
            return 0
        return self._written(staged, result)

    def _write_snapshot(self, staged: _Staged) -> tuple[str, str, StateDigest]:
        """The staged snapshot's transaction: its rows, its timers, its chain record. Touches
        nothing of the writer's: the heads move in `_written`."""
        sql, seq, rows = self._sql, staged.seq, staged.rows
        ids = [instance_id for instance_id, _ in staged.states]
        number = self.last_snapshot + 1
        record: dict[str, Any] = {"number": number, "seq": seq, "instances": len(rows)}
        record["digest"] = staged.digest.hex()
        prev = self.snapshot_hash
        chained = link(prev, hashed(record, SNAPSHOT_FIELDS))
        try:
            with self.engine.begin() as conn:
                run = partial(sql.run, conn)
                run(sql.snapshot_instance, rows)
                run(sql.cancel_timers, [(instance_id,) for instance_id in ids])
                run(sql.arm_timer, staged.timers)
                run(sql.snapshot, [(seq, len(rows), number, record["digest"], prev, chained)])
                run(sql.heads, [("snapshots", number, chained)])
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not write a snapshot: {exc}") from exc
        return str(number), chained, staged.digest

    def _written(self, staged: _Staged, done: tuple[str, str, StateDigest]) -> int:
        number, chained, digest = done
        self.snapshot_seq = staged.seq
        self.last_snapshot, self.snapshot_hash, self.snapshot_digest = int(number), chained, digest
        return len(staged.rows)

    def _unstage(self, staged: _Staged) -> None:
        """The next snapshot takes these states, unless a later commit changed them again."""
        self._changed = {**dict(staged.states), **self._changed}

    def _held_hashes(self, conn: Connection, instance_ids: Sequence[str]) -> list[str]:
        """The hashes of the rows among `instance_ids` the latest snapshot holds."""
        c = t.instances.c
        found: list[str] = []
        for start in range(0, len(instance_ids), 500):
            found.extend(
                conn.execute(
                    sa.select(c.hash).where(
                        c.instance_id.in_(instance_ids[start : start + 500]),
                        c.state_seq <= self.snapshot_seq,
                        c.hash.is_not(None),
                    )
                ).scalars()
            )
        return found

    # -- dead letters: inbound payloads that could not be accepted ----------------------------

    def dead_letter(self, source: str, reason: str, payload: bytes | str, now: datetime) -> int:
        """Keep a refused payload exactly as received (its bytes, when they are not UTF-8
        text), with why, for review and re-submission. Returns its id. Safe from any thread
        or process beside the writer (engine.store.letters)."""
        try:
            with self.engine.begin() as conn:
                return letters.keep(conn, source, reason, payload, now)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not keep a dead letter: {exc}") from exc

    def set_dead_letter_status(
        self,
        letter_id: int,
        status: str,
        reason: str | None = None,
        now: datetime | None = None,
    ) -> None:
        """Mark a dead letter `status` (held, accepted), with a new `reason` if given, and log
        the change. `now`: when (default: the wall clock)."""
        when = now if now is not None else datetime.now(UTC)
        try:
            with self.engine.begin() as conn:
                letters.change(conn, letter_id, status, reason, when)
        except sa.exc.SQLAlchemyError as exc:
            raise StoreError(f"could not change dead letter {letter_id}: {exc}") from exc


@dataclass(slots=True)
class _Staged:
    """A snapshot under way: the states as of input `seq`, serialized a slice at a time, the
    digest of every state it will hold, and (written behind) the thread writing it."""

    seq: int
    states: list[tuple[str, tuple[InstanceState, int]]]  # instance id -> (state, last seq)
    digest: StateDigest
    done: int = 0
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    timers: list[tuple[str, str, str]] = field(default_factory=list)
    writing: threading.Thread | None = None
    outcome: list[Any] = field(default_factory=list)


def _tail(conn: Connection, table: sa.Table, order: sa.Column[Any]) -> tuple[int, str]:
    row = conn.execute(sa.select(order, table.c.hash).order_by(order.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)
