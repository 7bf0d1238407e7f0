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

import fcntl
import json
import time
from bisect import bisect_right
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event

from engine.core import Action, AuditEntry, Decision, InstanceState
from engine.core.inputs import EventInput, Input, TimerInput
from engine.definition.model import Pathway
from engine.errors import StoreError
from engine.store import schema as t
from engine.store.chain import AUDIT_FIELDS, GENESIS, INPUT_FIELDS, hashed, link
from engine.store.migrate import upgrade
from engine.store.times import to_text

DEFAULT_DATA_DIR = Path("data")


def default_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'carepath.db'}"


@dataclass(slots=True)
class Recorded:
    """One input and everything decided for it, ready to be written."""

    input: Input | None  # None for a duplicate
    kind: str  # event | timer | duplicate
    input_id: str
    patient_id: str
    type: str
    occurred_at: datetime
    recorded_at: datetime
    decided_at: datetime
    payload: Mapping[str, Any]
    decision: Decision = field(default_factory=Decision)
    changed: list[InstanceState] = field(default_factory=list)
    instance_id: str | None = None
    seq: int = 0

    @classmethod
    def of(
        cls,
        input_: Input,
        decided_at: datetime,
        decision: Decision,
        changed: list[InstanceState],
        patient_id: str,
    ) -> Recorded:
        if isinstance(input_, EventInput):
            e = input_.event
            return cls(
                input_,
                "event",
                e.id,
                e.patient_id,
                e.type,
                e.occurred_at,
                input_.recorded_at,
                decided_at,
                e.model_dump(mode="json"),
                decision,
                changed,
                seq=input_.seq,
            )
        assert isinstance(input_, TimerInput)
        return cls(
            input_,
            "timer",
            input_.input_id,
            patient_id,
            input_.timer,
            input_.due_at,
            input_.recorded_at,
            decided_at,
            input_.as_dict(),
            decision,
            changed,
            instance_id=input_.instance_id,
            seq=input_.seq,
        )


#: `json.dumps(value, separators=(",", ":"))` and the same with `sort_keys=True`, built once
#: (`json.dumps` with options builds a new encoder for every call); the text is the same.
_COMPACT_JSON = json.JSONEncoder(separators=(",", ":")).encode
_SORTED_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


@dataclass(slots=True)
class _Prepared:
    """A batch's rows, as tuples in the column order of `_Statements`, ready to commit."""

    size: int
    heads: tuple[int, str, int, str]  # (seq, input hash, audit id, audit hash) once committed
    inputs: list[tuple[Any, ...]]
    audit: list[tuple[Any, ...]]
    outbox: list[tuple[Any, ...]]
    instances: list[tuple[Any, ...]]  # instances created by the batch
    statuses: list[tuple[Any, ...]]  # (active, last_seq, instance id) of those it ended
    changed: dict[str, tuple[InstanceState, int]]  # instance id -> (state, last seq)


