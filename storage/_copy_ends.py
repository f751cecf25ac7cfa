"""The two ends of `db copy`: a SQLite file or a PostgreSQL database, read in a snapshot or
written in one transaction."""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Sequence
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import aiosqlite

from storage._errors import StoreError
from storage._url import MEMORY, is_postgres_url, parse_sqlite_url, postgres_dsn, redact_url

if TYPE_CHECKING:
    import asyncpg

# Every table of the schema but schema_migrations (each end has its own), parents before the
# tables that refer to them. A migration that adds a table adds it here too; the test that
# compares this with the tables the migrations create fails until it does.
COPIED_TABLES: tuple[str, ...] = (
    "slack_threads",
    "thread_history",
    "outbox",
    "outbox_files",
    "messages",
    # After outbox and messages: their inserts fill it on the target (triggers), and those
    # rows are cleared before the source's are copied (TRIGGER_FILLED).
    "outbox_status_history",
    "inbound_events",
    "processed_deliveries",
    "kv_store",
    "compose_intents",
    "rate_budgets",
    "ghl_companies",
    "ghl_locations",
    "slack_channel_links",
    "slack_installations",
    "slack_oauth_states",
)

# Tables the target's triggers write to while the others are copied: emptied before their own
# rows are copied, so each source row is there once and nothing else is.
TRIGGER_FILLED: frozenset[str] = frozenset({"outbox_status_history"})

_BUSY_TIMEOUT_MS = 5000

Row = tuple[Any, ...]


class CopyRefusedError(ValueError):
    """The copy was not started: bad URL, missing source, same database, non-empty target."""


def _reason(exc: BaseException) -> str:
    """Why a statement failed, without the values it carried (bodies, phone numbers)."""
    name = type(exc).__name__
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate is None:
        # SQLite's messages, and the OS's, name constraints, columns and files only.
        text = str(exc)
    elif str(sqlstate).startswith("22"):
        # PostgreSQL's class 22 (data exceptions; asyncpg's DataError for a value it cannot
        # encode is 22000 too) quotes the offending value in the message itself.
        column = getattr(exc, "column_name", None)
        where = f" in column {column}" if column else ""
        return f"{name}: a value does not fit its column's type{where}"
    else:
        # The primary message only: asyncpg's str() adds the DETAIL, which shows the key
        # or the whole failing row.
        text = str(getattr(exc, "message", "") or "")
    text = " ".join(text.split())
    return f"{name}: {text}" if text else name


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _end(url: str, role: str) -> _End:
    try:
        if is_postgres_url(url):
            return _PostgresEnd(url, role, postgres_dsn(url))
        path = parse_sqlite_url(url)
    except ValueError as exc:
        raise CopyRefusedError(f"the {role} URL is not usable: {exc}") from None
    if path == MEMORY:
        raise CopyRefusedError(f"the {role} is an in-memory database, which no copy outlives")
    return _SqliteEnd(url, role, path)


