"""The head of each chain (table `chain_heads`): its last record's number and hash.

The writer's chains (inputs, audit, outbox, snapshots) grow from heads it holds in memory and
moves in the transactions that add to them. The others (pathways, holidays, dead letters) are
written now and then, by the writer or by a thread or process beside it (an HTTP handler keeping
a dead letter, `carepath deadletter retry`): such a transaction first takes the chain's head row
(`Appender.lock`), which makes any other writer of that chain wait until it commits, then reads
the head and appends after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.errors import StoreError
from engine.store import schema as t
from engine.store.chain import GENESIS, hashed, link

_heads = t.chain_heads


def read_head(conn: Connection, chain: str, table: sa.Table) -> tuple[int, str]:
    """The chain's head; when it has none recorded, its last record's (number, hash), or the
    genesis of an empty chain."""
    row = conn.execute(
        sa.select(_heads.c.last, _heads.c.hash).where(_heads.c.chain == chain)
    ).first()
    if row is not None:
        return int(row.last), str(row.hash)
    last = conn.execute(
        sa.select(table.c.number, table.c.hash).order_by(table.c.number.desc()).limit(1)
    ).first()
    return (int(last.number), str(last.hash)) if last else (0, GENESIS)


def move_head(conn: Connection, chain: str, last: int, digest: str) -> None:
    moved = conn.execute(
        _heads.update().where(_heads.c.chain == chain).values(last=last, hash=digest)
    ).rowcount
    if not moved:
        conn.execute(_heads.insert().values(chain=chain, last=last, hash=digest))


class Appender:
    """Appends records to one chain inside the caller's transaction, after taking its head."""

    def __init__(
        self, conn: Connection, chain: str, table: sa.Table, fields: tuple[str, ...]
    ) -> None:
        self.conn, self.chain, self.table, self.fields = conn, chain, table, fields
        self.last, self.hash = 0, GENESIS
        self._moved = False

    @classmethod
    def lock(
        cls, conn: Connection, chain: str, table: sa.Table, fields: tuple[str, ...]
    ) -> Appender:
        """Take the chain's head row until the transaction ends (PostgreSQL: a row lock;
        SQLite: the database's write lock, which this write takes), then read it."""
        appender = cls(conn, chain, table, fields)
        locked = conn.execute(
            _heads.update().where(_heads.c.chain == chain).values(last=_heads.c.last)
        ).rowcount
        if not locked and conn.execute(sa.select(table.c.number).limit(1)).first():
            # appending after the table's last record would hide whatever was cut off its end
            raise StoreError(
                f"the {chain} chain has records but no recorded head: the store was changed "
                "outside Carepath (see `carepath audit verify`); nothing more is added to it"
            )
        appender.last, appender.hash = read_head(conn, chain, table)
        return appender

    def append(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Insert the record `values` (without number and hashes) as the chain's next one;
        returns the row as written."""
        row = {**values, "number": self.last + 1}
        prev = self.hash
        self.hash = link(prev, hashed(row, self.fields))
        self.last = row["number"]
        row.update(prev_hash=prev, hash=self.hash)
        self.conn.execute(self.table.insert().values(**row))
        self._moved = True
        return row

    def close(self) -> None:
        """Record the new head (in the same transaction)."""
        if self._moved:
            move_head(self.conn, self.chain, self.last, self.hash)