@dataclass(frozen=True, slots=True)
class _Statements:
    """The statements `Store.write` and `Store.snapshot` run, as the driver's SQL, and how.

    SQLite: a statement per row, through sqlite3's `executemany` (a loop in C). PostgreSQL: one
    statement for all the rows, sent as one JSON array of rows that the server takes apart
    (`json_array_elements`): psycopg's `executemany` sends a statement per row, and its pipeline
    costs tens of microseconds of Python per row (a snapshot of 20,000 instance states and
    their timers took 5 s that way, bench/ingest_speed.py); one array parameter per column is
    no better, psycopg escapes every JSON text in it with a regular expression. The JSON
    encoder is C, and the text stored is the same."""

    columnar: bool
    inputs: str
    audit: str
    outbox: str
    instances: str
    status: str
    snapshot_instance: str
    cancel_timers: str
    arm_timer: str
    snapshot: str
    heads: str

    def run(self, conn: Connection, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run `statement` for every row of `rows` (tuples in the statement's column order)."""
        if not rows:
            return
        if self.columnar:
            conn.exec_driver_sql(statement, (_COMPACT_JSON(rows),))
        else:
            conn.exec_driver_sql(statement, list(rows))

    @classmethod
    def of(cls, dialect: sa.Dialect) -> _Statements:
        columnar = dialect.name == "postgresql"

        def quoted(columns: Sequence[str]) -> str:
            return ", ".join(f'"{c}"' for c in columns)

        def field(table: sa.Table, columns: Sequence[str], name: str) -> str:
            """A column of the JSON row `e`, as its type."""
            # text as text: a cast to VARCHAR(n) would cut a longer value short, silently,
            # where the column's own type refuses it
            column = table.c[name]
            kind = "TEXT" if isinstance(column.type, sa.String) else column.type.compile(dialect)
            return f"(e->>{list(columns).index(name)})::{kind}"

        rows = "json_array_elements(%s::json) AS e"

        def insert(table: sa.Table, columns: Sequence[str], tail: str = "") -> str:
            if columnar:
                fields = ", ".join(field(table, columns, c) for c in columns)
                values = f"SELECT {fields} FROM {rows}"
            else:
                values = f"VALUES ({', '.join(['?'] * len(columns))})"
            return f"INSERT INTO {table.name} ({quoted(columns)}) {values}{tail}"

        def update(table: sa.Table, columns: Sequence[str], key: str) -> str:
            """Set `columns` of the row whose `key` is the row's last value."""
            if columnar:
                every = [*columns, key]
                sets = ", ".join(f'"{c}" = {field(table, every, c)}' for c in columns)
                return (
                    f"UPDATE {table.name} AS r SET {sets} FROM {rows} "
                    f'WHERE r."{key}" = {field(table, every, key)}'
                )
            sets = ", ".join(f'"{c}" = ?' for c in columns)
            return f'UPDATE {table.name} SET {sets} WHERE "{key}" = ?'

        def delete(table: sa.Table, key: str) -> str:
            if columnar:
                return (
                    f'DELETE FROM {table.name} WHERE "{key}" IN '
                    f"(SELECT {field(table, [key], key)} FROM {rows})"
                )
            return f'DELETE FROM {table.name} WHERE "{key}" = ?'

        return cls(
            columnar=columnar,
            inputs=insert(t.inputs, [*INPUT_FIELDS, "prev_hash", "hash"]),
            audit=insert(t.audit, [*AUDIT_FIELDS, "prev_hash", "hash"]),
            outbox=insert(
                t.outbox,
                [
                    "action_id",
                    "seq",
                    "instance_id",
                    "patient_id",
                    "pathway_key",
                    "action",
                    "payload",
                    "status",
                    "attempts",
                ],
            ),
            instances=insert(
                t.instances,
                [
                    "instance_id",
                    "pathway_key",
                    "pathway_id",
                    "patient_id",
                    "active",
                    "enrolled_at",
                    "last_seq",
                    "state",
                    "state_seq",
                ],
            ),
            status=update(t.instances, ["active", "last_seq"], "instance_id"),
            snapshot_instance=update(
                t.instances, ["active", "last_seq", "state", "state_seq"], "instance_id"
            ),
            # a snapshot replaces the timers of each instance it writes
            cancel_timers=delete(t.timers, "instance_id"),
            arm_timer=insert(t.timers, ["instance_id", "key", "due_utc"]),
            snapshot=insert(t.snapshots, ["seq", "instances"]),
            heads=insert(
                t.chain_heads,
                ["chain", "last", "hash"],
                ' ON CONFLICT ("chain") DO UPDATE SET "last" = excluded."last", '
                '"hash" = excluded."hash"',
            ),
        )


class _WriterLock:
    """See Store.claim_writer."""

    WRITER_REFUSED = (
        "another Carepath process is writing to this store (carepath serve, simulate --db, "
        "dispatch or deadletter retry): stop it first"
    )

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release

    @classmethod
    def take(cls, engine: Engine, wait_seconds: float) -> _WriterLock:
        deadline = time.monotonic() + wait_seconds
        while True:
            lock = cls._try(engine)
            if lock is not None:
                return lock
            if time.monotonic() >= deadline:
                raise StoreError(cls.WRITER_REFUSED)
            time.sleep(0.2)

    @classmethod
    def _try(cls, engine: Engine) -> _WriterLock | None:
        if engine.dialect.name == "postgresql":
            conn = engine.connect()
            try:
                held = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(hashtext(current_schema() || :name))"),
                    {"name": "/carepath-writer"},
                ).scalar()
                conn.commit()
            except BaseException:
                conn.close()
                raise
            if not held:
                conn.close()
                return None
            return cls(conn.invalidate)  # the session ends: the lock goes with it
        database = engine.url.database
        if not database or database == ":memory:" or database.startswith("file::memory:"):
            return cls(lambda: None)  # nobody else can reach an in-memory database
        handle = open(f"{database}.writer-lock", "a+b")  # noqa: SIM115 (held until release)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return cls(handle.close)


class Store:
    def __init__(self, engine: Engine, schema: str | None = None) -> None:
        self.engine = engine
        self.schema = schema  # the PostgreSQL schema given to `open` apart from the URL
        self._read_tails()
        self._sql = _Statements.of(engine.dialect)
        self._writer: _WriterLock | None = None
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
        lock = _WriterLock.take(self.engine, wait_seconds)
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
                        dates=_COMPACT_JSON(sorted(d.isoformat() for d in current)),
                    )
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
        if not ids:
            return set()
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                found.update(
                    conn.execute(
                        sa.select(t.inputs.c.input_id).where(
                            t.inputs.c.input_id.in_(chunk),
                            # The partial index's own condition, spelled out: SQLite uses a
                            # partial index only when the query repeats its WHERE term (it
                            # cannot infer it from kind = 'event'), and otherwise scanned the
                            # whole input log for every group (63 ms per group at 300,000
                            # inputs, a third of ingest time: bench/ingest_speed.py).
                            t.inputs.c.kind != "duplicate",
                            t.inputs.c.kind == "event",
                        )
                    ).scalars()
                )
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
        return sorted(rows, key=_action_order)

    def audit_records(self, *, patient_id: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(t.audit.c.record).order_by(t.audit.c.id)
        with self.engine.connect() as conn:
            records = [json.loads(r) for r in conn.execute(query).scalars()]
        if patient_id is not None:
            records = [r for r in records if r.get("patient_id") == patient_id]
        return records

    # -- writing ---------------------------------------------------------------------------------

    def write(self, batch: Sequence[Recorded]) -> None:
        """Commit a batch of decided inputs in one transaction (or none of it)."""
        if not batch:
            return
        self._commit(self._prepare(batch))

    def _prepare(self, batch: Sequence[Recorded]) -> _Prepared:
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
                "payload": _SORTED_JSON(rec.payload),
            }
            fields = hashed(row, INPUT_FIELDS)  # in INPUT_FIELDS order, as the statement
            prev = input_hash
            input_hash = link(input_hash, fields)
            input_rows.append((*fields.values(), prev, input_hash))
            keys = {s.instance_id: s.pathway_key for s in rec.changed}
            for entry in rec.decision.audit:
                audit_id += 1
                arow = _audit_row(audit_id, row, entry, keys.get(entry.instance_id, ""))
                fields = hashed(arow, AUDIT_FIELDS)
                prev = audit_hash
                audit_hash = link(audit_hash, fields)
                audit_rows.append((*fields.values(), prev, audit_hash))
            for action in rec.decision.actions:
                outbox_rows.append(_outbox_row(seq, action))
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
                        _COMPACT_JSON(state.as_dict()),
                        last,
                    )
                )
            elif active != state.active:
                statuses.append((state.active, last, state.instance_id))
        return _Prepared(
            size=len(batch),
            heads=(seq, input_hash, audit_id, audit_hash),
            inputs=input_rows,
            audit=audit_rows,
            outbox=outbox_rows,
            instances=created,
            statuses=statuses,
            changed=states,
        )

    def _commit(self, prepared: _Prepared) -> None:
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
            raise StoreError("a snapshot needs every state changed since the latest one (the "
                             "engine's restore notes them)")
        sql, seq = self._sql, self.last_seq
        states = sorted(self._changed.items())
        rows = [
            (state.active, last, _COMPACT_JSON(state.as_dict()), seq, instance_id)
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

    def dead_letter(self, source: str, reason: str, payload: str, now: datetime) -> int:
        """Keep a refused payload, with why, for review and re-submission. Returns its id."""
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

    def dead_letters(self, status: str | None = "held") -> list[dict[str, Any]]:
        query = sa.select(t.dead_letters).order_by(t.dead_letters.c.id)
        if status is not None:
            query = query.where(t.dead_letters.c.status == status)
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

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
        return sorted(out, key=_action_order)

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


@dataclass(frozen=True, slots=True)
class OutboxItem:
    action_id: str
    pathway_key: str
    action: dict[str, Any]  # Action.as_dict()
    attempts: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What carrying out an action came to. `reference` is the outside system's id for it (a
    booked appointment, a FHIR resource id, a message id)."""

    action_id: str
    succeeded: bool
    reference: str | None = None
    error: str | None = None
    attempts: int = 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "succeeded": self.succeeded,
            "reference": self.reference,
            "error": self.error,
            "attempts": self.attempts,
        }


class Outbox:
    """The outbox of a store: actions waiting to be carried out, claimed in batches.

    pending --claim--> running --complete--> succeeded | failed
    A dispatcher that dies leaves actions `running`; `recover()` puts them back to pending when
    the next one starts. Every action carries its id as idempotency key, so an action re-run
    after such a crash has its effect once."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine

    def recover(self) -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                t.outbox.update().where(t.outbox.c.status == "running").values(status="pending")
            ).rowcount

    def release(self, action_ids: Sequence[str]) -> int:
        """Put claimed actions that were not finished (their flow run crashed or was lost) back
        to pending, for the next claim."""
        if not action_ids:
            return 0
        with self.engine.begin() as conn:
            return conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id.in_(list(action_ids)), t.outbox.c.status == "running")
                .values(status="pending")
            ).rowcount

    def claim(self, limit: int, now: datetime) -> list[OutboxItem]:
        with self.engine.begin() as conn:
            rows = conn.execute(
                sa.select(
                    t.outbox.c.action_id,
                    t.outbox.c.pathway_key,
                    t.outbox.c.payload,
                    t.outbox.c.attempts,
                )
                .where(t.outbox.c.status == "pending")
                .order_by(t.outbox.c.seq, t.outbox.c.action_id)
                .limit(limit)
            ).all()
            if not rows:
                return []
            ids = [r.action_id for r in rows]
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id.in_(ids), t.outbox.c.status == "pending")
                .values(status="running", attempts=t.outbox.c.attempts + 1, updated_at=to_text(now))
            )
        return [
            OutboxItem(r.action_id, r.pathway_key, json.loads(r.payload), r.attempts + 1)
            for r in rows
        ]

    def complete(self, outcomes: Sequence[Outcome], now: datetime) -> None:
        if not outcomes:
            return
        with self.engine.begin() as conn:
            conn.execute(
                t.outbox.update()
                .where(t.outbox.c.action_id == sa.bindparam("aid"))
                .values(
                    status=sa.bindparam("st"),
                    outcome=sa.bindparam("oc"),
                    updated_at=sa.bindparam("at"),
                ),
                [
                    {
                        "aid": o.action_id,
                        "st": "succeeded" if o.succeeded else "failed",
                        "oc": json.dumps(o.as_dict(), sort_keys=True),
                        "at": to_text(now),
                    }
                    for o in outcomes
                ],
            )

    def status(self, action_id: str) -> tuple[str, dict[str, Any] | None] | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(t.outbox.c.status, t.outbox.c.outcome).where(
                    t.outbox.c.action_id == action_id
                )
            ).first()
        if row is None:
            return None
        return row.status, json.loads(row.outcome) if row.outcome else None

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            return {
                r.status: r.n
                for r in conn.execute(
                    sa.select(t.outbox.c.status, sa.func.count().label("n")).group_by(
                        t.outbox.c.status
                    )
                )
            }