class _End(ABC):
    """One database of the copy, on a connection of its own (not the store's)."""

    # What the backend raises when a statement fails.
    errors: tuple[type[BaseException], ...]

    def __init__(self, url: str, role: str) -> None:
        self.url = url
        self.role = role

    def __str__(self) -> str:
        return redact_url(self.url)

    @abstractmethod
    async def check_usable(self) -> None:
        """CopyRefusedError if the store could not be opened here for a reason of the URL's."""

    @abstractmethod
    async def connect(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def is_same_database_as(self, other: _End) -> bool: ...

    @abstractmethod
    async def begin_snapshot(self) -> None:
        """Start the read transaction every later read sees the database as of."""

    @abstractmethod
    async def end_snapshot(self) -> None: ...

    @abstractmethod
    async def begin_write(self) -> None:
        """Start the transaction the copy is written in; other writers wait until it ends."""

    @abstractmethod
    async def commit(self) -> None: ...

    @abstractmethod
    async def rollback(self) -> None: ...

    @abstractmethod
    async def schema_version(self) -> int: ...

    @abstractmethod
    async def columns(self, table: str) -> tuple[str, ...]: ...

    @abstractmethod
    async def has_rows(self, table: str) -> bool: ...

    @abstractmethod
    def read(
        self, table: str, columns: Sequence[str], batch_size: int
    ) -> AsyncGenerator[list[Row]]:
        """The table's rows, `batch_size` at a time."""

    @abstractmethod
    async def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None: ...

    @abstractmethod
    async def after_writes(self, tables: Sequence[str]) -> None:
        """Make the next insert in each table pick an id past the copied ones."""

    @abstractmethod
    async def clear(self, table: str) -> None:
        """Delete every row of `table` (in the write transaction)."""


class _SqliteEnd(_End):
    errors = (sqlite3.Error, OSError)

    def __init__(self, url: str, role: str, path: str) -> None:
        super().__init__(url, role)
        self.path = path
        self._db: aiosqlite.Connection | None = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise StoreError(f"the {self.role} is not connected")
        return self._db

    async def connect(self) -> None:
        try:
            # isolation_level=None: transactions are the explicit BEGINs below.
            self._db = await aiosqlite.connect(self.path, isolation_level=None)
            await self._db.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            await self._db.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            await self.close()
            raise StoreError(f"cannot open the {self.role} {self}: {_reason(exc)}") from exc

    async def check_usable(self) -> None:
        """Nothing to check: the source exists (see _ends), and the store makes the target."""

    async def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            await db.close()

    async def is_same_database_as(self, other: _End) -> bool:
        return isinstance(other, _SqliteEnd) and await asyncio.to_thread(
            os.path.samefile, self.path, other.path
        )

    async def begin_snapshot(self) -> None:
        # A deferred BEGIN takes its snapshot at the first read, so read at once. In WAL mode
        # (the store's) a bridge writing to the file meanwhile is neither blocked nor seen.
        await self._run("BEGIN")
        await self.schema_version()

    async def end_snapshot(self) -> None:
        # Nothing was written; a failure here must not turn a committed copy into an error.
        await self.rollback()

    async def begin_write(self) -> None:
        await self._run("BEGIN IMMEDIATE")

    async def commit(self) -> None:
        await self._run("COMMIT")

    async def rollback(self) -> None:
        # SQLite may have rolled back by itself already (it does on some errors).
        with suppress(sqlite3.Error):
            await self.db.execute("ROLLBACK")

    async def _run(self, sql: str) -> None:
        try:
            await self.db.execute(sql)
        except sqlite3.Error as exc:
            raise StoreError(f"{sql} on the {self.role} {self} failed: {_reason(exc)}") from exc

    async def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        try:
            return [tuple(row) for row in await self.db.execute_fetchall(sql, params)]
        except sqlite3.Error as exc:
            raise StoreError(f"reading the {self.role} {self} failed: {_reason(exc)}") from exc

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(rows[0][0])

    async def columns(self, table: str) -> tuple[str, ...]:
        rows = await self._fetch("SELECT name FROM pragma_table_info(?) ORDER BY cid", (table,))
        return tuple(str(row[0]) for row in rows)

    async def has_rows(self, table: str) -> bool:
        return bool(await self._fetch(f"SELECT 1 FROM {_quoted(table)} LIMIT 1"))  # noqa: S608 - a schema table name

    async def read(
        self, table: str, columns: Sequence[str], batch_size: int
    ) -> AsyncGenerator[list[Row]]:
        names = ", ".join(_quoted(column) for column in columns)
        async with self.db.execute(f"SELECT {names} FROM {_quoted(table)}") as cursor:  # noqa: S608 - schema names
            while batch := await cursor.fetchmany(batch_size):
                yield [tuple(row) for row in batch]

    async def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        names = ", ".join(_quoted(column) for column in columns)
        marks = ", ".join("?" for _ in columns)
        await self.db.executemany(
            f"INSERT INTO {_quoted(table)} ({names}) VALUES ({marks})",  # noqa: S608 - schema names
            rows,
        )

    async def after_writes(self, tables: Sequence[str]) -> None:
        """Nothing to do: an INTEGER PRIMARY KEY takes max(id) + 1 on the next insert."""

    async def clear(self, table: str) -> None:
        await self.db.execute(f"DELETE FROM {_quoted(table)}")  # noqa: S608 - a schema table name


class _PostgresEnd(_End):
    def __init__(self, url: str, role: str, dsn: str) -> None:
        # Imported here: asyncpg is loaded only when PostgreSQL is used.
        import asyncpg

        super().__init__(url, role)
        self.errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
        self._dsn = dsn
        self._conn: asyncpg.Connection[asyncpg.Record] | None = None
        self._transaction: Any = None

    @property
    def conn(self) -> asyncpg.Connection[asyncpg.Record]:
        if self._conn is None:
            raise StoreError(f"the {self.role} is not connected")
        return self._conn

    async def connect(self) -> None:
        import asyncpg

        refused: tuple[type[BaseException], ...] = (*self.errors, ValueError)
        try:
            self._conn = await asyncpg.connect(self._dsn)
        except refused as exc:
            raise StoreError(f"cannot open the {self.role} {self}: {_reason(exc)}") from exc

    async def check_usable(self) -> None:
        await self.connect()
        try:
            schema = await self.conn.fetchval("SELECT current_schema()")
        except self.errors as exc:
            raise StoreError(f"cannot read the {self.role} {self}: {_reason(exc)}") from exc
        finally:
            await self.close()
        if schema is None:
            # The store would have nowhere to create its tables.
            raise CopyRefusedError(
                f"the {self.role} {self} names no existing schema in its search_path;"
                " create the schema first"
            )

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except self.errors:
                conn.terminate()

    async def is_same_database_as(self, other: _End) -> bool:
        if not isinstance(other, _PostgresEnd):
            return False
        # URLs spell one database many ways (host names, default port, postgres://), but
        # advisory locks are one set per database: the other end cannot take one held here.
        key = secrets.randbits(63)
        try:
            await self.conn.execute("SELECT pg_advisory_lock($1)", key)
            try:
                free = bool(await other.conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
                if free:
                    await other.conn.execute("SELECT pg_advisory_unlock($1)", key)
            finally:
                await self.conn.execute("SELECT pg_advisory_unlock($1)", key)
            if free:
                return False
            schemas = [
                str(await end.conn.fetchval("SELECT current_schema()")) for end in (self, other)
            ]
        except self.errors as exc:
            raise StoreError(f"comparing the source and the target failed: {_reason(exc)}") from exc
        # One database holds one bridge per schema (search_path=...).
        return schemas[0] == schemas[1]

    async def begin_snapshot(self) -> None:
        # REPEATABLE READ takes its snapshot at the first statement, so run one at once.
        await self._begin(self.conn.transaction(isolation="repeatable_read", readonly=True))
        await self.schema_version()

    async def end_snapshot(self) -> None:
        await self.rollback()

    async def begin_write(self) -> None:
        await self._begin(self.conn.transaction())
        # Anyone else writing to these tables (a bridge started on the target too early)
        # waits until the copy ends, so the target cannot fill between check and copy.
        names = ", ".join(_quoted(table) for table in COPIED_TABLES)
        await self._run(f"LOCK TABLE {names} IN EXCLUSIVE MODE")

    async def _begin(self, transaction: Any) -> None:
        try:
            await transaction.start()
        except self.errors as exc:
            raise StoreError(
                f"cannot start a transaction on the {self.role}: {_reason(exc)}"
            ) from exc
        self._transaction = transaction

    async def commit(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None:
            try:
                await transaction.commit()
            except self.errors as exc:
                raise StoreError(f"committing to the {self.role} failed: {_reason(exc)}") from exc

    async def rollback(self) -> None:
        transaction, self._transaction = self._transaction, None
        if transaction is not None and not self.conn.is_closed():
            try:
                await transaction.rollback()
            except self.errors:
                # The connection broke: the server drops its transaction with it.
                self.conn.terminate()

    async def _run(self, sql: str, *args: Any) -> None:
        try:
            await self.conn.execute(sql, *args)
        except self.errors as exc:
            raise StoreError(f"writing to the {self.role} {self} failed: {_reason(exc)}") from exc

    async def _fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        try:
            return list(await self.conn.fetch(sql, *args))
        except self.errors as exc:
            raise StoreError(f"reading the {self.role} {self} failed: {_reason(exc)}") from exc

    async def schema_version(self) -> int:
        rows = await self._fetch("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
        return int(rows[0][0])

    async def columns(self, table: str) -> tuple[str, ...]:
        rows = await self._fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND table_name = $1"
            " ORDER BY ordinal_position",
            table,
        )
        return tuple(str(row[0]) for row in rows)

    async def has_rows(self, table: str) -> bool:
        return bool(await self._fetch(f"SELECT 1 FROM {_quoted(table)} LIMIT 1"))  # noqa: S608 - a schema table name

    async def read(
        self, table: str, columns: Sequence[str], batch_size: int
    ) -> AsyncGenerator[list[Row]]:
        names = ", ".join(_quoted(column) for column in columns)
        # A server-side cursor: the snapshot's transaction is open, and only a batch is held.
        cursor = await self.conn.cursor(f"SELECT {names} FROM {_quoted(table)}")  # noqa: S608 - schema names
        while batch := await cursor.fetch(batch_size):
            yield [tuple(row) for row in batch]

    async def write(self, table: str, columns: Sequence[str], rows: Sequence[Row]) -> None:
        # COPY, unqualified: the table is the one of the connection's search_path, as the
        # store's own statements find it.
        try:
            await self.conn.copy_records_to_table(table, records=rows, columns=list(columns))
        except (TypeError, ValueError, OverflowError) as exc:
            # COPY's binary encoder met a value of another type than its column's (SQLite
            # columns hold anything); its message may quote the value.
            raise StoreError(
                f"{type(exc).__name__}: a value does not fit its column's type"
            ) from exc

    async def clear(self, table: str) -> None:
        await self._run(f"DELETE FROM {_quoted(table)}")  # noqa: S608 - a schema table name

    async def after_writes(self, tables: Sequence[str]) -> None:
        # Ids were copied as they were, which moves no identity sequence: set each one past
        # its table's highest id, or the next insert would be given an id already taken.
        identities = await self._fetch(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() AND is_identity = 'YES'"
        )
        for table, column in identities:
            if table not in tables:
                continue
            highest = f"SELECT MAX({_quoted(column)}) FROM {_quoted(table)}"  # noqa: S608 - schema names
            await self._run(
                "SELECT setval(pg_get_serial_sequence($1, $2),"
                f" COALESCE(({highest}), 0) + 1, false)",
                _quoted(table),
                column,
            )
