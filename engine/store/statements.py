"""The SQL the writer runs for a group and for a snapshot, compiled once per dialect."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from engine.store import schema as t
from engine.store.chain import AUDIT_FIELDS, INPUT_FIELDS, OUTBOX_FIELDS
from engine.store.rows import compact_json

#: The columns of an outbox row as `rows.outbox_row` gives them, then its place in the chain.
OUTBOX_COLUMNS = (
    "action_id",
    "seq",
    "instance_id",
    "patient_id",
    "pathway_key",
    "action",
    "payload",
    "status",
    "attempts",
    "number",
)
_HASHED = tuple(OUTBOX_COLUMNS.index(name) for name in OUTBOX_FIELDS)


def outbox_fields(values: Sequence[Any]) -> dict[str, Any]:
    """The fields of the outbox row `values` (in OUTBOX_COLUMNS order) its chain hash covers."""
    return {name: values[i] for name, i in zip(OUTBOX_FIELDS, _HASHED, strict=True)}


@dataclass(frozen=True, slots=True)
class Statements:
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
    known: str  # the accepted events among the ids of a JSON array: (input_id, payload)

    def run(self, conn: Connection, statement: str, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run `statement` for every row of `rows` (tuples in the statement's column order)."""
        if not rows:
            return
        if self.columnar:
            conn.exec_driver_sql(statement, (compact_json(rows),))
        else:
            conn.exec_driver_sql(statement, list(rows))

    @classmethod
    def of(cls, dialect: sa.Dialect) -> Statements:
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

        ids = (
            "SELECT json_array_elements_text(%s::json)"
            if columnar
            else "SELECT value FROM json_each(?)"
        )
        return cls(
            # one JSON array of ids, not a statement built per group: building SQLAlchemy
            # selects left reference cycles behind, ten objects per group, whose collection
            # paused the service for 150 ms every ~10 s under load (bench/service_load.py); the
            # kind conditions repeat the partial index's, so that SQLite uses it
            known=(
                f"SELECT input_id, payload FROM {t.inputs.name} WHERE input_id IN ({ids}) "
                "AND kind != 'duplicate' AND kind = 'event'"
            ),
            columnar=columnar,
            inputs=insert(t.inputs, [*INPUT_FIELDS, "prev_hash", "hash"]),
            audit=insert(t.audit, [*AUDIT_FIELDS, "prev_hash", "hash"]),
            outbox=insert(t.outbox, [*OUTBOX_COLUMNS, "prev_hash", "hash"]),
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
                    "hash",
                ],
            ),
            # an instance ended since the latest snapshot: its row says so at once; its state
            # (and `last_seq`, the input that last changed that state) wait for the next one
            status=update(t.instances, ["active"], "instance_id"),
            # `active` is the commits' (a row's, from the commit that created it, changed by
            # the one that ended it): a snapshot written behind them must not set it back
            snapshot_instance=update(
                t.instances, ["last_seq", "state", "state_seq", "hash"], "instance_id"
            ),
            # a snapshot replaces the timers of each instance it writes
            cancel_timers=delete(t.timers, "instance_id"),
            arm_timer=insert(t.timers, ["instance_id", "key", "due_utc"]),
            snapshot=insert(
                t.snapshots, ["seq", "instances", "number", "digest", "prev_hash", "hash"]
            ),
            heads=insert(
                t.chain_heads,
                ["chain", "last", "hash"],
                ' ON CONFLICT ("chain") DO UPDATE SET "last" = excluded."last", '
                '"hash" = excluded."hash"',
            ),
        )
