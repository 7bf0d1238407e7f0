"""Alembic environment. Carepath runs migrations itself (`engine.store.migrate`), passing an
open connection in `config.attributes["connection"]`; the alembic CLI is not needed."""

from __future__ import annotations

from alembic import context

from engine.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # pragma: no cover - only the alembic CLI reaches this
    raise RuntimeError("run migrations through engine.store.migrate(url)")
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    version_table_schema=config.attributes.get("schema"),
)
with context.begin_transaction():
    context.run_migrations()
