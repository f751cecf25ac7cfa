"""Opening the store a DATABASE_URL names: SQLite (the default) or PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from storage._base import DEFAULT_LEASE_SECONDS
from storage._protocol import Store
from storage._sqlite import SqliteStore
from storage._url import is_postgres_url, parse_sqlite_url, postgres_dsn

if TYPE_CHECKING:
    from storage._postgres import PostgresStore


def create_store(
    database_url: str,
    *,
    clock: Callable[[], float] = time.time,
    instance_id: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> SqliteStore | PostgresStore:
    """The store named by the URL, not yet opened; ValueError for a URL neither backend takes."""
    if is_postgres_url(database_url):
        # Imported here: asyncpg is loaded only by a bridge on PostgreSQL.
        from storage._postgres import PostgresStore

        return PostgresStore(
            postgres_dsn(database_url),
            clock=clock,
            instance_id=instance_id,
            lease_seconds=lease_seconds,
        )
    return SqliteStore(
        parse_sqlite_url(database_url),
        clock=clock,
        instance_id=instance_id,
        lease_seconds=lease_seconds,
    )


async def open_store(
    database_url: str,
    *,
    clock: Callable[[], float] = time.time,
    instance_id: str | None = None,
    lease_seconds: float = DEFAULT_LEASE_SECONDS,
) -> Store:
    """Open (creating and migrating if needed) the store named by the URL."""
    store = create_store(
        database_url, clock=clock, instance_id=instance_id, lease_seconds=lease_seconds
    )
    await store.open()
    return store
