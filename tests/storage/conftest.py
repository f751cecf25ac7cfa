"""Fixtures of the storage tests: each contract test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import SqliteStore, Store
from tests import _postgres
from tests.storage._support import Backend, FakeClock, PostgresBackend, SqliteBackend


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """The file of the SQLite-only tests (pragmas, WAL, query plans, file handling)."""
    return tmp_path / "bridge.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Backend:
    """The database the test runs on: an SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        db_path: Path = request.getfixturevalue("db_path")
        return SqliteBackend(db_path)
    url: str = request.getfixturevalue("postgres_url")
    return PostgresBackend(_postgres.server(request.config), url)


@pytest.fixture
async def store(backend: Backend, clock: FakeClock) -> AsyncIterator[Store]:
    async with backend.new_store(clock) as opened:
        yield opened


@pytest.fixture
async def sqlite_store(db_path: Path, clock: FakeClock) -> AsyncIterator[SqliteStore]:
    """A store on the SQLite file `db_path`, for tests of what only SQLite has."""
    async with SqliteStore(db_path, clock=clock) as opened:
        yield opened
