"""Shared fixtures: stores on SQLite and on the real PostgreSQL server, each test isolated.

PostgreSQL tests run against CAREPATH_PG_URL (default: the local server, database `test`), each
test in a schema of its own that is dropped afterwards. Without a server they skip, saying why;
with CAREPATH_REQUIRE_POSTGRES=1 (as .ci/run sets) they fail instead, so CI cannot pass without
them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from engine.store import Store

ROOT = Path(__file__).resolve().parent.parent
PATHWAYS = ROOT / "pathways"
SHARED = ROOT.parent / "shared"
PG_URL = os.environ.get("CAREPATH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_reachable() -> str | None:
    try:
        engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception as exc:  # any failure means "no server here"
        return f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


_PG_PROBLEM: str | None = None
_PG_CHECKED = False


def require_postgres() -> None:
    """Skip (or fail, under CAREPATH_REQUIRE_POSTGRES=1) when no PostgreSQL server answers."""
    global _PG_CHECKED, _PG_PROBLEM
    if not _PG_CHECKED:
        _PG_PROBLEM, _PG_CHECKED = _postgres_reachable(), True
    if _PG_PROBLEM is None:
        return
    message = f"no PostgreSQL server at {PG_URL} ({_PG_PROBLEM})"
    if os.environ.get("CAREPATH_REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{message}; CAREPATH_REQUIRE_POSTGRES=1 forbids skipping", pytrace=False)
    pytest.skip(message)


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'carepath.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on the embedded default and on the production store."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'carepath.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = Store.open(store_url)
    yield opened
    opened.close()


@pytest.fixture
def shared_samples() -> Path:
    """../shared/samples, or skip with the reason (CI always has it)."""
    samples = SHARED / "samples"
    if not samples.is_dir():
        pytest.skip(f"shared samples not found at {samples}: clone with ../shared beside the repo")
    return samples
