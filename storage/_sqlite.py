"""SQLite backend of the store (aiosqlite, WAL)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Self

import aiosqlite

from storage._errors import ConflictError, StoreError
from storage._migrations import (
    CREATE_MIGRATIONS_TABLE,
    MIGRATIONS,
    Migration,
    check_migrations,
)
from storage._sqlite_base import _one, _StoreLock
from storage._sqlite_dedupe import DedupeMixin
from storage._sqlite_inbound import InboundMixin
from storage._sqlite_intents import IntentsMixin
from storage._sqlite_messages import MessagesMixin
from storage._sqlite_outbox import OutboxMixin
from storage._sqlite_threads import ThreadsMixin
from storage._url import MEMORY, parse_sqlite_url

log = logging.getLogger(__name__)

# RETURNING (3.35) lets one statement both change a row and report it.
_MIN_SQLITE = (3, 35, 0)

# The kv_store row `check_writable` rewrites.
_WRITE_PROBE_KEY = "health:last_write"


async def open_store(database_url: str, *, clock: Callable[[], float] = time.time) -> SqliteStore:
    """Open (creating and migrating if needed) the store named by an sqlite URL."""
    store = SqliteStore(parse_sqlite_url(database_url), clock=clock)
    await store.open()
    return store


class SqliteStore(
    ThreadsMixin, MessagesMixin, OutboxMixin, InboundMixin, IntentsMixin, DedupeMixin
):
    """The store on one SQLite file, through a single aiosqlite connection.

    Every operation holds `self._lock`. One connection has one transaction state, so two
    coroutines interleaving statements on it would mix their transactions, and a read could
    see another coroutine's uncommitted writes. aiosqlite runs all statements on one thread
    anyway, so the lock costs no parallelism. Other processes (or a second store on the same
    file) are kept apart by SQLite itself: writes use BEGIN IMMEDIATE, which takes the write
    lock up front and waits up to busy_timeout for it instead of failing half-way.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_statement: Callable[[str], None] | None = None,
    ) -> None:
        """`on_statement` is given each SQL statement as it runs (with its values filled in),
        on aiosqlite's thread; for tests and diagnosis only, since values include bodies."""
        self._path = os.fspath(path)
        self._on_statement = on_statement
        self._clock = clock
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._migrations = tuple(migrations)
        check_migrations(self._migrations)
        self._lock = _StoreLock()
        self._db: aiosqlite.Connection | None = None

    @property
    def path(self) -> str:
        return self._path

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect, set pragmas and apply pending migrations; a second call does nothing."""
        async with self._lock:
            if self._db is None:
                self._db = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise StoreError(f"SQLite {sqlite3.sqlite_version} is too old; need 3.35 or newer")
        if self._path != MEMORY:
            await asyncio.to_thread(_prepare_file_location, self._path)
        try:
            # isolation_level=None: the sqlite3 module must not open transactions behind our
            # back; every transaction here is an explicit BEGIN ... COMMIT.
            db = await aiosqlite.connect(self._path, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open database {self._path!r}: {exc}") from exc
        try:
            db.row_factory = sqlite3.Row
            if self._on_statement is not None:
                await db.set_trace_callback(self._on_statement)
            await self._configure(db)
            await self._migrate(db)
        except BaseException as exc:
            await db.close()
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"cannot open database {self._path!r}: {exc}") from exc
            raise
        return db

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _configure(self, db: aiosqlite.Connection) -> None:
        # busy_timeout first, so that switching to WAL waits for other connections too.
        # PRAGMAs take no bound parameters; the value is an int we produced.
        await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        mode_row = await _one(db, "PRAGMA journal_mode = WAL")
        mode = str(mode_row[0]).lower() if mode_row is not None else ""
        if mode != "wal" and self._path != MEMORY:
            log.warning("SQLite refused WAL mode for %s (journal_mode=%s)", self._path, mode)
        # NORMAL is durable across application crashes in WAL mode; only an OS crash or
        # power loss may drop the last transactions, and it never corrupts the file.
        await db.execute("PRAGMA synchronous = NORMAL")
        await db.execute("PRAGMA foreign_keys = ON")
        fk_row = await _one(db, "PRAGMA foreign_keys")
        if fk_row is None or fk_row[0] != 1:
            raise StoreError("this SQLite build cannot enforce foreign keys")

    async def _migrate(self, db: aiosqlite.Connection) -> None:
        async with _transaction(db):
            await db.execute(CREATE_MIGRATIONS_TABLE)
            current = await _schema_version(db)
        known = self._migrations[-1].version if self._migrations else 0
        if current > known:
            raise StoreError(
                f"database {self._path!r} has schema version {current}, newer than this "
                f"program knows ({known}); refusing to touch it"
            )
        for migration in self._migrations:
            if migration.version <= current:
                continue
            async with _transaction(db):
                # Re-read inside the write lock: another process may have just migrated.
                current = await _schema_version(db)
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    await db.execute(statement)
                await db.execute(
                    "INSERT INTO schema_migrations (version, description, applied_at)"
                    " VALUES (?, ?, ?)",
                    (migration.version, migration.description, self._clock()),
                )
            log.info(
                "database migrated to version %d: %s", migration.version, migration.description
            )
            current = migration.version

    def _connection(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError("the store is not open")
        return self._db

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._connection()
            try:
                yield db
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            db = self._connection()
            async with _transaction(db):
                yield db

    async def schema_version(self) -> int:
        """Highest migration applied to the database."""
        async with self._read() as db:
            return await _schema_version(db)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        async with self._read() as db:
            row = await _one(db, "SELECT 1 FROM schema_migrations LIMIT 1")
        if row is None:
            raise StoreError("the database has no schema")

    async def check_writable(self) -> None:
        """Raise StoreError unless a small write reaches the database file now.

        The health check's probe: one kv_store row upserted and committed, like any real write
        (it waits out a lock held elsewhere up to busy_timeout). The commit appends a frame to
        the WAL, so a read-only file, a folder where the WAL cannot be created and a full disk
        all fail it; a write rolled back instead never leaves SQLite's page cache and would
        miss the last two.
        """
        async with self._write() as db:
            now = self._clock()
            await db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (_WRITE_PROBE_KEY, repr(now), now),
            )


def _prepare_file_location(path: str) -> None:
    """Create the database's folder; refuse a path that is a folder or device."""
    target = Path(path)
    # Caught here rather than by sqlite: aiosqlite's failed connect finishes on its worker
    # thread after returning, which races with a closing event loop.
    if target.exists() and not target.is_file():
        raise StoreError(f"cannot open database {path!r}: not a regular file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create the folder of {path!r}: {exc}") from exc


