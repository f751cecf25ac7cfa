"""Helpers shared by the storage tests: a settable clock and the database seen from outside.

A `Backend` is one database the store contract is tested on (an SQLite file, or a fresh
PostgreSQL schema): it opens further stores on it (another process, another instance) and
runs SQL on it through a connection of its own.
"""

from __future__ import annotations

import os
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import asyncpg

from storage import MIGRATIONS, Migration, OutboxEntry, PostgresStore, SqliteStore, Store
from storage._base import DEFAULT_LEASE_SECONDS, numbered_sql
from tests._postgres import PostgresServer, quote_identifier

START = 1_700_000_000.0


class FakeClock:
    """A clock the test moves by hand, so nothing sleeps."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# What the error message of each backend says about a broken rule (the SQLite wording first).
UNIQUE = r"UNIQUE constraint failed|duplicate key value violates unique constraint"
FOREIGN_KEY = r"FOREIGN KEY constraint failed|violates foreign key constraint"
CHECK = r"CHECK constraint failed|violates check constraint"


class Rejected(Exception):
    """The database refused a statement for one of its rules (UNIQUE, CHECK, NOT NULL,
    foreign key); the message is the database's, with the columns involved."""


class Backend(ABC):
    """One database under test, and an outside view of it."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def url(self) -> str:
        """The DATABASE_URL naming this database."""

    @abstractmethod
    def new_store(
        self,
        clock: Callable[[], float],
        *,
        instance_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> SqliteStore | PostgresStore:
        """Another store on this database, not opened yet (`async with` it)."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run one statement (`?` parameters) on a connection of its own, committed at once."""

    @abstractmethod
    def table_names(self) -> set[str]: ...

    @abstractmethod
    def index_names(self) -> set[str]: ...

    def count_rows(self, table: str) -> int:
        # Table names are test constants, never input.
        return int(self.query(f"SELECT COUNT(*) FROM {table}")[0][0])  # noqa: S608


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def new_store(
        self,
        clock: Callable[[], float],
        *,
        instance_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> SqliteStore:
        return SqliteStore(
            self.path,
            clock=clock,
            instance_id=instance_id,
            lease_seconds=lease_seconds,
            migrations=migrations,
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return query(self.path, sql, tuple(params))
        except sqlite3.IntegrityError as exc:
            raise Rejected(str(exc)) from exc

    def table_names(self) -> set[str]:
        return {row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'table'")}

    def index_names(self) -> set[str]:
        return {row[0] for row in self.query("SELECT name FROM sqlite_master WHERE type = 'index'")}


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self, server: PostgresServer, url: str) -> None:
        self.server = server
        self._url = url
        self.schema = parse_qs(urlsplit(url).query)["search_path"][0]

    @property
    def url(self) -> str:
        return self._url

    def new_store(
        self,
        clock: Callable[[], float],
        *,
        instance_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> PostgresStore:
        return PostgresStore(
            self._url,
            clock=clock,
            instance_id=instance_id,
            lease_seconds=lease_seconds,
            migrations=migrations,
        )

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        text, _order = numbered_sql(sql)
        try:
            return self.server.run(self._query(text, list(params)))
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise Rejected(f"{exc} ({exc.detail})" if exc.detail else str(exc)) from exc

    async def _query(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        admin = self.server.admin()
        async with admin.transaction():
            await admin.execute(f"SET LOCAL search_path TO {quote_identifier(self.schema)}")
            return [tuple(row) for row in await admin.fetch(sql, *params)]

    def table_names(self) -> set[str]:
        rows = self.query(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
            (self.schema,),
        )
        return {row[0] for row in rows}

    def index_names(self) -> set[str]:
        rows = self.query("SELECT indexname FROM pg_indexes WHERE schemaname = ?", (self.schema,))
        return {row[0] for row in rows}


def query(path: str | os.PathLike[str], sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """Run SQL on an SQLite file through a separate plain sqlite3 connection (an outside view)."""
    conn = sqlite3.connect(path, isolation_level=None)  # autocommit: each write sticks
    try:
        return list(conn.execute(sql, params).fetchall())
    finally:
        conn.close()


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def enqueue(
    store: Store,
    key: str,
    *,
    location_id: str = "loc-1",
    contact_id: str = "contact-a",
    next_attempt_at: float | None = None,
    thread_id: int | None = None,
    message_type: str = "SMS",
    slack_ts: str | None = None,
) -> OutboxEntry:
    entry, created = await store.enqueue(
        idempotency_key=key,
        team_id="T1",
        channel_id="C1",
        slack_user_id="U1",
        location_id=location_id,
        contact_id=contact_id,
        message_type=message_type,
        payload={"type": message_type, "contactId": contact_id, "message": f"text {key}"},
        thread_id=thread_id,
        slack_ts=slack_ts,
        next_attempt_at=next_attempt_at,
    )
    assert created, f"{key} was already queued"
    return entry
