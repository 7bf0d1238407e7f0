"""Create or upgrade the store's schema with Alembic, programmatically."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade(connection: Connection, revision: str = "head") -> None:
    """Bring the schema on `connection` up to `revision` (creating it on an empty database).

    All of it in the caller's transaction, or none of it: a crash half way must not leave tables
    without the version stamp (which no later open could get past). PostgreSQL's DDL is
    transactional as it is; Python's sqlite3 runs DDL outside any transaction unless one was
    begun explicitly, so on SQLite one is."""
    if connection.dialect.name == "sqlite":
        driver = connection.connection.dbapi_connection
        if driver is not None and not driver.in_transaction:
            connection.exec_driver_sql("BEGIN")
    command.upgrade(alembic_config(connection), revision)


def revision(connection: Connection, message: str) -> None:  # pragma: no cover - developer tool
    """Autogenerate a new migration from the difference between schema.py and the database."""
    command.revision(alembic_config(connection), message=message, autogenerate=True)