def _tail(conn: Connection, table: sa.Table, order: sa.Column[Any]) -> tuple[int, str]:
    row = conn.execute(sa.select(order, table.c.hash).order_by(order.desc()).limit(1)).first()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


def _action_order(action: Mapping[str, Any]) -> tuple[str, int]:
    _, _, n = str(action["id"]).rpartition(".")
    return (action["fired_at"], int(n) if n.isdigit() else 0)


def _audit_row(
    audit_id: int, input_row: Mapping[str, Any], entry: AuditEntry, pathway_key: str
) -> dict[str, Any]:
    """The audit row of `entry`, decided for the input whose log row is `input_row`."""
    record = entry.as_dict()
    record.update(
        {
            "seq": input_row["seq"],
            "pathway": pathway_key,
            "patient_id": input_row["patient_id"],
            "input": input_row["input_id"],
            "input_type": input_row["type"],
            "occurred_at": input_row["occurred_at"],
            "recorded_at": input_row["recorded_at"],
            "decided_at": input_row["decided_at"],
        }
    )
    return {
        "id": audit_id,
        "seq": input_row["seq"],
        "instance_id": entry.instance_id,
        "pathway_key": pathway_key,
        "kind": entry.kind,
        "rule": entry.rule,
        "record": _SORTED_JSON(record),
    }


