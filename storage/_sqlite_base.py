"""What the SQLite store's aggregate mixins share: their typed base, the lock, query helpers."""

from __future__ import annotations

import asyncio
import sqlite3
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from typing import Any

import aiosqlite

from storage._errors import StoreError

_Params = Sequence[Any] | Mapping[str, Any]


class StoreBase(ABC):
    """What each aggregate's mixin uses of the store; SqliteStore provides it."""

    _clock: Callable[[], float]
    _lock: _StoreLock

    @abstractmethod
    def _connection(self) -> aiosqlite.Connection: ...

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...

    @abstractmethod
    def _write(self) -> AbstractAsyncContextManager[aiosqlite.Connection]: ...


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


async def _one(db: aiosqlite.Connection, sql: str, params: _Params = ()) -> sqlite3.Row | None:
    # fetchall runs the statement to completion, so no statement stays open across COMMIT.
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0] if rows else None


async def _all(db: aiosqlite.Connection, sql: str, params: _Params = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


def _required(row: sqlite3.Row | None) -> sqlite3.Row:
    # An INSERT/UPDATE ... RETURNING on a row we hold the write lock for always returns it.
    if row is None:
        raise StoreError("a write returned no row")
    return row
