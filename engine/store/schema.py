"""The store's tables (SQLAlchemy Core). Alembic migrations in engine/store/migrations create and
upgrade them; this module is the single description both the code and the first migration use.

    inputs            every accepted event and every timer firing, and every duplicate, in one
                      global sequence, hash-chained
    pathway_versions  the full YAML text of every pathway version an instance was pinned to
    instances         every instance, a row from the commit that created it, with its state as
                      of `state_seq` (its creation or the latest snapshot that included it)
    snapshots         the snapshots taken: instance states and timers written as of `seq`
    timers            pending timers as of the latest snapshot, indexed by due time
    holidays          the public holidays business days were counted with, from which input on
    outbox            actions to carry out, with their status and outcome
    audit             every decision: rule, pathway version, input, the facts it saw; hash-chained
    dead_letters      inbound payloads that could not be accepted, with the reason

Times are stored as text in UTC, fixed width (`2026-01-09T15:00:00.000000+00:00`), so that they
sort and compare the same on SQLite and PostgreSQL; JSON is stored as text.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

inputs = Table(
    "inputs",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("kind", String(16), nullable=False),  # event | timer | duplicate
    Column("input_id", String(256), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("instance_id", String(64)),  # timers only
    Column("type", String(64), nullable=False),  # event type, or the timer key
    Column("occurred_at", String(40), nullable=False),
    Column("recorded_at", String(40), nullable=False),
    Column("decided_at", String(40), nullable=False),  # `now` given to the decision core
    Column("payload", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index(
    "ix_inputs_accepted_id",
    inputs.c.input_id,
    unique=True,
    sqlite_where=inputs.c.kind != "duplicate",
    postgresql_where=inputs.c.kind != "duplicate",
)
Index("ix_inputs_patient", inputs.c.patient_id, inputs.c.seq)

pathway_versions = Table(
    "pathway_versions",
    metadata,
    Column("key", String(160), primary_key=True),
    Column("pathway_id", String(128), nullable=False),
    Column("version", String(64), nullable=False),
    Column("source_hash", String(64), nullable=False),
    Column("source_text", Text, nullable=False),
    Column("file", Text, nullable=False),
    Column("loaded_at", String(40), nullable=False),
)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("pathway_key", String(160), nullable=False),
    Column("pathway_id", String(128), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("enrolled_at", String(40), nullable=False),
    Column("last_seq", BigInteger, nullable=False),  # the last input that changed it
    Column("state", Text, nullable=False),
    Column("state_seq", BigInteger, nullable=False, server_default="0"),  # `state` as of it
)
Index("ix_instances_patient", instances.c.patient_id, instances.c.pathway_id)

timers = Table(
    "timers",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("key", String(160), primary_key=True),
    Column("due_utc", String(40), nullable=False),
)
Index("ix_timers_due", timers.c.due_utc)

outbox = Table(
    "outbox",
    metadata,
    Column("action_id", String(96), primary_key=True),
    Column("seq", BigInteger, nullable=False),  # the input that decided it
    Column("instance_id", String(64), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("pathway_key", String(160), nullable=False),
    Column("action", String(64), nullable=False),
    Column("payload", Text, nullable=False),  # Action.as_dict()
    Column("status", String(16), nullable=False),  # pending | running | succeeded | failed | none
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome", Text),
    Column("updated_at", String(40)),
)
Index("ix_outbox_status", outbox.c.status, outbox.c.seq)
Index("ix_outbox_instance", outbox.c.instance_id)

audit = Table(
    "audit",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),  # the input that caused it
    Column("instance_id", String(64), nullable=False),
    Column("pathway_key", String(160), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("rule", String(160), nullable=False),
    Column("record", Text, nullable=False),  # AuditEntry.as_dict() + times
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_audit_instance", audit.c.instance_id, audit.c.id)
Index("ix_audit_seq", audit.c.seq)

#: The newest record of each chain, so that cutting records off the end is detected too.
chain_heads = Table(
    "chain_heads",
    metadata,
    Column("chain", String(16), primary_key=True),  # inputs | audit
    Column("last", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Every snapshot taken (Store.snapshot): the instance states and timers it wrote are current as
#: of the input `seq`; a restart re-decides only the inputs after the latest one.
snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("instances", Integer, nullable=False),  # instance states written by it
)

#: The public holidays the engine counted business days with (a JSON list of dates), from the
#: input `from_seq` on, until the next row: replay and restart decide each input with the list
#: it was first decided with.
holidays = Table(
    "holidays",
    metadata,
    Column("from_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("dates", Text, nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", String(40), nullable=False),
    Column("source", String(32), nullable=False),  # json | hl7v2 | fhir | simulate
    Column("reason", Text, nullable=False),
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # held | retried | accepted
)
