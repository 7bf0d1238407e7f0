"""The store's tables (SQLAlchemy Core). Alembic migrations in engine/store/migrations create and
upgrade them; this module is the single description both the code and the first migration use.

    inputs            every accepted event and every timer firing, and every duplicate, in one
                      global sequence, hash-chained
    pathway_versions  the full YAML text of every pathway version an instance was pinned to;
                      hash-chained (the text's sha256 in the chain)
    instances         every instance, a row from the commit that created it, with its state as
                      of `state_seq` (its creation or the latest snapshot that included it)
    snapshots         the snapshots taken: instance states and timers written as of `seq`, with
                      a digest of every state the snapshot holds; hash-chained
    timers            pending timers as of the latest snapshot, indexed by due time
    holidays          the public holidays business days were counted with, from which input on;
                      hash-chained
    outbox            actions to carry out, with their status and outcome; what was decided is
                      hash-chained, the status is checked against the outcomes in the input log
    audit             every decision: rule, pathway version, input, the facts it saw; hash-chained
    dead_letters      inbound payloads that could not be accepted, with the reason and status
    dead_letter_log   what happened to each dead letter (held, refused again, accepted); chained
    chain_heads       the last record of each chain

Which fields each chain covers, and what `audit verify` checks besides: engine.store.chain and
engine.store.crosscheck.

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
    LargeBinary,
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
    Column("number", BigInteger, nullable=False),  # its place in the chain: 1, 2, 3...
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_pathway_versions_number", pathway_versions.c.number, unique=True)

instances = Table(
    "instances",
    metadata,
    Column("instance_id", String(64), primary_key=True),
    Column("pathway_key", String(160), nullable=False),
    Column("pathway_id", String(128), nullable=False),
    Column("patient_id", String(128), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("enrolled_at", String(40), nullable=False),
    Column("last_seq", BigInteger, nullable=False),  # the last input that changed `state`
    Column("state", Text, nullable=False),
    Column("state_seq", BigInteger, nullable=False, server_default="0"),  # `state` as of it
    Column("hash", String(64)),  # chain.state_hash of (instance_id, last_seq, state)
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
    Column("status", String(16), nullable=False),  # pending | running | succeeded | failed
    # (recorded: an enrol or exit, nothing to carry out)
    Column("attempts", Integer, nullable=False, default=0),
    Column("outcome", Text),
    Column("updated_at", String(40)),
    Column("number", BigInteger, nullable=False),  # its place in the chain: 1, 2, 3...
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
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
    # inputs | audit | pathways | outbox | holidays | snapshots | dead_letters
    Column("chain", String(16), primary_key=True),
    Column("last", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
)

#: Every snapshot taken (Store.snapshot): the instance states and timers it wrote are current as
#: of the input `seq`; a restart re-decides only the inputs after the latest one. `digest`
#: (chain.StateDigest) covers every state the snapshot holds, the ones it wrote and the ones
#: earlier snapshots wrote that it kept; a restart checks it before trusting the states.
snapshots = Table(
    "snapshots",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("instances", Integer, nullable=False),  # instance states written by it
    Column("number", BigInteger, nullable=False),  # its place in the chain: 1, 2, 3...
    Column("digest", Text),  # chain.StateDigest; None: taken before migration 0004, not known
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

#: The public holidays the engine counted business days with (a JSON list of dates), from the
#: input `from_seq` on, until the next row: replay and restart decide each input with the list
#: it was first decided with. Appended to only: a list changed again before any input was decided
#: with the one before is a later row with the same `from_seq`, which wins.
holidays = Table(
    "holidays",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),  # chain: 1, 2, 3...
    Column("from_seq", BigInteger, nullable=False),
    Column("dates", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("received_at", String(40), nullable=False),
    Column("source", String(32), nullable=False),  # json | hl7v2 | fhir | simulate
    Column("reason", Text, nullable=False),
    # the payload as received: its text, or (bytes that are not UTF-8 text, or hold a NUL) the
    # bytes in `payload_bytes` and a readable rendering of them here (letters.render)
    Column("payload", Text, nullable=False),
    Column("status", String(16), nullable=False),  # held | accepted
    Column("payload_bytes", LargeBinary),
)

#: Every change of every dead letter, hash-chained: held when it came in (`content`: the sha256
#: of what came in, letters.content), held again with the reason after a retry was refused,
#: accepted. A letter's row must agree with its latest entry.
dead_letter_log = Table(
    "dead_letter_log",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("letter_id", Integer, nullable=False),
    Column("at", String(40), nullable=False),
    Column("status", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("content", String(64), nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
)
Index("ix_dead_letter_log_letter", dead_letter_log.c.letter_id, dead_letter_log.c.number)