def action_text(action: Action) -> str:
    """An action as the outbox stores it (its `payload`)."""
    return _COMPACT_JSON(action.as_dict())


def _outbox_row(seq: int, action: Action) -> tuple[Any, ...]:
    """The outbox row of `action`, in the column order of `_Statements.outbox`."""
    carried_out = action.action not in ("enrol", "exit")
    return (
        action.id,
        seq,
        action.instance_id,
        action.patient_id,
        f"{action.pathway}@{action.pathway_version}",
        action.action,
        action_text(action),
        "pending" if carried_out else "recorded",
        0,
    )


def create_engine(url: str, *, schema: str | None = None) -> Engine:
    """An SQLAlchemy engine for our store: SQLite in WAL mode with full sync, or PostgreSQL
    (optionally in its own schema, which is created if missing)."""
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            # Throughput (bench/ingest_speed.py): a commit of a group touches a page or more per
            # instance it changed. With the default 2 MiB page cache those pages are read back
            # from the OS for every group, and with the default checkpoint at 1,000 WAL pages
            # nearly every commit also copied its pages into the database file and synced it
            # (half the wall time of ingest at 30,000 instances). A 64 MiB cache and a
            # checkpoint every 16,384 pages (64 MiB of WAL) write each hot page once per many
            # groups. Durability is unchanged: every commit is still synced to the WAL.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA wal_autocheckpoint=16384")
            cursor.close()

        return engine
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    kwargs: dict[str, Any] = {}
    if schema:
        kwargs["connect_args"] = {"options": f"-csearch_path={schema}"}
        bootstrap = sa.create_engine(url)
        with bootstrap.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        bootstrap.dispose()
    return sa.create_engine(url, **kwargs)
