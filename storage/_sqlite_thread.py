"""What the SQLite store runs on aiosqlite's thread, and the lock its operations queue on.

An operation (a function of the connection whose awaits are only its statements) runs whole on
that thread: BEGIN IMMEDIATE, its statements, COMMIT, in one hand-off. SqliteStore
(storage/_sqlite.py) schedules these; the mixins only ever see a `Conn`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar, cast

import aiosqlite

from storage._base import Conn, Params, Row
from storage._errors import ConflictError, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


class _Caller:
    """Whether the coroutine waiting for an operation was cancelled: set on the event loop's
    thread, read on aiosqlite's, which then does not begin or commit what it was running."""

    __slots__ = ("gone",)

    def __init__(self) -> None:
        self.gone = False


class _CallerGone(Exception):
    """Raised on aiosqlite's thread to drop (roll back) the operation of a cancelled caller."""


def _run_read(
    operation: Callable[[Conn], Awaitable[T]], db: sqlite3.Connection, caller: _Caller
) -> T:
    """On aiosqlite's thread: `operation`'s statements, each in autocommit."""
    if caller.gone:
        raise _CallerGone
    return _run_statements(operation, db)


def _run_transaction(
    operation: Callable[[Conn], Awaitable[T]], db: sqlite3.Connection, caller: _Caller
) -> T:
    """On aiosqlite's thread: BEGIN IMMEDIATE, `operation`, COMMIT; rolled back on any error
    and when the caller was cancelled before the COMMIT.

    What `_transaction` does over several hand-offs, in one. sqlite3 errors leave as
    StoreError / ConflictError.
    """
    if caller.gone:
        raise _CallerGone
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot start a transaction: {exc}") from exc
    try:
        result = _run_statements(operation, db)
        if caller.gone:
            raise _CallerGone
        db.execute("COMMIT")
    except BaseException as exc:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            # SQLite already rolled back by itself (it does on some errors); nothing to undo.
            log.debug("rollback after %r found no transaction", exc)
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc) from exc
        raise
    return result


def _run_group(
    operations: Sequence[tuple[Callable[[Conn], Awaitable[Any]], _Caller]],
    db: sqlite3.Connection,
    caller: _Caller,
) -> list[tuple[Any, Exception | None]]:
    """On aiosqlite's thread: the operations in one transaction, each under a savepoint.

    Returns each one's result, or the error that rolled it back alone (an operation whose
    own caller was cancelled is rolled back alone too). Raises (the whole group rolled back)
    when BEGIN or COMMIT fails, when SQLite rolled the transaction back by itself after an
    error (then nothing of the group holds), or when `caller` (the group's) was cancelled.
    """
    if caller.gone:
        raise _CallerGone
    try:
        db.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot start a transaction: {exc}") from exc
    outcomes: list[tuple[Any, Exception | None]] = []
    try:
        for operation, its_caller in operations:
            db.execute("SAVEPOINT grouped_write")
            try:
                if its_caller.gone:
                    raise _CallerGone
                value = _run_statements(operation, db)
                if its_caller.gone:
                    raise _CallerGone
            except Exception as exc:
                if not db.in_transaction:
                    raise
                db.execute("ROLLBACK TO grouped_write")
                db.execute("RELEASE grouped_write")
                outcomes.append((None, exc))
            else:
                db.execute("RELEASE grouped_write")
                outcomes.append((value, None))
        if caller.gone:
            raise _CallerGone
        db.execute("COMMIT")
    except BaseException as exc:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback after %r found no transaction", exc)
        if isinstance(exc, sqlite3.Error):
            raise _store_error(exc) from exc
        raise
    return outcomes


def _run_statements(operation: Callable[[Conn], Awaitable[T]], db: sqlite3.Connection) -> T:
    """On aiosqlite's thread: `operation` on `db`, whose statements run as they are awaited.

    Their awaits never suspend, so the coroutine finishes at its first step. One that does
    suspend awaited something else, which cannot run here: refused (a bug), and its
    transaction (if any) rolled back by the caller.
    """
    steps = operation(_ThreadConn(db)).__await__()
    try:
        steps.send(None)
    except StopIteration as finished:
        return cast(T, finished.value)
    steps.close()
    raise StoreError("a store operation awaited something other than its statements")


class SqliteConn(Conn):
    """The mixins' view of the aiosqlite connection; sqlite3 errors leave as StoreError."""

    dialect = "sqlite"

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            # fetchall runs the statement to completion: none stays open across COMMIT.
            return list(await self.raw.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> None:
        try:
            await self.raw.execute(sql, params)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            await self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc


class _ThreadConn(Conn):
    """The mixins' view of the sqlite3 connection itself, on aiosqlite's thread (see
    `_run_statements`): each statement runs when awaited, without suspending."""

    dialect = "sqlite"

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        try:
            # fetchall runs the statement to completion: none stays open across COMMIT.
            return self.raw.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def execute(self, sql: str, params: Params = ()) -> None:
        try:
            self.raw.execute(sql, params)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc

    async def executemany(self, sql: str, rows: Sequence[Params]) -> None:
        try:
            self.raw.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise _store_error(exc) from exc


def _store_error(exc: sqlite3.Error) -> StoreError:
    if isinstance(exc, sqlite3.IntegrityError):
        return ConflictError(str(exc))
    return StoreError(str(exc))


class _StoreLock:
    """An asyncio lock (FIFO) whose `urgent()` holders go before every ordinary waiter.

    Background work (workers, webhooks, polling) may queue tens of operations on the one
    connection; the insert a Slack ack waits for must wait only for the one running.
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    async def __aenter__(self) -> None:
        await self._acquire(self._ordinary)

    async def __aexit__(self, *_exc: object) -> None:
        self._release()

    @asynccontextmanager
    async def urgent(self) -> AsyncIterator[None]:
        await self._acquire(self._urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, queue: deque[asyncio.Future[None]]) -> None:
        if not self._held and not self._urgent and not self._ordinary:
            self._held = True
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed over just as the wait was cancelled: pass it on
            else:
                with suppress(ValueError):  # a release may have dropped it already
                    queue.remove(waiter)
            raise

    def _release(self) -> None:
        """Hand the lock to the next live waiter, urgent ones first; else free it."""
        for queue in (self._urgent, self._ordinary):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._held = False
