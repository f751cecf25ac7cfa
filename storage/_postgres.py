"""PostgreSQL backend of the store (asyncpg), for several instances on one database."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Self, TypeAlias, TypeVar

import asyncpg
from asyncpg.pool import PoolConnectionProxy

from storage._audit import AuditMixin
from storage._base import (
    DEFAULT_LEASE_SECONDS,
    Conn,
    Params,
    Row,
    default_instance_id,
    numbered_sql,
    numbered_values,
)
from storage._budgets import BudgetsMixin
from storage._dedupe import DedupeMixin
from storage._errors import ConflictError, StoreError
from storage._history import HistoryMixin
from storage._home import HomeMixin
from storage._inbound import InboundMixin
from storage._inbox import InboxMixin
from storage._intents import IntentsMixin
from storage._leases import LeasesMixin
from storage._messages import MessagesMixin
from storage._migrations import (
    CREATE_MIGRATIONS_TABLE,
    MIGRATIONS,
    Migration,
    check_migrations,
    refuse_newer_schema,
)
from storage._outbox import OutboxMixin
from storage._outbox_files import OutboxFilesMixin
from storage._retention import RetentionMixin
from storage._slack_installs import SlackInstallsMixin
from storage._tenancy import TenancyMixin
from storage._threads import ThreadsMixin
from storage._url import redact_url

log = logging.getLogger(__name__)

T = TypeVar("T")

# Advisory lock classes (the first of pg_advisory_lock's two keys; the second is the
# schema's hash, so bridges in different schemas of one database never wait for each other).
_MIGRATION_LOCK = 0x6768_6C01  # held by the instance migrating, for the whole migration
_WRITE_LOCK = 0x6768_6C02  # held by each serial write transaction until it ends

_WRITE_PROBE_KEY = "health:last_write"

# Errors that mean "the database cannot be reached or used now", as opposed to a bug.
# A connection of the pool, as the pool lends it (subscripted only in the stubs).
_Connection: TypeAlias = "PoolConnectionProxy[asyncpg.Record]"

_DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)


class PostgresStore(
    ThreadsMixin,
    HistoryMixin,
    InboxMixin,
    HomeMixin,
    MessagesMixin,
    OutboxMixin,
    OutboxFilesMixin,
    AuditMixin,
    RetentionMixin,
    InboundMixin,
    IntentsMixin,
    DedupeMixin,
    LeasesMixin,
    BudgetsMixin,
    TenancyMixin,
    SlackInstallsMixin,
):
    """The store on PostgreSQL through a pool of asyncpg connections.

    Several processes share it. Every write of the store is race-free on its own (upserts,
    UPDATEs whose WHERE tests the state they start from, SKIP LOCKED claims) and most are one
    autocommitted statement: one round trip each (see StoreBase._single_write_op). A serial
    write (StoreBase._write) still takes one advisory lock for its transaction, which gives
    it SQLite's one-writer-at-a-time semantics.
    """

    shared = True

    def __init__(
        self,
        dsn: str,
        *,
        clock: Callable[[], float] = time.time,
        instance_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        migrations: Sequence[Migration] = MIGRATIONS,
        pool_size: int = 8,
    ) -> None:
        self._dsn = dsn
        self._clock = clock
        self._instance_id = instance_id or default_instance_id()
        self._lease_seconds = float(lease_seconds)
        self._migrations = tuple(migrations)
        check_migrations(self._migrations)
        self._pool_size = pool_size
        self._pool: asyncpg.Pool[asyncpg.Record] | None = None
        self._schema_key = 0
        self._serial = asyncio.Lock()

    @property
    def url(self) -> str:
        """The database's URL without its password (for messages)."""
        return redact_url(self._dsn)

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect and apply pending migrations (one instance at a time); idempotent."""
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=self._pool_size,
                command_timeout=60,
                # asyncpg's default reset costs a round trip per release (advisory unlock,
                # CLOSE ALL, UNLISTEN, RESET ALL) to undo session state this store never
                # leaves: no SET, LISTEN or cursor, transaction-scoped advisory locks only,
                # and the migration's session lock is unlocked (or its connection closed).
                # An open transaction is still rolled back on release by asyncpg itself.
                reset=_keep_session,
            )
        except (*_DATABASE_ERRORS, ValueError) as exc:
            raise StoreError(f"cannot open database {self.url}: {_reason(exc)}") from exc
        try:
            async with pool.acquire() as conn:
                schema = await conn.fetchval("SELECT current_schema()")
                if schema is None:
                    raise StoreError(
                        f"cannot open database {self.url}: no schema of its search_path exists"
                        " (create it, or name one that does)"
                    )
                self._schema_key = int(await conn.fetchval("SELECT hashtext($1)", schema))
                await self._migrate(conn)
        except BaseException as exc:
            await pool.close()
            if isinstance(exc, _DATABASE_ERRORS):
                raise StoreError(f"cannot open database {self.url}: {_reason(exc)}") from exc
            raise
        self._pool = pool

    async def close(self) -> None:
        """Close the pool; safe to call twice."""
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.close()
            except _DATABASE_ERRORS as exc:
                log.warning("closing the database pool failed: %s", _reason(exc))
                pool.terminate()

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

    async def _migrate(self, conn: _Connection) -> None:
        # Instances starting together queue on this lock; each then finds the schema as
        # the first one left it, so every migration runs exactly once.
        await conn.execute("SELECT pg_advisory_lock($1, $2)", _MIGRATION_LOCK, self._schema_key)
        try:
            await conn.execute(CREATE_MIGRATIONS_TABLE)
            current = await _schema_version(conn)
            refuse_newer_schema(self.url, current, self._migrations)
            for migration in self._migrations:
                if migration.version <= current:
                    continue
                async with conn.transaction():
                    for statement in migration.steps("postgresql"):
                        await conn.execute(statement)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, description, applied_at)"
                        " VALUES ($1, $2, $3)",
                        migration.version,
                        migration.description,
                        self._clock(),
                    )
                log.info(
                    "database migrated to version %d: %s",
                    migration.version,
                    migration.description,
                )
        finally:
            # The pool does not reset sessions (see open): a connection that may still hold
            # this lock must never go back to it, or that instance would hold every later
            # migration up.
            try:
                unlocked = await conn.fetchval(
                    "SELECT pg_advisory_unlock($1, $2)", _MIGRATION_LOCK, self._schema_key
                )
            except BaseException:
                conn.terminate()
                raise
            if not unlocked:
                conn.terminate()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[_Connection]:
        if self._pool is None:
            raise StoreError("the store is not open")
        try:
            async with self._pool.acquire() as conn:
                yield conn
        except _DATABASE_ERRORS as exc:
            raise _store_error(exc) from exc

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Conn]:
        async with self._connection() as conn:
            yield PgConn(conn)

    @asynccontextmanager
    async def _write(self, *, serial: bool = True) -> AsyncIterator[Conn]:
        if not serial:
            async with self._connection() as conn, self._transaction(conn, serial=False):
                yield PgConn(conn)
            return
        # Serial writes of this process queue here, not on the advisory lock: each waiting
        # on the server would hold a pooled connection, and a handful of them would leave
        # none for the reads, claims and the inserts Slack acks wait for.
        async with (
            self._serial,
            self._connection() as conn,
            self._transaction(conn, serial=True),
        ):
            yield PgConn(conn)

    @asynccontextmanager
    async def _transaction(self, conn: _Connection, *, serial: bool) -> AsyncIterator[None]:
        """BEGIN ... COMMIT, rolled back on any error; a serial one takes the write lock in
        the round trip of its BEGIN (one simple query: both values are our own integers)."""
        await conn.execute(
            f"BEGIN; SELECT pg_advisory_xact_lock({_WRITE_LOCK}, {self._schema_key})"
            if serial
            else "BEGIN"
        )
        try:
            yield
        except BaseException:
            try:
                await conn.execute("ROLLBACK")
            except Exception:
                # Its transaction state is unknown: it must not go back to the pool.
                conn.terminate()
            except BaseException:
                conn.terminate()
                raise
            raise
        await conn.execute("COMMIT")

    async def _single_write_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        # Autocommit: the one write is atomic on its own, and a read after it needs no
        # transaction (see StoreBase._single_write_op).
        async with self._connection() as conn:
            return await operation(PgConn(conn))

    def _urgent(self) -> Any:
        # A pool has no queue to jump: any free connection serves the ack's insert.
        return self._read()

    async def schema_version(self) -> int:
        async with self._connection() as conn:
            return await _schema_version(conn)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        async with self._read() as db:
            rows = await db.fetch("SELECT 1 FROM schema_migrations LIMIT 1")
        if not rows:
            raise StoreError("the database has no schema")

    async def check_writable(self) -> None:
        """Raise StoreError unless a small write commits now (the readiness probe)."""
        now = self._clock()
        await self._single_write_op(
            lambda db: db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (_WRITE_PROBE_KEY, repr(now), now),
            )
        )


class PgConn(Conn):
    """The mixins' view of an asyncpg connection: `?`/`:name` become `$n`."""

    dialect = "postgresql"

    def __init__(self, raw: _Connection) -> None:
        self.raw = raw

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        text, order = numbered_sql(sql)
        try:
            return list(await self.raw.fetch(text, *numbered_values(order, params)))
        except _DATABASE_ERRORS as exc:
            raise _store_error(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> None:
        text, order = numbered_sql(sql)
        try:
            await self.raw.execute(text, *numbered_values(order, params))
        except _DATABASE_ERRORS as exc:
            raise _store_error(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        text, order = numbered_sql(sql)
        try:
            await self.raw.executemany(text, [numbered_values(order, row) for row in rows])
        except _DATABASE_ERRORS as exc:
            raise _store_error(exc) from exc


async def _keep_session(conn: object) -> None:
    """The pool's reset: nothing to undo (see PostgresStore.open)."""


def _store_error(exc: BaseException) -> StoreError:
    if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
        return ConflictError(str(exc))
    return StoreError(_reason(exc))


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _schema_version(conn: _Connection) -> int:
    return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))
