"""Connecting to a store: the SQLAlchemy engine for a URL, and the one-writer lock."""

from __future__ import annotations

import fcntl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine, event

from engine.errors import StoreError

DEFAULT_DATA_DIR = Path("data")


def default_url(data_dir: Path = DEFAULT_DATA_DIR) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / 'carepath.db'}"


class WriterLock:
    """See Store.claim_writer."""

    WRITER_REFUSED = (
        "another Carepath process is writing to this store (carepath serve, simulate --db, "
        "dispatch or deadletter retry): stop it first"
    )

    def __init__(self, release: Callable[[], None]) -> None:
        self.release = release

    @classmethod
    def take(cls, engine: Engine, wait_seconds: float) -> WriterLock:
        deadline = time.monotonic() + wait_seconds
        while True:
            lock = cls._try(engine)
            if lock is not None:
                return lock
            if time.monotonic() >= deadline:
                raise StoreError(cls.WRITER_REFUSED)
            time.sleep(0.2)

    @classmethod
    def _try(cls, engine: Engine) -> WriterLock | None:
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
