"""The SQLite store's second connection, on the event loop's own thread.

A hand-off to aiosqlite's thread (a queue put, a thread switch, a wake-up of the event loop
through its self-pipe, the GIL passed back and forth twice) costs more than most operations
themselves: a look-up by index or a one-row write takes 20-200 µs, a hand-off more. So
SqliteStore runs an operation here first, whole and at once, on a connection that never waits
for a lock (busy_timeout 0). Only when SQLite answers that the file is busy or locked (another
process holds the write lock: `db copy`, a CLI command, a second bridge on the same file) is
what it did rolled back and the operation handed to aiosqlite's thread, which waits for the
lock up to busy_timeout while the loop goes on serving.

Nothing here may wait on the disk either. In WAL mode with synchronous=NORMAL a commit appends
to the WAL without fsync; the checkpoint (copying the WAL into the file, with fsyncs) is what
waits. So this connection never checkpoints by itself: every `CHECKPOINT_EVERY` commits the
store runs one on aiosqlite's thread, holding its lock so that no write of ours lands during
it: a checkpoint that reaches the WAL's end lets the next write start the WAL over, where one
racing a stream of writes never would and the WAL would grow without end.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from storage._errors import StoreError
from storage._sqlite_thread import _Caller, _run_statements, _store_error

log = logging.getLogger(__name__)

T = TypeVar("T")

# Commits on the loop's connection between two passive checkpoints. SQLite's own default is a
# checkpoint when the WAL passes 1,000 pages; a commit here writes a few pages.
CHECKPOINT_EVERY = 200

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class Busy(Exception):
    """The operation met a lock held elsewhere; nothing of it was kept."""


class _WatchedConnection(sqlite3.Connection):
    """A sqlite3 connection that notes whether a statement was refused for a lock, even when
    the operation running it caught the StoreError it became."""

    met_lock = False

    def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
        try:
            return super().execute(sql, parameters)
        except sqlite3.OperationalError as exc:
            self._note(exc)
            raise

    def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
        try:
            return super().executemany(sql, parameters)
        except sqlite3.OperationalError as exc:
            self._note(exc)
            raise

    def _note(self, exc: sqlite3.OperationalError) -> None:
        if exc.sqlite_errorcode & 0xFF in _BUSY:
            self.met_lock = True


def run_read_atomically(
    operation: Callable[[Any], Any], db: sqlite3.Connection, caller: _Caller
) -> Any:
    """What `_run_read` runs in autocommit, here in one deferred transaction.

    An operation for `_read_op` or `_urgent_op` may write (the compose intent's INSERT). Run
    statement by statement in autocommit, a second write refused for a lock would leave the
    first committed, and running the whole operation again on aiosqlite's thread would do it
    twice; in one transaction the refusal rolls back everything before it.
    """
    del caller  # nothing here can be cancelled half-way: it runs at once
    db.execute("BEGIN")
    try:
        result = _run_statements(operation, db)
        db.execute("COMMIT")
    except BaseException:
        _rollback(db)
        raise
    return result


class LoopConnection:
    """The connection operations run on first; see the module's docstring."""

    def __init__(
        self,
        path: str,
        *,
        on_statement: Callable[[str], None] | None,
        checkpoint: Callable[[], Awaitable[None]],
    ) -> None:
        """`checkpoint` runs `passive_checkpoint` where it cannot meet a write of ours."""
        # isolation_level=None: every transaction is an explicit BEGIN ... COMMIT.
        db = sqlite3.connect(
            path, isolation_level=None, factory=_WatchedConnection, check_same_thread=False
        )
        try:
            db.row_factory = sqlite3.Row
            if on_statement is not None:
                db.set_trace_callback(on_statement)
            db.execute("PRAGMA busy_timeout = 0")  # a lock elsewhere: hand over, never wait
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("PRAGMA foreign_keys = ON")
            db.execute("PRAGMA wal_autocheckpoint = 0")  # see CHECKPOINT_EVERY
        except BaseException:
            db.close()
            raise
        self._db: _WatchedConnection = db
        self._checkpoint = checkpoint
        self._commits = 0
        self._checkpointing: asyncio.Task[None] | None = None
        # Operations run here, and operations handed to aiosqlite's thread for a lock.
        self.ran = 0
        self.handed_over = 0

    def run(self, function: Callable[[sqlite3.Connection, _Caller], T]) -> T:
        """`function` on this connection, now; raises Busy (all of it undone) on a lock."""
        db = self._db
        db.met_lock = False
        changes = db.total_changes
        try:
            result = function(db, _Caller())
        except Exception as exc:
            if db.met_lock:
                _rollback(db)
                self.handed_over += 1
                raise Busy from exc
            raise
        if db.met_lock:
            # Caught inside the operation and committed around: cannot be, since a lock is
            # refused only at BEGIN IMMEDIATE or a deferred transaction's first write, and a
            # transaction that began holds its lock to the end. Refuse loudly all the same.
            _rollback(db)
            raise _store_error(sqlite3.OperationalError("a lock was met and not reported"))
        self.ran += 1
        if db.total_changes != changes:
            self._committed()
        return result

    def _committed(self) -> None:
        self._commits += 1
        if self._commits % CHECKPOINT_EVERY == 0 and (
            self._checkpointing is None or self._checkpointing.done()
        ):
            self._checkpointing = asyncio.get_running_loop().create_task(self._checkpoint_now())

    async def _checkpoint_now(self) -> None:
        try:
            await self._checkpoint()
        except (sqlite3.Error, StoreError) as exc:
            # Not a lost write: the WAL grows until the next checkpoint succeeds.
            log.warning("SQLite checkpoint failed: %s", exc)

    async def close(self) -> None:
        """Close the connection; a checkpoint still waiting is not needed any more."""
        if self._checkpointing is not None:
            self._checkpointing.cancel()
            await asyncio.gather(self._checkpointing, return_exceptions=True)
        self._db.close()


def passive_checkpoint(db: sqlite3.Connection, caller: _Caller) -> None:
    """Copy what the WAL holds into the database file, waiting for no reader."""
    del caller
    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _rollback(db: sqlite3.Connection) -> None:
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error:
            log.debug("rollback found no transaction")
