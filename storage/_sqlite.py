"""SQLite backend of the store (aiosqlite, WAL)."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import aiosqlite

from storage._audit import AuditMixin
from storage._base import DEFAULT_LEASE_SECONDS, Conn, Params, default_instance_id
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
from storage._sqlite_loop import Busy, LoopConnection, passive_checkpoint, run_read_atomically
from storage._sqlite_thread import (
    SqliteConn,
    _Caller,
    _run_group,
    _run_read,
    _run_transaction,
    _StoreLock,
)
from storage._tenancy import TenancyMixin
from storage._threads import ThreadsMixin
from storage._url import MEMORY

log = logging.getLogger(__name__)

# RETURNING (3.35) lets one statement both change a row and report it.
_MIN_SQLITE = (3, 35, 0)

# The kv_store row `check_writable` rewrites.
_WRITE_PROBE_KEY = "health:last_write"

T = TypeVar("T")

_GROUP_STOPPED = "the store stopped before the write was known to be committed"


class SqliteStore(
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
    """The store on one SQLite file, through a single aiosqlite connection.

    Every operation holds `self._lock`. One connection has one transaction state, so two
    coroutines interleaving statements on it would mix their transactions, and a read could
    see another coroutine's uncommitted writes. aiosqlite runs all statements on one thread
    anyway, so the lock costs no parallelism. Other processes (or a second store on the same
    file) are kept apart by SQLite itself: writes use BEGIN IMMEDIATE, which takes the write
    lock up front and waits up to busy_timeout for it instead of failing half-way.

    An operation (`_write_op`, `_read_op`, `_urgent_op`) runs whole at once, BEGIN IMMEDIATE
    and COMMIT included: on a second connection on the event loop's thread that never waits
    for a lock (storage/_sqlite_loop.py), or, when another process holds the lock, in ONE
    hand-off to aiosqlite's thread, which waits for it. A hand-off costs a queue put, a thread
    switch and a wake-up of the event loop, more than most statements themselves. Grouped
    writes (`_grouped_write_op`: webhook ingest) that arrive while the connection is busy go
    together, in one run and one transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Callable[[], float] = time.time,
        busy_timeout_ms: int = 5000,
        migrations: Sequence[Migration] = MIGRATIONS,
        on_statement: Callable[[str], None] | None = None,
        instance_id: str | None = None,
        lease_seconds: float = DEFAULT_LEASE_SECONDS,
        run_on_loop: bool = True,
    ) -> None:
        """`on_statement` is given each SQL statement as it runs (with its values filled in),
        on the thread running it; for tests and diagnosis only, since values include bodies.
        `run_on_loop=False` sends every operation to aiosqlite's thread."""
        self._path = os.fspath(path)
        self._on_statement = on_statement
        self._clock = clock
        self._busy_timeout_ms = int(busy_timeout_ms)
        self._migrations = tuple(migrations)
        check_migrations(self._migrations)
        self._lock = _StoreLock()
        # Grouped writes waiting for the next group, and the task running the groups.
        self._group: list[
            tuple[Callable[[Conn], Awaitable[Any]], _Caller, asyncio.Future[Any]]
        ] = []
        self._group_runner: asyncio.Task[None] | None = None
        self._db: aiosqlite.Connection | None = None
        self._conn: SqliteConn | None = None
        self._run_on_loop = run_on_loop
        self._loop_db: LoopConnection | None = None
        self._instance_id = instance_id or default_instance_id()
        self._lease_seconds = float(lease_seconds)

    @property
    def path(self) -> str:
        return self._path

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        """Connect, set pragmas and apply pending migrations; a second call does nothing."""
        async with self._lock:
            if self._db is None:
                self._db = await self._connect()
                self._conn = SqliteConn(self._db)
                if self._run_on_loop and self._path != MEMORY:
                    try:
                        self._loop_db = LoopConnection(
                            self._path, on_statement=self._on_statement, checkpoint=self._checkpoint
                        )
                    except sqlite3.Error as exc:
                        await self._db.close()
                        self._db = self._conn = None
                        raise StoreError(f"cannot open database {self._path!r}: {exc}") from exc

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
            loop_db, self._loop_db = self._loop_db, None
            self._conn = None
            if loop_db is not None:
                await loop_db.close()
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

    async def _switch_to_wal(self, db: aiosqlite.Connection) -> sqlite3.Row | None:
        # SQLite answers "database is locked" at once, without its busy handler, when the
        # switch meets another connection opening the same new file (several instances or
        # `db copy` starting together): try again until busy_timeout, as for any lock.
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return await _one(db, "PRAGMA journal_mode = WAL")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.01)

    async def _configure(self, db: aiosqlite.Connection) -> None:
        # busy_timeout first, so that switching to WAL waits for other connections too.
        # PRAGMAs take no bound parameters; the value is an int we produced.
        await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        mode_row = await self._switch_to_wal(db)
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
        refuse_newer_schema(repr(self._path), current, self._migrations)
        for migration in self._migrations:
            if migration.version <= current:
                continue
            async with _transaction(db):
                # Re-read inside the write lock: another process may have just migrated.
                current = await _schema_version(db)
                if migration.version <= current:
                    continue
                for statement in migration.steps("sqlite"):
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

    def _connection(self) -> SqliteConn:
        if self._conn is None:
            raise StoreError("the store is not open")
        return self._conn

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[Conn]:
        async with self._lock:
            yield self._connection()

    @asynccontextmanager
    async def _write(self, *, serial: bool = True) -> AsyncIterator[Conn]:
        # Every SQLite write is serial: BEGIN IMMEDIATE takes the file's write lock.
        del serial
        async with self._lock:
            conn = self._connection()
            async with _transaction(conn.raw):
                yield conn

    @asynccontextmanager
    async def _urgent(self) -> AsyncIterator[Conn]:
        # Before every operation queued for the connection, only the running one is waited
        # for; the statement runs in autocommit, atomic on its own.
        async with self._lock.urgent():
            yield self._connection()

    async def _write_op(
        self, operation: Callable[[Conn], Awaitable[T]], *, serial: bool = True
    ) -> T:
        del serial  # every SQLite write is serial (BEGIN IMMEDIATE)
        async with self._lock:
            return await self._run(partial(_run_transaction, operation))

    async def _grouped_write_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        caller = _Caller()
        self._group.append((operation, caller, done))
        if self._group_runner is None or self._group_runner.done():
            self._group_runner = asyncio.create_task(self._run_groups())
        try:
            return await done
        except asyncio.CancelledError:
            # Not run if its group has not reached it yet, else rolled back alone unless it
            # was released into the group's transaction already (then it commits with it).
            caller.gone = True
            raise

    async def _run_groups(self) -> None:
        """Run the waiting grouped writes, in groups, until none is left.

        A group is what waited while the connection was busy (with the previous group, or
        anything else): one hand-off, one BEGIN IMMEDIATE ... COMMIT, each write in it under
        its own savepoint, so that one failing rolls back only itself.
        """
        while self._group:
            async with self._lock:
                group = [entry for entry in self._group if not entry[2].done()]
                self._group.clear()
                if not group:
                    continue
                try:
                    outcomes = await self._run(
                        partial(_run_group, [(operation, caller) for operation, caller, _ in group])
                    )
                except Exception as exc:
                    # Nothing of the group was committed.
                    for _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                    continue
                except BaseException:
                    # This task was cancelled (the loop is ending): the group is rolled back
                    # unless it was committing already. Nobody is left to run the writes still
                    # waiting.
                    for _, _, done in [*group, *self._group]:
                        if not done.done():
                            done.set_exception(StoreError(_GROUP_STOPPED))
                    self._group.clear()
                    raise
            for (_, _, done), (value, error) in zip(group, outcomes, strict=True):
                if done.done():
                    continue
                if error is not None:
                    done.set_exception(error)
                else:
                    done.set_result(value)

    async def _read_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._lock:
            return await self._run(
                partial(_run_read, operation), partial(run_read_atomically, operation)
            )

    async def _urgent_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        async with self._lock.urgent():
            return await self._run(
                partial(_run_read, operation), partial(run_read_atomically, operation)
            )

    @property
    def runs(self) -> tuple[int, int]:
        """Operations run on the loop's connection, and those handed over for a lock."""
        loop_db = self._loop_db
        return (loop_db.ran, loop_db.handed_over) if loop_db is not None else (0, 0)

    async def _checkpoint(self) -> None:
        async with self._lock:
            await self._on_thread(passive_checkpoint)

    async def _run(
        self,
        function: Callable[[sqlite3.Connection, _Caller], T],
        on_loop: Callable[[sqlite3.Connection, _Caller], T] | None = None,
    ) -> T:
        """`function` (or its `on_loop` form) on the loop's connection, now; on aiosqlite's
        thread when that one met a lock held elsewhere, or when there is none."""
        if self._loop_db is not None:
            with suppress(Busy):
                return self._loop_db.run(on_loop or function)
        return await self._on_thread(function)

    async def _on_thread(self, function: Callable[[sqlite3.Connection, _Caller], T]) -> T:
        """`function(connection, caller)` run on aiosqlite's thread, in one hand-off.

        Cancelling the caller cannot interrupt it there: it is told (`_Caller.gone`), and a
        transaction it has not committed yet is rolled back (as `_transaction` does), never
        left open. aiosqlite runs the next operation's function only after this one's end.
        """
        raw = self._connection().raw
        caller = _Caller()
        # aiosqlite queues every call for its thread through `_execute` (its execute() and
        # friends are this with one sqlite3 method); it has no public way to queue our own.
        execute = cast(Callable[[Callable[[], T]], Awaitable[T]], raw._execute)
        try:
            return await execute(lambda: function(raw._conn, caller))
        except asyncio.CancelledError:
            caller.gone = True
            raise

    async def schema_version(self) -> int:
        """Highest migration applied to the database."""
        async with self._lock:
            return await _schema_version(self._connection().raw)

    async def ping(self) -> None:
        """Raise StoreError unless the database answers a trivial query."""
        async with self._read() as db:
            rows = await db.fetch("SELECT 1 FROM schema_migrations LIMIT 1")
        if not rows:
            raise StoreError("the database has no schema")

    async def check_writable(self) -> None:
        """Raise StoreError unless a small write reaches the database file now.

        The health check's probe: one kv_store row upserted and committed, like any real write
        (it waits out a lock held elsewhere up to busy_timeout). The commit appends a frame to
        the WAL, so a read-only file, a folder where the WAL cannot be created and a full disk
        all fail it; a write rolled back instead never leaves SQLite's page cache and would
        miss the last two.
        """
        now = self._clock()

        async def probe(db: Conn) -> None:
            await db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (_WRITE_PROBE_KEY, repr(now), now),
            )

        await self._write_op(probe)


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


async def _one(db: aiosqlite.Connection, sql: str, params: Params = ()) -> sqlite3.Row | None:
    # fetchall runs the statement to completion, so no statement stays open across COMMIT.
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0] if rows else None
