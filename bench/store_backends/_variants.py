"""The variants, each store open on its backend, and the pairs compared."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]
from sqlalchemy.ext.asyncio import create_async_engine  # type: ignore[import-not-found, unused-ignore]

from bench.store_backends._asyncpg_store import AsyncpgStore
from bench.store_backends._common import (
    CHANNEL_ID,
    CONTACTS,
    LOCATION_ID,
    POSTGRES_URL,
    TEAM_ID,
    _BenchStore,
)
from bench.store_backends._sqlalchemy_store import SqlAlchemyStore
from bench.store_backends._workload import _contact
from storage import MIGRATIONS, open_store

# ------------------------------------------------------------------------------ backends


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    label: str
    store: _BenchStore
    threads: Sequence[int]
    engine: Any = None  # SQLAlchemy's, for the compiled-cache check


# Each SQLAlchemy variant against the hand-written one on its backend. The port as it would
# be written (statements built per call) decides; built-once shows how far tuning gets it.
COMPARISONS = (
    ("sqlite", "a", "b1", True),
    ("sqlite", "a", "b2", False),
    ("postgresql", "c", "d1", True),
    ("postgresql", "c", "d2", False),
)


def _postgresql_ddl() -> list[str]:
    """The project's migrations as they run on PostgreSQL (their own steps there: since
    migration 12 some are not SQLite's statements in other types, e.g. the triggers)."""
    return [statement for migration in MIGRATIONS for statement in migration.steps("postgresql")]


async def _postgres_threads(conn: asyncpg.Connection) -> list[int]:
    now = time.time()
    ids = []
    for index in range(CONTACTS):
        thread_id = await conn.fetchval(
            "INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id, contact_id,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
            TEAM_ID,
            CHANNEL_ID,
            f"1700000000.{index:06d}",
            LOCATION_ID,
            _contact(index),
            now,
        )
        ids.append(int(thread_id))
    return ids


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # As SqliteStore sets them; isolation_level None so that only our BEGIN opens transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA busy_timeout = 5000",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # SQLAlchemy's documented recipe for an explicit BEGIN on pysqlite and aiosqlite.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def variants(workdir: Path) -> AsyncIterator[list[Variant]]:
    """Every variant's store, open, on one SQLite file and one fresh PostgreSQL schema."""
    path = workdir / "store.sqlite3"
    schema = f"bench_store_{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        admin = await asyncpg.connect(POSTGRES_URL)
        stack.push_async_callback(admin.close)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        stack.push_async_callback(admin.execute, f'DROP SCHEMA "{schema}" CASCADE')

        today = await open_store(f"sqlite:///{path}")  # the real schema, every migration
        stack.push_async_callback(today.close)
        sqlite_threads = [
            (
                await today.upsert_thread(
                    team_id=TEAM_ID,
                    channel_id=CHANNEL_ID,
                    location_id=LOCATION_ID,
                    contact_id=_contact(index),
                    thread_ts=f"1700000000.{index:06d}",
                )
            ).id
            for index in range(CONTACTS)
        ]
        sa_sqlite = create_async_engine(f"sqlite+aiosqlite:///{path}")
        stack.push_async_callback(sa_sqlite.dispose)
        sa.event.listen(sa_sqlite.sync_engine, "connect", _sqlite_pragmas)
        sa.event.listen(sa_sqlite.sync_engine, "begin", _sqlite_begin_immediate)

        # asyncpg takes server settings as URL parameters; SQLAlchemy would hand them on as
        # keyword arguments asyncpg does not know, so it gets them in connect_args.
        raw = await asyncpg.connect(f"{POSTGRES_URL}?search_path={schema}")
        stack.push_async_callback(raw.close)
        async with raw.transaction():
            for statement in _postgresql_ddl():
                await raw.execute(statement)
            postgres_threads = await _postgres_threads(raw)
        sa_postgres = create_async_engine(
            POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
            connect_args={"server_settings": {"search_path": schema}},
        )
        stack.push_async_callback(sa_postgres.dispose)

        async def port(engine: Any, *, build_once: bool) -> SqlAlchemyStore:
            conn = await stack.enter_async_context(engine.connect())
            return SqlAlchemyStore(conn, build_once=build_once)

        yield [
            Variant("a", "today: SqliteStore (aiosqlite)", today, sqlite_threads),
            Variant(
                "b1",
                "SQLAlchemy, aiosqlite, built per call",
                await port(sa_sqlite, build_once=False),
                sqlite_threads,
                sa_sqlite,
            ),
            Variant(
                "b2",
                "SQLAlchemy, aiosqlite, built once",
                await port(sa_sqlite, build_once=True),
                sqlite_threads,
                sa_sqlite,
            ),
            Variant("c", "raw asyncpg", AsyncpgStore(raw), postgres_threads),
            Variant(
                "d1",
                "SQLAlchemy, asyncpg, built per call",
                await port(sa_postgres, build_once=False),
                postgres_threads,
                sa_postgres,
            ),
            Variant(
                "d2",
                "SQLAlchemy, asyncpg, built once",
                await port(sa_postgres, build_once=True),
                postgres_threads,
                sa_postgres,
            ),
        ]
