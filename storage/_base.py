"""What the store's aggregate mixins share: the connection seam, their typed base, helpers.

The mixins (threads, messages, outbox, inbound, intents, dedupe) hold the SQL of the store,
written once in the dialect SQLite and PostgreSQL share: `?` or `:name` parameters, RETURNING,
ON CONFLICT, CAST(... AS TEXT) where PostgreSQL cannot infer a parameter's type. Each backend
(SqliteStore, PostgresStore) gives them a `Conn` and says when a transaction is serialised.
"""

from __future__ import annotations

import os
import re
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from functools import cache, lru_cache
from typing import Any, Literal, Protocol, TypeVar

from storage._errors import StoreError

Params = Sequence[Any] | Mapping[str, Any]
T = TypeVar("T")

# How long a claim stays another instance's after its holder last renewed it. Long enough
# to ride out a slow disk or a busy database, short enough that a dead instance's sends
# are reconciled and its inbound events posted within a minute.
DEFAULT_LEASE_SECONDS = 30.0


def default_instance_id() -> str:
    """This process's name in leases and metrics: host and process id, unique while it runs."""
    return f"{socket.gethostname()}-{os.getpid()}"


Dialect = Literal["sqlite", "postgresql"]


class Row(Protocol):
    """A result row: by column name or position (sqlite3.Row and asyncpg.Record both are)."""

    def __getitem__(self, key: int | str, /) -> Any: ...
    def keys(self) -> Any: ...


class Conn(ABC):
    """One database connection as the mixins use it; backend errors leave as StoreError."""

    dialect: Dialect

    @abstractmethod
    async def fetch(self, sql: str, params: Params = ()) -> list[Row]:
        """Run a statement to completion and return its rows."""

    @abstractmethod
    async def execute(self, sql: str, params: Params = ()) -> None: ...

    @abstractmethod
    async def executemany(self, sql: str, rows: Sequence[Params]) -> None: ...


