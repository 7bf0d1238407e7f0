"""The schema: Alembic creates it on an empty database, re-opening changes nothing, and a
migration that fails half way leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from engine.errors import StoreError
from engine.store import Store
from engine.store import schema as t
from engine.store.chain import GENESIS
from engine.store.migrate import MIGRATIONS

TABLES = {
    "alembic_version",
    "audit",
    "chain_heads",
    "dead_letter_log",
    "dead_letters",
    "holidays",
    "inputs",
    "instances",
    "outbox",
    "pathway_versions",
    "snapshots",
    "timers",
}


def _head() -> str:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def _version(store: Store) -> str | None:
    with store.engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def test_open_creates_the_schema_on_an_empty_database(store_url: str) -> None:
    bare = sa.create_engine(store_url)
    assert sa.inspect(bare).get_table_names() == []
    bare.dispose()

    store = Store.open(store_url)
    try:
        assert set(sa.inspect(store.engine).get_table_names()) == TABLES
        assert _version(store) == _head()
        with store.engine.connect() as conn:
            # what the migration made is what schema.py describes, on this dialect too
            assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        assert (store.last_seq, store.input_hash) == (0, GENESIS)
        assert (store.last_audit, store.audit_hash) == (0, GENESIS)
    finally:
        store.close()


@pytest.fixture
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine sends while the fixture is active."""
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement.strip().split(None, 1)[0].upper())

    sa.event.listen(sa.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.Engine, "before_cursor_execute", record)


def test_reopening_is_a_no_op_upgrade(store_url: str, statements: list[str]) -> None:
    store = Store.open(store_url)
    store.dead_letter("json", "kept across opens", "{}", _now())
    store.close()
    statements.clear()

    again = Store.open(store_url)
    try:
        assert statements, "the re-open should at least read the version"
        assert set(statements) <= {"SELECT", "PRAGMA", "BEGIN", "SHOW"}, statements
        assert _version(again) == _head()
        assert [d["reason"] for d in again.dead_letters()] == ["kept across opens"]
    finally:
        again.close()


def test_a_migration_that_fails_half_way_leaves_no_tables(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash (here: an error) after some tables were created must not leave a schema that no
    later open can get past: the whole upgrade is one transaction, on SQLite too."""
    create_table = Operations.create_table
    made: list[str] = []

    def fail_on_the_third(self: Operations, name: str, *args: Any, **kwargs: Any) -> Any:
        if len(made) == 2:
            raise sa.exc.OperationalError("CREATE TABLE", {}, Exception("power cut"))
        made.append(name)
        return create_table(self, name, *args, **kwargs)

    monkeypatch.setattr(Operations, "create_table", fail_on_the_third)
    with pytest.raises(StoreError, match="power cut"):
        Store.open(store_url)
    assert len(made) == 2
    bare = sa.create_engine(store_url)
    assert sa.inspect(bare).get_table_names() == []
    bare.dispose()

    monkeypatch.undo()
    store = Store.open(store_url)
    try:
        assert set(sa.inspect(store.engine).get_table_names()) == TABLES
        assert _version(store) == _head()
    finally:
        store.close()


def test_upgrading_from_0001_records_its_instances_as_a_snapshot(store_url: str) -> None:
    """Before 0002 every commit rewrote the states it changed: the instances table was a
    snapshot as of the last input, and 0002 says so, so that a restart re-decides nothing."""
    from engine.store.migrate import upgrade

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        upgrade(conn, "0001")
        for seq in (1, 2, 3):
            conn.execute(
                sa.text(
                    "INSERT INTO inputs (seq, kind, input_id, patient_id, type, occurred_at, "
                    "recorded_at, decided_at, payload, prev_hash, hash) VALUES (:seq, 'event', "
                    ":id, 'p-1', 'x', 't', 't', 't', '{}', 'h', 'h')"
                ),
                {"seq": seq, "id": f"e-{seq}"},
            )
        conn.execute(
            sa.text(
                "INSERT INTO instances (instance_id, pathway_key, pathway_id, patient_id, active, "
                "enrolled_at, last_seq, state) VALUES ('i-1', 'p@1', 'p', 'p-1', :yes, 't', 2, "
                "'{}')"
            ),
            {"yes": True},
        )
    engine.dispose()

    store = Store.open(store_url)
    try:
        assert _version(store) == _head()
        assert store.snapshot_seq == 3
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(t.instances.c.state_seq)).scalar() == 2
            assert conn.execute(sa.select(t.snapshots.c.seq, t.snapshots.c.instances)).all() == [
                (3, 1)
            ]
    finally:
        store.close()


def test_upgrading_an_empty_0001_store_records_no_snapshot(store_url: str) -> None:
    from engine.store.migrate import upgrade

    engine = sa.create_engine(store_url)
    with engine.begin() as conn:
        upgrade(conn, "0001")
    engine.dispose()
    store = Store.open(store_url)
    try:
        assert store.snapshot_seq == 0
        with store.engine.connect() as conn:
            assert conn.execute(sa.select(t.snapshots)).all() == []
    finally:
        store.close()


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 3, 1, tzinfo=UTC)


def _downgrade(url: str, revision: str) -> None:
    from alembic import command

    from engine.store.migrate import alembic_config

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            driver = conn.connection.dbapi_connection
            if conn.dialect.name == "sqlite" and driver is not None and not driver.in_transaction:
                conn.exec_driver_sql("BEGIN")
            command.downgrade(alembic_config(conn), revision)
    finally:
        engine.dispose()


def test_upgrading_from_0003_chains_what_the_store_holds_and_verifies_intact(
    lived_in: Store, store_url: str, pathways: list[Any], history: list[Any]
) -> None:
    """A store at 0003 (outcomes, dead letters, several snapshots, holidays, an unsnapshotted
    tail) upgraded by 0004: every chain computed from the rows it holds, verified intact; a
    restart trusts the snapshot the migration gave a digest, and the chains carry on."""
    from engine.runtime.durable import DurableEngine, open_registry
    from engine.store.verify import verify
    from tests.store.conftest import T0

    lived_in.close()
    _downgrade(store_url, "0003")
    bare = sa.create_engine(store_url)
    try:
        assert "dead_letter_log" not in sa.inspect(bare).get_table_names()
        assert "number" not in {c["name"] for c in sa.inspect(bare).get_columns("outbox")}
        with bare.begin() as conn:  # a letter kept by 0003 (text only)
            conn.execute(sa.text(
                "INSERT INTO dead_letters (received_at, source, reason, payload, status) "
                "VALUES ('2026-03-01T00:00:00.000000+00:00', 'json', 'old', '{x', 'held')"
            ))  # fmt: skip
    finally:
        bare.dispose()

    store = Store.open(store_url)
    try:
        assert _version(store) == _head()
        with store.engine.connect() as conn:  # the schema schema.py describes, as if new
            assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        reports = verify(store)
        assert [r.problem for r in reports] == [None] * 7
        records = {r.chain: r.records for r in reports}
        assert records["dead_letters"] == 6  # one entry per letter, as it is now
        assert records["holidays"] == 2 and records["pathways"] == 2
        assert records["snapshots"] >= 3
        registry = open_registry(store, pathways, T0)
        engine = DurableEngine(store, registry)  # re-decides the tail from the latest snapshot
        engine.submit_many([e.model_copy(update={"id": f"{e.id}-after"}) for e in history[-3:]])
        store.dead_letter("json", "after 0004", b"\xff", T0)
        engine.close()
    finally:
        store.close()
    again = Store.open(store_url)
    try:
        assert [r.problem for r in verify(again)] == [None] * 7
    finally:
        again.close()
