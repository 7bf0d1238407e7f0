"""hash chains over everything the engine acts on: pathway versions, the outbox, holidays,
snapshots (with the digest of the states they hold) and dead letters (with their log);
dead letters keep bytes that are not UTF-8 text

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05 10:00:00

A store from before 0004 is brought up from the rows it holds, which are taken as they are:
each new chain is computed over them (pathway versions in the order they were loaded, outbox
actions by id, holiday lists by the input they apply from, snapshots by input, dead letters by
id, each with one log entry for its status now), every instance row gets its hash, and the
latest snapshot the digest of the states it holds (the earlier ones' states are gone: their
digest stays unknown). What was altered before 0004 cannot be told from what was not.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from engine.store.chain import (
    GENESIS,
    HOLIDAY_FIELDS,
    LETTER_FIELDS,
    OUTBOX_FIELDS,
    PATHWAY_FIELDS,
    SNAPSHOT_FIELDS,
    StateDigest,
    hashed,
    link,
    state_hash,
)
from engine.store.letters import content

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

PAGE = 5000
HASHES = ("prev_hash", "hash")


def _hash_columns() -> list[sa.Column[Any]]:
    return [sa.Column(name, sa.String(length=64), nullable=True) for name in HASHES]


def _required(table: str, *names: str) -> None:
    """Make the columns NOT NULL, now that every row has them (SQLite: the table is rebuilt)."""
    with op.batch_alter_table(table, schema=None) as batch_op:
        for name in names:
            kind = sa.BigInteger() if name == "number" else sa.String(length=64)
            batch_op.alter_column(name, existing_type=kind, nullable=False)


class _Chain:
    """Numbers and links rows in the order given, then records the head."""

    def __init__(self, name: str, fields: tuple[str, ...]) -> None:
        self.name, self.fields = name, fields
        self.number, self.hash = 0, GENESIS

    def link(self, row: dict[str, Any]) -> dict[str, Any]:
        self.number += 1
        row = {**row, "number": self.number}
        prev, self.hash = self.hash, link(self.hash, hashed(row, self.fields))
        return {**row, "prev_hash": prev, "hash": self.hash}

    def head(self) -> None:
        op.get_bind().execute(
            sa.text("INSERT INTO chain_heads (chain, last, hash) VALUES (:chain, :last, :hash)"),
            {"chain": self.name, "last": self.number, "hash": self.hash},
        )


def _pages(table: sa.TableClause, key: str, *columns: str) -> Iterator[Sequence[Any]]:
    """The rows of `table` in `key` order, a page at a time (no cursor stays open while the
    caller writes)."""
    bind, after = op.get_bind(), None
    selected: list[sa.ColumnClause[Any]] = [sa.column(key), *(sa.column(c) for c in columns)]
    while True:
        query = sa.select(*selected).select_from(table).order_by(sa.column(key)).limit(PAGE)
        if after is not None:
            query = query.where(sa.column(key) > after)
        page = bind.execute(query).all()
        if not page:
            return
        yield page
        after = page[-1][0]


def upgrade() -> None:
    bind = op.get_bind()

    # -- pathway versions, in the order they were loaded
    with op.batch_alter_table("pathway_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
        for column in _hash_columns():
            batch_op.add_column(column)
    chain = _Chain("pathways", PATHWAY_FIELDS)
    for row in bind.execute(
        sa.text(
            "SELECT key, pathway_id, version, source_hash, file, loaded_at FROM "
            "pathway_versions ORDER BY loaded_at, key"
        )
    ).all():
        linked = chain.link(dict(row._mapping))
        bind.execute(
            sa.text(
                "UPDATE pathway_versions SET number = :number, prev_hash = :prev_hash, "
                "hash = :hash WHERE key = :key"
            ),
            linked,
        )
    chain.head()
    _required("pathway_versions", "number", *HASHES)
    with op.batch_alter_table("pathway_versions", schema=None) as batch_op:
        batch_op.create_index("ix_pathway_versions_number", ["number"], unique=True)

    # -- the outbox, by action id
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
        for column in _hash_columns():
            batch_op.add_column(column)
    chain = _Chain("outbox", OUTBOX_FIELDS)
    names = ("seq", "instance_id", "patient_id", "pathway_key", "action", "payload")
    for page in _pages(sa.table("outbox"), "action_id", *names):
        bind.execute(
            sa.text(
                "UPDATE outbox SET number = :number, prev_hash = :prev_hash, hash = :hash "
                "WHERE action_id = :action_id"
            ),
            [chain.link(dict(row._mapping)) for row in page],
        )
    chain.head()
    _required("outbox", "number", *HASHES)

    # -- instances: each row's hash; the latest snapshot's digest of the states it holds
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hash", sa.String(length=64), nullable=True))
    latest = bind.execute(sa.text("SELECT MAX(seq) FROM snapshots")).scalar()
    digest = StateDigest()
    for page in _pages(sa.table("instances"), "instance_id", "last_seq", "state", "state_seq"):
        hashes = []
        for row in page:
            row_hash = state_hash(row.instance_id, row.last_seq, row.state)
            hashes.append({"instance_id": row.instance_id, "hash": row_hash})
            if latest is not None and row.state_seq <= latest:
                digest.add(row_hash)
        bind.execute(
            sa.text("UPDATE instances SET hash = :hash WHERE instance_id = :instance_id"), hashes
        )

    # -- snapshots, by input
    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        batch_op.add_column(sa.Column("number", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("digest", sa.Text(), nullable=True))
        for column in _hash_columns():
            batch_op.add_column(column)
    chain = _Chain("snapshots", SNAPSHOT_FIELDS)
    for row in bind.execute(sa.text("SELECT seq, instances FROM snapshots ORDER BY seq")).all():
        known = digest.hex() if row.seq == latest else None
        linked = chain.link({"seq": row.seq, "instances": row.instances, "digest": known})
        bind.execute(
            sa.text(
                "UPDATE snapshots SET number = :number, digest = :digest, "
                "prev_hash = :prev_hash, hash = :hash WHERE seq = :seq"
            ),
            linked,
        )
    chain.head()
    _required("snapshots", "number", *HASHES)

    # -- holidays: appended to only, numbered; by the input each list applies from
    recorded = bind.execute(sa.text("SELECT from_seq, dates FROM holidays ORDER BY from_seq")).all()
    op.drop_table("holidays")
    holidays = op.create_table(
        "holidays",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("from_seq", sa.BigInteger(), nullable=False),
        sa.Column("dates", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    assert holidays is not None
    chain = _Chain("holidays", HOLIDAY_FIELDS)
    rows = [chain.link({"from_seq": r.from_seq, "dates": r.dates}) for r in recorded]
    if rows:
        op.bulk_insert(holidays, rows)
    chain.head()

    # -- dead letters: bytes kept as bytes from now on; a log entry for each, as it is now
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.add_column(sa.Column("payload_bytes", sa.LargeBinary(), nullable=True))
    log = op.create_table(
        "dead_letter_log",
        sa.Column("number", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("letter_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.String(length=40), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("content", sa.String(length=64), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("number"),
    )
    assert log is not None
    with op.batch_alter_table("dead_letter_log", schema=None) as batch_op:
        batch_op.create_index("ix_dead_letter_log_letter", ["letter_id", "number"], unique=False)
    chain = _Chain("dead_letters", LETTER_FIELDS)
    columns = ("received_at", "source", "reason", "payload", "status")
    for page in _pages(sa.table("dead_letters"), "id", *columns):
        entries = [
            chain.link(
                {
                    "letter_id": r.id,
                    "at": r.received_at,
                    "status": r.status,
                    "reason": r.reason,
                    "content": content(r.received_at, r.source, r.payload.encode("utf-8")),
                }
            )
            for r in page
        ]
        op.bulk_insert(log, entries)
    chain.head()


def downgrade() -> None:
    bind = op.get_bind()
    bind.execute(
        sa.text(
            "DELETE FROM chain_heads WHERE chain IN "
            "('pathways', 'outbox', 'holidays', 'snapshots', 'dead_letters')"
        )
    )
    with op.batch_alter_table("dead_letter_log", schema=None) as batch_op:
        batch_op.drop_index("ix_dead_letter_log_letter")
    op.drop_table("dead_letter_log")
    # a payload kept as bytes goes back as its rendering, the only text 0003 could hold
    with op.batch_alter_table("dead_letters", schema=None) as batch_op:
        batch_op.drop_column("payload_bytes")

    # the list in effect for each input: the last one recorded for it
    recorded = bind.execute(sa.text("SELECT from_seq, dates FROM holidays ORDER BY number")).all()
    kept = {r.from_seq: r.dates for r in recorded}
    op.drop_table("holidays")
    holidays = op.create_table(
        "holidays",
        sa.Column("from_seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("dates", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("from_seq"),
    )
    assert holidays is not None
    if kept:
        op.bulk_insert(holidays, [{"from_seq": k, "dates": v} for k, v in sorted(kept.items())])

    with op.batch_alter_table("snapshots", schema=None) as batch_op:
        for name in ("number", "digest", *HASHES):
            batch_op.drop_column(name)
    with op.batch_alter_table("instances", schema=None) as batch_op:
        batch_op.drop_column("hash")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        for name in ("number", *HASHES):
            batch_op.drop_column(name)
    with op.batch_alter_table("pathway_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_pathway_versions_number")
        for name in ("number", *HASHES):
            batch_op.drop_column(name)