class StoreBase(ABC):
    """What each aggregate's mixin uses of the store; SqliteStore and PostgresStore provide it."""

    _clock: Callable[[], float]
    # Who holds a claim (outbox 'sending', inbound 'processing') and for how long it is held
    # unless renewed: another instance takes the claim over only after it expired.
    _instance_id: str
    _lease_seconds: float

    # Whether several instances may work on this database at once (see Store.shared).
    shared: bool = False

    @property
    def instance_id(self) -> str:
        return self._instance_id

    @property
    def lease_seconds(self) -> float:
        return self._lease_seconds

    @abstractmethod
    def _read(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for reads; each statement sees committed data."""

    @abstractmethod
    def _write(self, *, serial: bool = True) -> AbstractAsyncContextManager[Conn]:
        """A transaction, committed on exit and rolled back on any error.

        `serial`: no other serial write transaction (of any process) runs at the same time,
        so a look-up and the write that depends on it cannot be overtaken. SQLite's writes
        always are (BEGIN IMMEDIATE); on PostgreSQL only these take the store's advisory
        lock. Pass False only for a transaction whose statements are race-free on their own
        (single upserts, SKIP LOCKED claims).
        """

    @abstractmethod
    def _urgent(self) -> AbstractAsyncContextManager[Conn]:
        """A connection for one autocommitted statement a Slack ack is waiting for."""

    # One store operation is one of these: its statements, given as a function of the
    # connection, run together. SqliteStore runs each in ONE hand-off to aiosqlite's thread
    # (BEGIN IMMEDIATE ... COMMIT included), where a statement per `await` would cost a
    # hand-off each. So an operation must await nothing but its connection's statements.

    async def _write_op(
        self, operation: Callable[[Conn], Awaitable[T]], *, serial: bool = True
    ) -> T:
        """`operation` in a write transaction (see `_write`), committed when it returns."""
        async with self._write(serial=serial) as db:
            return await operation(db)

    async def _single_write_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """`operation`, a write that needs no transaction on PostgreSQL: there it writes with
        one statement, atomic and race-free on its own (an upsert, a compare-and-set UPDATE,
        data-modifying WITH), and anything after it only reads (the row a conflict kept, why
        an UPDATE matched nothing). PostgreSQL autocommits each statement (no BEGIN/COMMIT
        round trips), each seeing what is committed when it runs. By default, and on SQLite,
        it is a write transaction like any (see `_write`), so an SQLite branch of it (which
        has no UPDATE or INSERT inside WITH) may write with several statements."""
        return await self._write_op(operation, serial=False)

    async def _grouped_write_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """`operation` as a write that needs no serial lock (see `_write`), which may share
        its transaction with other grouped writes made at the same time: each still all or
        nothing, and returned only once the transaction holding it has committed. Where
        writes are not grouped (PostgreSQL) it is a `_single_write_op`."""
        return await self._single_write_op(operation)

    def _claim_params(self, now: float | None) -> dict[str, Any]:
        """The parameters of `queue_claim_sql`: now, and this instance's lease from now."""
        when = self._clock() if now is None else now
        return {"now": when, "owner": self._instance_id, "until": when + self._lease_seconds}

    async def _read_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """`operation` on a connection for reads (see `_read`)."""
        async with self._read() as db:
            return await operation(db)

    async def _urgent_op(self, operation: Callable[[Conn], Awaitable[T]]) -> T:
        """`operation`, one autocommitted statement a Slack ack waits for (see `_urgent`)."""
        async with self._urgent() as db:
            return await operation(db)


async def _one(db: Conn, sql: str, params: Params = ()) -> Row | None:
    rows = await db.fetch(sql, params)
    return rows[0] if rows else None


async def _all(db: Conn, sql: str, params: Params = ()) -> list[Row]:
    return await db.fetch(sql, params)


def _required(row: Row | None) -> Row:
    # An INSERT/UPDATE ... RETURNING on a row we hold the write lock for always returns it.
    if row is None:
        raise StoreError("a write returned no row")
    return row


# `?`, or `:name` not preceded by another colon (PostgreSQL's `::type` casts), outside
# quoted strings and `--` comments (which are matched first, and kept as they are).
_PARAMETER = re.compile(r"--[^\n]*|'[^']*'|\?|(?<!:):([A-Za-z_][A-Za-z0-9_]*)")


@lru_cache(maxsize=512)
def numbered_sql(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """The statement with `$1, $2, …` parameters (PostgreSQL's), and how to order the values.

    Returns the names in `$n` order for `:name` statements, or the count of `?`s.
    """
    names: list[str] = []
    positional = 0

    def number(match: re.Match[str]) -> str:
        nonlocal positional
        text = match.group(0)
        if text.startswith(("'", "--")):
            return text
        if text == "?":
            positional += 1
            return f"${positional}"
        name = match.group(1)
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    converted = _PARAMETER.sub(number, sql)
    if names and positional:
        raise StoreError("a statement mixes ? and :name parameters")
    return converted, (tuple(names) if names else positional)


def numbered_values(order: tuple[str, ...] | int, params: Params) -> list[Any]:
    """The values of `params` in the order `numbered_sql` gave."""
    if isinstance(order, int):
        if isinstance(params, Mapping):
            raise StoreError("a ? statement was given named values")
        values = list(params)
        if len(values) != order:
            raise StoreError(f"statement takes {order} values, {len(values)} given")
        return values
    if not isinstance(params, Mapping):
        raise StoreError("a :name statement was given positional values")
    return [params[name] for name in order]


def queue_claim_sql(db: Conn, table: str, taken: str, free_head: str) -> str:
    """A durable queue's claim: the pending row due longest (ties: oldest) whose `free_head`
    holds (a condition on `candidate`) moves to state `taken` under this instance's lease.

    Written in the order of the table's due index (state, next_attempt_at, then id), so SQLite
    walks that index and stops at the first claimable row; each test of `free_head` is one
    index seek.
    """
    return _queue_claim_sql(skip_locked(db), table, taken, free_head)


@cache
def _queue_claim_sql(skipping: str, table: str, taken: str, free_head: str) -> str:
    """queue_claim_sql's text, made once per dialect and queue (it is asked at every claim)."""
    return f"""
        UPDATE {table}
        SET state = '{taken}', attempts = attempts + 1, updated_at = :now,
            lease_owner = :owner, lease_expires_at = :until
        WHERE id = (
            SELECT candidate.id FROM {table} AS candidate
            WHERE candidate.state = 'pending'
              AND candidate.next_attempt_at <= :now
              AND {free_head}
            ORDER BY candidate.next_attempt_at, candidate.id
            LIMIT 1 {skipping}
        )
        RETURNING *
        """  # noqa: S608 - only constants of this package are formatted in


def queue_next_due_sql(table: str, free_head: str) -> str:
    """When the queue's claim can next take a row: the earliest due time of a pending row
    whose `free_head` holds (one time column, or no row)."""
    return f"""
        SELECT candidate.next_attempt_at FROM {table} AS candidate
        WHERE candidate.state = 'pending' AND {free_head}
        ORDER BY candidate.next_attempt_at, candidate.id
        LIMIT 1
        """  # noqa: S608 - only constants of this package are formatted in


async def claim_or_due(
    db: Conn, claim: str, due: str, params: Params
) -> tuple[Row | None, float | None]:
    """A queue's claim (an UPDATE … RETURNING * taking one row) and, only when it takes
    nothing, the queue's next due time (`due`: a SELECT of one time column, no parameters).

    One statement on PostgreSQL, where each is a round trip: a worker slot that finds nothing
    asks both every time. The due time is read from the snapshot the claim saw.
    """
    if db.dialect == "postgresql":
        sql = (
            f"WITH claimed AS ({claim}) SELECT claimed.*,"  # noqa: S608 - the callers' constants
            f" CASE WHEN claimed.id IS NULL THEN ({due}) END AS next_due"
            " FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE"
        )
        row = await _one(db, sql, params)
        if row is None or row["id"] is None:
            next_due = None if row is None else row["next_due"]
            return None, None if next_due is None else float(next_due)
        return row, None
    row = await _one(db, claim, params)
    if row is not None:
        return row, None
    found = await _one(db, due)
    return None, None if found is None else float(found[0])


def skip_locked(db: Conn) -> str:
    """The clause that makes a claim's sub-select pass over rows another claim holds.

    PostgreSQL only: there several instances claim at once, and a row being claimed
    elsewhere is skipped rather than waited for. SQLite's writes are serial anyway.
    """
    return "FOR UPDATE OF candidate SKIP LOCKED" if db.dialect == "postgresql" else ""