@asynccontextmanager
async def _transaction(db: aiosqlite.Connection) -> AsyncIterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (also cancellation).

    sqlite3 errors leave as StoreError / ConflictError so callers need not know the backend.
    """
    begin = asyncio.ensure_future(db.execute("BEGIN IMMEDIATE"))
    try:
        await asyncio.shield(begin)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot start a transaction: {exc}") from exc
    except asyncio.CancelledError:
        # The BEGIN goes on in aiosqlite's thread (waiting out a busy database, perhaps) and
        # may still open the transaction; end it before letting go, or the connection would
        # stay inside a transaction nobody ends and every later write would fail.
        with suppress(sqlite3.Error):
            await begin
            await db.execute("ROLLBACK")
        raise
    try:
        yield
        await db.execute("COMMIT")
    except BaseException as exc:
        try:
            await db.execute("ROLLBACK")
        except sqlite3.Error:
            # SQLite already rolled back by itself (it does on some errors); nothing to undo.
            log.debug("rollback after %r found no transaction", exc)
        if isinstance(exc, sqlite3.IntegrityError):
            raise ConflictError(str(exc)) from exc
        if isinstance(exc, sqlite3.Error):
            raise StoreError(str(exc)) from exc
        raise


async def _schema_version(db: aiosqlite.Connection) -> int:
    row = await _one(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(row[0]) if row is not None else 0
