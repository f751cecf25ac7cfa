"""SQLite backend of the store (aiosqlite, WAL)."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sqlite3
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiosqlite

from storage._errors import ConflictError, NotFoundError, OutboxStateError, StoreError
from storage._migrations import (
    CREATE_MIGRATIONS_TABLE,
    MIGRATIONS,
    Migration,
    check_migrations,
)
from storage._records import (
    INTENT_QUEUED,
    UNSET,
    ComposeIntent,
    InboundEvent,
    InboundState,
    IntentState,
    MessageDirection,
    MessageRecord,
    OutboxEntry,
    OutboxState,
    ThreadRecord,
    Unset,
)
from storage._url import MEMORY, parse_sqlite_url

log = logging.getLogger(__name__)

# RETURNING (3.35) lets one statement both change a row and report it.
_MIN_SQLITE = (3, 35, 0)

_Params = Sequence[Any] | Mapping[str, Any]

# Which states each outbox transition may start from. Anything else is a bug or a race the
# caller must see (e.g. cancelling an entry the worker has just claimed).
_FROM_STATES: dict[str, frozenset[OutboxState]] = {
    "mark_sent": frozenset({OutboxState.SENDING, OutboxState.UNKNOWN}),
    # From 'sent' when HighLevel later reports the message failed or was undelivered.
    "mark_failed": frozenset(
        {OutboxState.PENDING, OutboxState.SENDING, OutboxState.UNKNOWN, OutboxState.SENT}
    ),
    "mark_unknown": frozenset({OutboxState.SENDING}),
    # From 'unknown' only once reconciliation proved HighLevel never got the request;
    # from 'failed' when a person asks to try again.
    "retry_later": frozenset({OutboxState.SENDING, OutboxState.UNKNOWN, OutboxState.FAILED}),
    # From 'sent' for a scheduled message that HighLevel has cancelled before its time.
    "mark_cancelled": frozenset(
        {OutboxState.PENDING, OutboxState.FAILED, OutboxState.UNKNOWN, OutboxState.SENT}
    ),
}

_RECOVERY_ERROR = "process stopped while sending; the request may have reached HighLevel"
# The kv_store row `check_writable` rewrites.
_WRITE_PROBE_KEY = "health:last_write"

# None of the contact's sends is in flight and the pending entry `candidate` is the first
# pending one of its contact (tested in this order: the first rejects a backlog held behind a
# send in flight soonest). Each half is one seek in outbox_contact (location_id,
# contact_id, state, id), whatever the contact's history. (An OR of both states in one
# NOT EXISTS made SQLite walk every row the contact ever had: 12 ms at 100,000 rows.)
_OUTBOX_FREE_HEAD = """
    NOT EXISTS (
        SELECT 1 FROM outbox AS busy
        WHERE busy.location_id = candidate.location_id
          AND busy.contact_id = candidate.contact_id
          AND busy.state = 'sending'
    )
    AND candidate.id = (
        SELECT head.id FROM outbox AS head
        WHERE head.location_id = candidate.location_id
          AND head.contact_id = candidate.contact_id
          AND head.state = 'pending'
        ORDER BY head.id
        LIMIT 1
    )
"""

# None of the conversation is processing and the pending event `candidate` is its first
# pending one in the order the messages were sent (sort_at, then id). Each half is one seek
# in inbound_events_order (conversation_key, state, sort_at), whatever the history.
_INBOUND_FREE_HEAD = """
    NOT EXISTS (
        SELECT 1 FROM inbound_events AS busy
        WHERE busy.conversation_key = candidate.conversation_key
          AND busy.state = 'processing'
    )
    AND candidate.id = (
        SELECT head.id FROM inbound_events AS head
        WHERE head.conversation_key = candidate.conversation_key
          AND head.state = 'pending'
        ORDER BY head.sort_at, head.id
        LIMIT 1
    )
"""


async def open_store(database_url: str, *, clock: Callable[[], float] = time.time) -> SqliteStore:
    """Open (creating and migrating if needed) the store named by an sqlite URL."""
    store = SqliteStore(parse_sqlite_url(database_url), clock=clock)
    await store.open()
    return store


class SqliteStore:
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

    # ---------------------------------------------------------------- threads

    async def upsert_thread(
        self,
        *,
        team_id: str,
        channel_id: str,
        location_id: str,
        contact_id: str,
        thread_ts: str | None = None,
        conversation_id: str | None = None,
        channel_type: str | None = None,
        email_thread_id: str | None = None,
        subject: str | None = None,
        contact_label: str | None = None,
    ) -> ThreadRecord:
        """The contact's thread in this channel, created if missing (one even under races).

        On an existing thread, columns that are still NULL are filled from the arguments;
        set columns are never overwritten here (use update_thread / set_thread_ts). Compare
        the result's thread_ts with yours to learn whether your Slack root won.
        """
        now = self._clock()
        fills = {
            "thread_ts": thread_ts,
            "conversation_id": conversation_id,
            "channel_type": channel_type,
            "email_thread_id": email_thread_id,
            "subject": subject,
            "contact_label": contact_label,
        }
        async with self._write() as db:
            # Inside BEGIN IMMEDIATE no other writer can slip in between this look-up and
            # the insert, so concurrent first sends to a contact end up with one thread.
            row = await _one(
                db,
                "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ?"
                " AND location_id = ? AND contact_id = ?",
                (team_id, channel_id, location_id, contact_id),
            )
            if row is None:
                row = await _one(
                    db,
                    """
                    INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id,
                        contact_id, conversation_id, channel_type, email_thread_id, subject,
                        contact_label, created_at, updated_at)
                    VALUES (:team_id, :channel_id, :thread_ts, :location_id, :contact_id,
                        :conversation_id, :channel_type, :email_thread_id, :subject,
                        :contact_label, :now, :now)
                    RETURNING *
                    """,
                    {
                        "team_id": team_id,
                        "channel_id": channel_id,
                        "location_id": location_id,
                        "contact_id": contact_id,
                        "now": now,
                        **fills,
                    },
                )
            elif any(row[column] is None and value is not None for column, value in fills.items()):
                row = await _one(
                    db,
                    """
                    UPDATE slack_threads SET
                        thread_ts = COALESCE(thread_ts, :thread_ts),
                        conversation_id = COALESCE(conversation_id, :conversation_id),
                        channel_type = COALESCE(channel_type, :channel_type),
                        email_thread_id = COALESCE(email_thread_id, :email_thread_id),
                        subject = COALESCE(subject, :subject),
                        contact_label = COALESCE(contact_label, :contact_label),
                        updated_at = :now
                    WHERE id = :id
                    RETURNING *
                    """,
                    {"id": row["id"], "now": now, **fills},
                )
        return _thread(_required(row))

    async def get_thread(self, thread_id: int) -> ThreadRecord | None:
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM slack_threads WHERE id = ?", (thread_id,))
        return None if row is None else _thread(row)

    async def get_thread_by_slack(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        async with self._read() as db:
            row = await _one(
                db,
                "SELECT * FROM slack_threads"
                " WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
                (team_id, channel_id, thread_ts),
            )
        return None if row is None else _thread(row)

    async def find_thread_for_contact(
        self, team_id: str, channel_id: str, location_id: str, contact_id: str
    ) -> ThreadRecord | None:
        async with self._read() as db:
            row = await _one(
                db,
                "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ?"
                " AND location_id = ? AND contact_id = ?",
                (team_id, channel_id, location_id, contact_id),
            )
        return None if row is None else _thread(row)

    async def find_threads_for_conversation(
        self, location_id: str, conversation_id: str
    ) -> list[ThreadRecord]:
        """Threads (one per channel) showing this conversation, most recently updated first."""
        async with self._read() as db:
            rows = await _all(
                db,
                "SELECT * FROM slack_threads WHERE location_id = ? AND conversation_id = ?"
                " ORDER BY updated_at DESC, id DESC",
                (location_id, conversation_id),
            )
        return [_thread(row) for row in rows]

    async def find_threads_for_contact(
        self, location_id: str, contact_id: str
    ) -> list[ThreadRecord]:
        """Threads of this contact in any channel, most recently updated first.

        For inbound messages whose conversation is not yet linked to a thread.
        """
        async with self._read() as db:
            rows = await _all(
                db,
                "SELECT * FROM slack_threads WHERE location_id = ? AND contact_id = ?"
                " ORDER BY updated_at DESC, id DESC",
                (location_id, contact_id),
            )
        return [_thread(row) for row in rows]

    async def update_thread(
        self,
        thread_id: int,
        *,
        conversation_id: str | Unset | None = UNSET,
        channel_type: str | Unset | None = UNSET,
        email_thread_id: str | Unset | None = UNSET,
        subject: str | Unset | None = UNSET,
        contact_label: str | Unset | None = UNSET,
    ) -> ThreadRecord:
        """Change only the given columns (None clears one); updated_at is always bumped."""
        given = {
            "conversation_id": conversation_id,
            "channel_type": channel_type,
            "email_thread_id": email_thread_id,
            "subject": subject,
            "contact_label": contact_label,
        }
        params: dict[str, Any] = {"id": thread_id, "now": self._clock()}
        for column, value in given.items():
            params[f"set_{column}"] = value is not UNSET
            params[column] = None if value is UNSET else value
        async with self._write() as db:
            # One fixed statement whose CASEs keep unset columns, rather than SQL assembled
            # from the arguments.
            row = await _one(
                db,
                """
                UPDATE slack_threads SET
                    conversation_id = CASE WHEN :set_conversation_id
                        THEN :conversation_id ELSE conversation_id END,
                    channel_type = CASE WHEN :set_channel_type
                        THEN :channel_type ELSE channel_type END,
                    email_thread_id = CASE WHEN :set_email_thread_id
                        THEN :email_thread_id ELSE email_thread_id END,
                    subject = CASE WHEN :set_subject THEN :subject ELSE subject END,
                    contact_label = CASE WHEN :set_contact_label
                        THEN :contact_label ELSE contact_label END,
                    updated_at = :now
                WHERE id = :id
                RETURNING *
                """,
                params,
            )
        if row is None:
            raise NotFoundError(f"no thread {thread_id}")
        return _thread(row)

    async def set_thread_ts(
        self, thread_id: int, thread_ts: str, *, replace: bool = False
    ) -> ThreadRecord:
        """Record the Slack root of a reserved thread; the first root wins.

        Unless `replace`, a thread that already has a root keeps it: compare the result's
        thread_ts with yours, and if it differs, your post lost the race (delete or ignore it).
        ConflictError if another thread in the channel already uses `thread_ts`.
        """
        async with self._write() as db:
            row = await _one(
                db,
                "UPDATE slack_threads SET thread_ts = :ts, updated_at = :now"
                " WHERE id = :id AND (thread_ts IS NULL OR :replace)"
                " RETURNING *",
                {"ts": thread_ts, "now": self._clock(), "id": thread_id, "replace": replace},
            )
            if row is None:
                row = await _one(db, "SELECT * FROM slack_threads WHERE id = ?", (thread_id,))
        if row is None:
            raise NotFoundError(f"no thread {thread_id}")
        return _thread(row)

    async def delete_thread(self, thread_id: int) -> bool:
        """Forget a thread (its messages and outbox entries keep existing, unlinked)."""
        async with self._write() as db:
            rows = await _all(
                db, "DELETE FROM slack_threads WHERE id = ? RETURNING id", (thread_id,)
            )
        return bool(rows)

    # ---------------------------------------------------------------- messages

    async def record_message(
        self,
        *,
        direction: MessageDirection,
        thread_id: int | None = None,
        ghl_message_id: str | None = None,
        ghl_email_message_id: str | None = None,
        email_thread_id: str | None = None,
        message_type: str | None = None,
        status: str | None = None,
        slack_channel_id: str | None = None,
        slack_ts: str | None = None,
        slack_user_id: str | None = None,
        outbox_id: int | None = None,
    ) -> tuple[MessageRecord, bool]:
        """Insert a message, or return the one already recorded and created=False.

        Idempotent on ghl_message_id; without one, on (slack_channel_id, slack_ts). An
        existing row is returned unchanged, so check its slack_ts: a process that crashed
        between recording and posting to Slack leaves a row without one.
        ConflictError if the Slack message is already recorded under another HighLevel id.
        """
        if (slack_channel_id is None) != (slack_ts is None):
            raise ValueError("slack_channel_id and slack_ts go together")
        async with self._write() as db:
            if ghl_message_id is not None:
                existing = await _one(
                    db, "SELECT * FROM messages WHERE ghl_message_id = ?", (ghl_message_id,)
                )
            elif slack_ts is not None:
                existing = await _one(
                    db,
                    "SELECT * FROM messages WHERE slack_channel_id = ? AND slack_ts = ?",
                    (slack_channel_id, slack_ts),
                )
            else:
                existing = None
            if existing is not None:
                return _message(existing), False
            now = self._clock()
            row = await _one(
                db,
                """
                INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
                    ghl_email_message_id, email_thread_id, direction, message_type, status,
                    slack_user_id, outbox_id, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                RETURNING *
                """,
                (
                    thread_id,
                    slack_channel_id,
                    slack_ts,
                    ghl_message_id,
                    ghl_email_message_id,
                    email_thread_id,
                    MessageDirection(direction).value,
                    message_type,
                    status,
                    slack_user_id,
                    outbox_id,
                    now,
                    now,
                ),
            )
        return _message(_required(row)), True

    async def get_message(self, message_id: int) -> MessageRecord | None:
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM messages WHERE id = ?", (message_id,))
        return None if row is None else _message(row)

    async def get_message_by_ghl_id(self, ghl_message_id: str) -> MessageRecord | None:
        async with self._read() as db:
            row = await _one(
                db, "SELECT * FROM messages WHERE ghl_message_id = ?", (ghl_message_id,)
            )
        return None if row is None else _message(row)

    async def get_message_by_slack(self, channel_id: str, ts: str) -> MessageRecord | None:
        async with self._read() as db:
            row = await _one(
                db,
                "SELECT * FROM messages WHERE slack_channel_id = ? AND slack_ts = ?",
                (channel_id, ts),
            )
        return None if row is None else _message(row)

    async def update_message_status(self, ghl_message_id: str, status: str) -> MessageRecord | None:
        """Set the delivery status of a known HighLevel message; None if it is not recorded."""
        async with self._write() as db:
            row = await _one(
                db,
                "UPDATE messages SET status = ?, updated_at = ? WHERE ghl_message_id = ?"
                " RETURNING *",
                (status, self._clock(), ghl_message_id),
            )
        return None if row is None else _message(row)

    async def latest_message(
        self,
        thread_id: int,
        *,
        direction: MessageDirection | None = None,
        message_type: str | None = None,
    ) -> MessageRecord | None:
        """The thread's newest message, optionally of one direction and/or type."""
        async with self._read() as db:
            row = await _one(
                db,
                """
                SELECT * FROM messages
                WHERE thread_id = :thread_id
                  AND (:direction IS NULL OR direction = :direction)
                  AND (:message_type IS NULL OR message_type = :message_type)
                ORDER BY created_at DESC, id DESC
                LIMIT 1
                """,
                {
                    "thread_id": thread_id,
                    "direction": None if direction is None else MessageDirection(direction).value,
                    "message_type": message_type,
                },
            )
        return None if row is None else _message(row)

    async def attach_slack_ts(
        self, message_id: int, *, slack_channel_id: str, slack_ts: str, replace: bool = False
    ) -> MessageRecord:
        """Link a recorded message to the Slack post showing it; the first post wins.

        Unless `replace`, a message that already has a post keeps it (compare slack_ts).
        ConflictError if that Slack post is already linked to another message.
        """
        async with self._write() as db:
            row = await _one(
                db,
                "UPDATE messages SET slack_channel_id = :channel, slack_ts = :ts, updated_at = :now"
                " WHERE id = :id AND (slack_ts IS NULL OR :replace)"
                " RETURNING *",
                {
                    "channel": slack_channel_id,
                    "ts": slack_ts,
                    "now": self._clock(),
                    "id": message_id,
                    "replace": replace,
                },
            )
            if row is None:
                row = await _one(db, "SELECT * FROM messages WHERE id = ?", (message_id,))
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return _message(row)

    # ---------------------------------------------------------------- outbox

    async def enqueue(
        self,
        *,
        idempotency_key: str,
        team_id: str,
        channel_id: str,
        slack_user_id: str,
        location_id: str,
        contact_id: str,
        message_type: str,
        payload: Mapping[str, Any],
        thread_id: int | None = None,
        conversation_id: str | None = None,
        slack_ts: str | None = None,
        scheduled_at: float | None = None,
        next_attempt_at: float | None = None,
        close_intent: str | None = None,
    ) -> tuple[OutboxEntry, bool]:
        """Durably queue a send; the same idempotency key always yields the same one entry.

        A repeated key returns the existing entry (whatever its payload) and created=False,
        so a double-click or a Slack retry can never queue a second send. `close_intent`
        names a compose intent closed ('queued') in the same transaction, whether the entry
        is new or not: the entry and the intent's end are durable together or not at all.
        """
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        payload_json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = self._clock()
        async with self._write() as db:
            if close_intent is not None:
                await _close_intent(db, close_intent, INTENT_QUEUED, now)
            existing = await _one(
                db, "SELECT * FROM outbox WHERE idempotency_key = ?", (idempotency_key,)
            )
            if existing is not None:
                return _outbox(existing), False
            row = await _one(
                db,
                """
                INSERT INTO outbox (idempotency_key, team_id, channel_id, slack_user_id,
                    thread_id, location_id, contact_id, conversation_id, message_type, payload,
                    state, attempts, next_attempt_at, slack_ts, scheduled_at, created_at,
                    updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?, ?, ?)
                RETURNING *
                """,
                (
                    idempotency_key,
                    team_id,
                    channel_id,
                    slack_user_id,
                    thread_id,
                    location_id,
                    contact_id,
                    conversation_id,
                    message_type,
                    payload_json,
                    now if next_attempt_at is None else next_attempt_at,
                    slack_ts,
                    scheduled_at,
                    now,
                    now,
                ),
            )
        return _outbox(_required(row)), True

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        """Move the pending entry due longest (ties: oldest) to 'sending' (attempts + 1) and
        return it.

        Sends to one contact go strictly in order, one at a time: an entry is skipped while
        its contact has an entry 'sending' or an older one still pending (even if that one
        waits for a retry). Other contacts are not held up.
        """
        when = self._clock() if now is None else now
        async with self._write() as db:
            row = await _one(
                db,
                f"""
                UPDATE outbox
                SET state = 'sending', attempts = attempts + 1, updated_at = :now
                WHERE id = (
                    -- In the order of outbox_due (state, next_attempt_at, then rowid), so
                    -- SQLite walks that index and stops at the first claimable entry.
                    SELECT candidate.id FROM outbox AS candidate
                    WHERE candidate.state = 'pending'
                      AND candidate.next_attempt_at <= :now
                      AND {_OUTBOX_FREE_HEAD}
                    ORDER BY candidate.next_attempt_at, candidate.id
                    LIMIT 1
                )
                RETURNING *
                """,  # noqa: S608 - only a constant of this module is formatted in
                {"now": when},
            )
        return None if row is None else _outbox(row)

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
        ghl_email_message_id: str | None = None,
        ghl_message_ids: Sequence[str] = (),
    ) -> OutboxEntry:
        """Record HighLevel's answer to the send, in one transaction with its consequences.

        Besides the entry, this records the outbound message row(s) (so the OutboundMessage
        echo webhook is recognised even if the process dies right after), fills the thread's
        conversation_id if still unknown, and sets the thread's channel_type to this send's
        message type (the channel last used).
        """
        # Every id HighLevel returned, main one first, each once: each may echo back.
        ids = list(dict.fromkeys([*([ghl_message_id] if ghl_message_id else []), *ghl_message_ids]))
        now = self._clock()
        async with self._write() as db:
            await self._require_state(db, outbox_id, "mark_sent")
            row = _required(
                await _one(
                    db,
                    """
                    UPDATE outbox SET state = 'sent',
                        conversation_id = COALESCE(:conversation_id, conversation_id),
                        ghl_message_id = :ghl_message_id,
                        ghl_email_message_id = :ghl_email_message_id,
                        ghl_message_ids = :ghl_message_ids,
                        updated_at = :now
                    WHERE id = :id
                    RETURNING *
                    """,
                    {
                        "id": outbox_id,
                        "conversation_id": conversation_id,
                        "ghl_message_id": ghl_message_id,
                        "ghl_email_message_id": ghl_email_message_id,
                        "ghl_message_ids": json.dumps(list(ghl_message_ids)),
                        "now": now,
                    },
                )
            )
            entry = _outbox(row)
            await self._record_sent_messages(db, entry, ids, now)
            if entry.thread_id is not None:
                await db.execute(
                    """
                    UPDATE slack_threads SET
                        conversation_id = COALESCE(conversation_id, :conversation_id),
                        channel_type = :channel_type,
                        updated_at = :now
                    WHERE id = :id
                    """,
                    {
                        "id": entry.thread_id,
                        "conversation_id": entry.conversation_id,
                        "channel_type": entry.message_type,
                        "now": now,
                    },
                )
        return entry

    async def _record_sent_messages(
        self, db: aiosqlite.Connection, entry: OutboxEntry, ids: list[str], now: float
    ) -> None:
        # The Slack post of the send belongs to the first id only (one post, one row); a GMB
        # send may return several ids, each of which may echo back.
        slack_ts = entry.slack_ts
        if slack_ts is not None and await _one(
            db,
            "SELECT 1 FROM messages WHERE slack_channel_id = ? AND slack_ts = ?",
            (entry.channel_id, slack_ts),
        ):
            slack_ts = None  # already recorded elsewhere; never fail a send over display data
        for index, ghl_id in enumerate(ids or [None]):
            existing = None
            if ghl_id is not None:
                existing = await _one(
                    db, "SELECT id FROM messages WHERE ghl_message_id = ?", (ghl_id,)
                )
            if existing is not None:
                # The echo webhook got here first; just link that row to this send.
                await db.execute(
                    "UPDATE messages SET outbox_id = COALESCE(outbox_id, ?), updated_at = ?"
                    " WHERE id = ?",
                    (entry.id, now, existing["id"]),
                )
                continue
            ts = slack_ts if index == 0 else None
            await db.execute(
                """
                INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
                    ghl_email_message_id, email_thread_id, direction, message_type, status,
                    slack_user_id, outbox_id, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, NULL, 'outbound', ?, NULL, ?, ?, ?, ?)
                """,
                (
                    entry.thread_id,
                    None if ts is None else entry.channel_id,
                    ts,
                    ghl_id,
                    entry.ghl_email_message_id if index == 0 else None,
                    entry.message_type,
                    entry.slack_user_id,
                    entry.id,
                    now,
                    now,
                ),
            )

    async def mark_failed(self, outbox_id: int, error: str) -> OutboxEntry:
        """HighLevel refused the send (or it was given up): it will not be retried."""
        return await self._transition(outbox_id, "mark_failed", OutboxState.FAILED, error)

    async def mark_unknown(self, outbox_id: int, error: str) -> OutboxEntry:
        """The request may or may not have reached HighLevel (timeout, dropped connection)."""
        return await self._transition(outbox_id, "mark_unknown", OutboxState.UNKNOWN, error)

    async def retry_later(
        self, outbox_id: int, *, next_attempt_at: float, error: str | None
    ) -> OutboxEntry:
        """Back to 'pending', not claimable before `next_attempt_at`."""
        return await self._transition(
            outbox_id, "retry_later", OutboxState.PENDING, error, next_attempt_at=next_attempt_at
        )

    async def mark_cancelled(self, outbox_id: int) -> OutboxEntry:
        """Drop an entry that is not being sent; OutboxStateError if the worker holds it."""
        return await self._transition(outbox_id, "mark_cancelled", OutboxState.CANCELLED, None)

    async def _transition(
        self,
        outbox_id: int,
        action: str,
        target: OutboxState,
        error: str | None,
        *,
        next_attempt_at: float | None = None,
    ) -> OutboxEntry:
        async with self._write() as db:
            await self._require_state(db, outbox_id, action)
            row = await _one(
                db,
                """
                UPDATE outbox SET state = :state,
                    last_error = COALESCE(:error, last_error),
                    next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at),
                    updated_at = :now
                WHERE id = :id
                RETURNING *
                """,
                {
                    "state": target.value,
                    "error": error,
                    "next_attempt_at": next_attempt_at,
                    "now": self._clock(),
                    "id": outbox_id,
                },
            )
        return _outbox(_required(row))

    async def _require_state(self, db: aiosqlite.Connection, outbox_id: int, action: str) -> None:
        # Called inside a write transaction, so the state cannot change before the update.
        row = await _one(db, "SELECT state FROM outbox WHERE id = ?", (outbox_id,))
        if row is None:
            raise NotFoundError(f"no outbox entry {outbox_id}")
        if OutboxState(row["state"]) not in _FROM_STATES[action]:
            raise OutboxStateError(outbox_id, row["state"], action)

    async def set_outbox_thread(self, outbox_id: int, thread_id: int) -> OutboxEntry:
        """Link an entry to the thread the worker found or opened for it."""
        async with self._write() as db:
            row = await _one(
                db,
                "UPDATE outbox SET thread_id = ?, updated_at = ? WHERE id = ? RETURNING *",
                (thread_id, self._clock(), outbox_id),
            )
        if row is None:
            raise NotFoundError(f"no outbox entry {outbox_id}")
        return _outbox(row)

    async def set_outbox_slack_ts(self, outbox_id: int, slack_ts: str) -> OutboxEntry:
        """Remember the Slack post showing this send (also on its message row, if sent)."""
        now = self._clock()
        async with self._write() as db:
            row = await _one(
                db,
                "UPDATE outbox SET slack_ts = ?, updated_at = ? WHERE id = ? RETURNING *",
                (slack_ts, now, outbox_id),
            )
            if row is None:
                raise NotFoundError(f"no outbox entry {outbox_id}")
            entry = _outbox(row)
            await db.execute(
                """
                UPDATE messages SET slack_channel_id = :channel, slack_ts = :ts, updated_at = :now
                WHERE id = (SELECT id FROM messages WHERE outbox_id = :outbox_id
                            AND slack_ts IS NULL ORDER BY id LIMIT 1)
                  AND NOT EXISTS (SELECT 1 FROM messages
                                  WHERE slack_channel_id = :channel AND slack_ts = :ts)
                  AND NOT EXISTS (SELECT 1 FROM messages
                                  WHERE outbox_id = :outbox_id AND slack_ts IS NOT NULL)
                """,
                {"channel": entry.channel_id, "ts": slack_ts, "now": now, "outbox_id": outbox_id},
            )
        return entry

    async def get_outbox(self, outbox_id: int) -> OutboxEntry | None:
        async with self._read() as db:
            row = await _one(db, "SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        return None if row is None else _outbox(row)

    async def get_outbox_by_key(self, idempotency_key: str) -> OutboxEntry | None:
        async with self._read() as db:
            row = await _one(
                db, "SELECT * FROM outbox WHERE idempotency_key = ?", (idempotency_key,)
            )
        return None if row is None else _outbox(row)

    async def list_outbox(
        self, state: OutboxState | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Entries, oldest first, optionally only those in `state`."""
        async with self._read() as db:
            rows = await _all(
                db,
                "SELECT * FROM outbox WHERE (:state IS NULL OR state = :state)"
                " ORDER BY id LIMIT :limit",
                {
                    "state": None if state is None else OutboxState(state).value,
                    "limit": limit,
                },
            )
        return [_outbox(row) for row in rows]

    async def has_unsettled_send(self, location_id: str, contact_id: str) -> bool:
        """A send to the contact is queued, in flight, or of unknown outcome (no id yet)."""
        async with self._read() as db:
            row = await _one(
                db,
                "SELECT 1 FROM outbox WHERE location_id = ? AND contact_id = ?"
                " AND state IN ('pending', 'sending', 'unknown') AND ghl_message_id IS NULL"
                " LIMIT 1",
                (location_id, contact_id),
            )
        return row is not None

    async def next_outbox_due_at(self) -> float | None:
        """When claim_next can next take an entry unless a send ends first: the earliest
        due time of a pending entry nothing holds back (None if there is none).

        An entry waiting behind its contact's send in flight is not counted: it becomes
        claimable when that send ends, not at any time this could name.
        """
        async with self._read() as db:
            row = await _one(
                db,
                f"""
                SELECT candidate.next_attempt_at FROM outbox AS candidate
                WHERE candidate.state = 'pending' AND {_OUTBOX_FREE_HEAD}
                ORDER BY candidate.next_attempt_at, candidate.id
                LIMIT 1
                """,  # noqa: S608 - only a constant of this module is formatted in
            )
        return None if row is None else float(row[0])

    # ------------------------------------------------------------------ inbound events

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any],
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
        sort_at: float | None = None,
        not_before: float | None = None,
    ) -> InboundEvent | None:
        """Store an event unless any of its keys (webhookId, messageId…) was seen; None if so.

        The keys and the event are written in one transaction, so an event is either stored
        with all its keys or not at all: a crash cannot leave a key that hides a lost event.
        `sort_at` is when the message was sent (default: now): a conversation's events are
        processed in that order. `not_before` is when the event may first be processed
        (default: now); until then its conversation's later events wait behind it too.
        """
        now = self._clock()
        for name, value in (("sort_at", sort_at), ("not_before", not_before)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite time, got {value!r}")
        keys = list(dict.fromkeys(dedupe_keys))
        placeholders = ", ".join("?" * len(keys))
        async with self._write() as db:
            # One statement looks all keys up and one writes them: each statement is a round
            # trip to aiosqlite's thread made under the store's lock, and this runs for every
            # webhook before it is answered.
            if keys:
                lookup = (
                    "SELECT 1 FROM processed_deliveries WHERE source = 'inbound'"  # noqa: S608 - only "?"s are formatted in
                    f" AND key IN ({placeholders}) AND expires_at > ? LIMIT 1"
                )
                seen = await _one(db, lookup, (*keys, now))
                if seen:
                    return None
                await db.executemany(
                    "INSERT OR REPLACE INTO processed_deliveries (source, key, expires_at)"
                    " VALUES ('inbound', ?, ?)",
                    [(key, now + ttl_seconds) for key in keys],
                )
            row = await _one(
                db,
                """
                INSERT INTO inbound_events (source, event_type, conversation_key, payload,
                    next_attempt_at, received_at, updated_at, sort_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                RETURNING *
                """,
                (
                    source,
                    event_type,
                    conversation_key,
                    json.dumps(payload),
                    now if not_before is None else not_before,
                    now,
                    now,
                    now if sort_at is None else sort_at,
                ),
            )
        return _inbound(_required(row))

    async def claim_inbound(self, now: float | None = None) -> InboundEvent | None:
        """Move one due event to 'processing': per conversation, the pending event sent
        first (smallest sort_at, then id), and only while none of it is processing.

        An event is never taken while an earlier-sent one of its conversation is pending
        (even one waiting for a retry). Across conversations, the one due longest goes first.
        """
        when = self._clock() if now is None else now
        async with self._write() as db:
            row = await _one(
                db,
                f"""
                UPDATE inbound_events
                SET state = 'processing', attempts = attempts + 1, updated_at = :now
                WHERE id = (
                    -- In the order of inbound_events_due, so SQLite walks that index and stops
                    -- at the first claimable event; each test on it is one index seek. (Ordered
                    -- by id, it had to test and sort every pending event on each claim: with a
                    -- few thousand pending that took over 100 ms, under the store's lock.)
                    SELECT candidate.id FROM inbound_events AS candidate
                    WHERE candidate.state = 'pending'
                      AND candidate.next_attempt_at <= :now
                      AND {_INBOUND_FREE_HEAD}
                    ORDER BY candidate.next_attempt_at, candidate.id
                    LIMIT 1
                )
                RETURNING *
                """,  # noqa: S608 - only a constant of this module is formatted in
                {"now": when},
            )
        return None if row is None else _inbound(row)

    async def finish_inbound(self, event_id: int) -> None:
        await self._set_inbound(event_id, InboundState.DONE, None, None)

    async def fail_inbound(self, event_id: int, error: str) -> None:
        """Given up on (logged at WARNING by the caller); kept for inspection."""
        await self._set_inbound(event_id, InboundState.FAILED, error, None)

    async def retry_inbound(self, event_id: int, *, next_attempt_at: float, error: str) -> None:
        await self._set_inbound(event_id, InboundState.PENDING, error, next_attempt_at)

    async def _set_inbound(
        self, event_id: int, state: InboundState, error: str | None, next_attempt_at: float | None
    ) -> None:
        async with self._write() as db:
            await db.execute(
                """
                UPDATE inbound_events SET state = ?, last_error = COALESCE(?, last_error),
                    next_attempt_at = COALESCE(?, next_attempt_at), updated_at = ?
                WHERE id = ?
                """,
                (state.value, error, next_attempt_at, self._clock(), event_id),
            )

    async def recover_inbound(self) -> int:
        """At start-up, events left 'processing' by a stopped process go back to 'pending'."""
        async with self._write() as db:
            rows = await _all(
                db,
                "UPDATE inbound_events SET state = 'pending', updated_at = ?"
                " WHERE state = 'processing' RETURNING id",
                (self._clock(),),
            )
        return len(rows)

    async def next_inbound_due_at(self) -> float | None:
        """When claim_inbound can next take an event unless one in process ends first: the
        earliest due time of a pending event nothing holds back (None if there is none)."""
        async with self._read() as db:
            row = await _one(
                db,
                f"""
                SELECT candidate.next_attempt_at FROM inbound_events AS candidate
                WHERE candidate.state = 'pending' AND {_INBOUND_FREE_HEAD}
                ORDER BY candidate.next_attempt_at, candidate.id
                LIMIT 1
                """,  # noqa: S608 - only a constant of this module is formatted in
            )
        return None if row is None else float(row[0])

    async def count_inbound(self, state: InboundState | None = None) -> int:
        async with self._read() as db:
            row = await _one(
                db,
                "SELECT COUNT(*) FROM inbound_events WHERE (:state IS NULL OR state = :state)",
                {"state": None if state is None else state.value},
            )
        return int(row[0]) if row else 0

    async def last_inbound_at(self, source: str) -> float | None:
        """When the newest event from `source` ('webhook', 'poll') was stored; None if never."""
        async with self._read() as db:
            row = await _one(
                db, "SELECT MAX(received_at) FROM inbound_events WHERE source = ?", (source,)
            )
        return None if row is None or row[0] is None else float(row[0])

    async def recover_after_crash(self) -> int:
        """At start-up, turn entries left 'sending' by a dead process into 'unknown'.

        Such a request may have reached HighLevel before the crash, so resending it could
        text the customer twice; 'unknown' entries wait for reconciliation against
        HighLevel instead. Call it only while no other process is sending from this outbox.
        """
        async with self._write() as db:
            rows = await _all(
                db,
                "UPDATE outbox SET state = 'unknown', last_error = ?, updated_at = ?"
                " WHERE state = 'sending' RETURNING id",
                (_RECOVERY_ERROR, self._clock()),
            )
        if rows:
            log.warning(
                "%d outbox entries were being sent when the process stopped; marked unknown: %s",
                len(rows),
                sorted(row["id"] for row in rows),
            )
        return len(rows)

    # ---------------------------------------------------------------- compose intents

    async def open_intent(
        self,
        *,
        idempotency_key: str,
        kind: str,
        team_id: str,
        channel_id: str,
        slack_user_id: str,
        payload: Mapping[str, Any],
        response_url: str | None = None,
    ) -> bool:
        """Save what a person asked for before Slack is answered; False if the key exists.

        One small insert. A key seen before (a replayed request) keeps its row as it is,
        open or done, so a replay never reopens a finished compose.
        """
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        payload_json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        # A Slack ack waits for this insert, so it goes before every store operation queued
        # (only the one running is waited for), and it is one statement in autocommit (atomic
        # on its own) rather than BEGIN ... COMMIT, three hand-offs to aiosqlite's thread.
        async with self._lock.urgent():
            db = self._connection()
            try:
                rows = await _all(
                    db,
                    """
                    INSERT INTO compose_intents (idempotency_key, kind, team_id, channel_id,
                        slack_user_id, payload, response_url, state, created_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?)
                    ON CONFLICT (idempotency_key) DO NOTHING
                    RETURNING id
                    """,
                    (
                        idempotency_key,
                        kind,
                        team_id,
                        channel_id,
                        slack_user_id,
                        payload_json,
                        response_url,
                        self._clock(),
                    ),
                )
            except sqlite3.Error as exc:
                raise StoreError(str(exc)) from exc
        return bool(rows)

    async def close_intent(self, idempotency_key: str, outcome: str) -> bool:
        """Mark an open intent done with `outcome`; False if none was open under that key."""
        async with self._write() as db:
            return await _close_intent(db, idempotency_key, outcome, self._clock())

    async def get_intent(self, idempotency_key: str) -> ComposeIntent | None:
        async with self._read() as db:
            row = await _one(
                db, "SELECT * FROM compose_intents WHERE idempotency_key = ?", (idempotency_key,)
            )
        return None if row is None else _intent(row)

    async def list_open_intents(
        self, *, created_before: float, limit: int = 100
    ) -> list[ComposeIntent]:
        """Open intents saved before `created_before`, oldest first."""
        async with self._read() as db:
            rows = await _all(
                db,
                "SELECT * FROM compose_intents WHERE state = 'open' AND created_at < ?"
                " ORDER BY created_at, id LIMIT ?",
                (created_before, limit),
            )
        return [_intent(row) for row in rows]

    # ---------------------------------------------------------------- dedupe

    async def mark_processed(self, source: str, key: str, *, ttl_seconds: float) -> bool:
        """True only for the first caller of (source, key) until the mark expires."""
        now = self._clock()
        async with self._write() as db:
            # One statement decides: a fresh insert or the take-over of an expired mark
            # returns a row; a live mark makes the upsert do nothing and return none.
            rows = await _all(
                db,
                """
                INSERT INTO processed_deliveries (source, key, expires_at) VALUES (?, ?, ?)
                ON CONFLICT (source, key) DO UPDATE SET expires_at = excluded.expires_at
                    WHERE processed_deliveries.expires_at <= ?
                RETURNING 1
                """,
                (source, key, now + ttl_seconds, now),
            )
        return bool(rows)

    async def forget_processed(self, source: str, key: str) -> None:
        """Drop a mark, e.g. when handling failed and the delivery should be taken again."""
        async with self._write() as db:
            await db.execute(
                "DELETE FROM processed_deliveries WHERE source = ? AND key = ?", (source, key)
            )

    async def purge_expired(self, now: float | None = None) -> int:
        """Delete expired dedupe marks; returns how many."""
        when = self._clock() if now is None else now
        async with self._write() as db:
            rows = await _all(
                db, "DELETE FROM processed_deliveries WHERE expires_at <= ? RETURNING 1", (when,)
            )
        return len(rows)

    # ---------------------------------------------------------------- key/value

    async def kv_get(self, key: str) -> str | None:
        async with self._read() as db:
            row = await _one(db, "SELECT value FROM kv_store WHERE key = ?", (key,))
        return None if row is None else str(row["value"])

    async def kv_set(self, key: str, value: str) -> None:
        async with self._write() as db:
            await db.execute(
                "INSERT INTO kv_store (key, value, updated_at) VALUES (?, ?, ?)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
                " updated_at = excluded.updated_at",
                (key, value, self._clock()),
            )

    async def kv_delete(self, key: str) -> None:
        async with self._write() as db:
            await db.execute("DELETE FROM kv_store WHERE key = ?", (key,))


# -------------------------------------------------------------------- helpers


async def _close_intent(
    db: aiosqlite.Connection, idempotency_key: str, outcome: str, now: float
) -> bool:
    rows = await _all(
        db,
        "UPDATE compose_intents SET state = 'done', outcome = ?, closed_at = ?"
        " WHERE idempotency_key = ? AND state = 'open' RETURNING id",
        (outcome, now, idempotency_key),
    )
    return bool(rows)


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


def _intent(row: sqlite3.Row) -> ComposeIntent:
    return ComposeIntent(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        kind=row["kind"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        slack_user_id=row["slack_user_id"],
        payload_json=row["payload"],
        response_url=row["response_url"],
        state=IntentState(row["state"]),
        outcome=row["outcome"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
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


async def _one(db: aiosqlite.Connection, sql: str, params: _Params = ()) -> sqlite3.Row | None:
    # fetchall runs the statement to completion, so no statement stays open across COMMIT.
    rows = list(await db.execute_fetchall(sql, params))
    return rows[0] if rows else None


async def _all(db: aiosqlite.Connection, sql: str, params: _Params = ()) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _schema_version(db: aiosqlite.Connection) -> int:
    row = await _one(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
    return int(row[0]) if row is not None else 0


def _required(row: sqlite3.Row | None) -> sqlite3.Row:
    # An INSERT/UPDATE ... RETURNING on a row we hold the write lock for always returns it.
    if row is None:
        raise StoreError("a write returned no row")
    return row


def _thread(row: sqlite3.Row) -> ThreadRecord:
    return ThreadRecord(
        id=row["id"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        thread_ts=row["thread_ts"],
        location_id=row["location_id"],
        contact_id=row["contact_id"],
        conversation_id=row["conversation_id"],
        channel_type=row["channel_type"],
        email_thread_id=row["email_thread_id"],
        subject=row["subject"],
        contact_label=row["contact_label"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: sqlite3.Row) -> MessageRecord:
    return MessageRecord(
        id=row["id"],
        thread_id=row["thread_id"],
        slack_channel_id=row["slack_channel_id"],
        slack_ts=row["slack_ts"],
        ghl_message_id=row["ghl_message_id"],
        ghl_email_message_id=row["ghl_email_message_id"],
        email_thread_id=row["email_thread_id"],
        direction=MessageDirection(row["direction"]),
        message_type=row["message_type"],
        status=row["status"],
        slack_user_id=row["slack_user_id"],
        outbox_id=row["outbox_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _inbound(row: sqlite3.Row) -> InboundEvent:
    return InboundEvent(
        id=row["id"],
        source=row["source"],
        event_type=row["event_type"],
        conversation_key=row["conversation_key"],
        payload_json=row["payload"],
        state=InboundState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        received_at=row["received_at"],
    )


def _outbox(row: sqlite3.Row) -> OutboxEntry:
    return OutboxEntry(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        slack_user_id=row["slack_user_id"],
        thread_id=row["thread_id"],
        location_id=row["location_id"],
        contact_id=row["contact_id"],
        conversation_id=row["conversation_id"],
        message_type=row["message_type"],
        payload_json=row["payload"],
        state=OutboxState(row["state"]),
        attempts=row["attempts"],
        last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"],
        ghl_message_id=row["ghl_message_id"],
        ghl_email_message_id=row["ghl_email_message_id"],
        ghl_message_ids=tuple(_str_list(row["ghl_message_ids"])),
        slack_ts=row["slack_ts"],
        scheduled_at=row["scheduled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _str_list(text: str) -> Iterable[str]:
    values = json.loads(text)
    if not isinstance(values, list):
        raise StoreError(f"expected a JSON list, found {text!r}")
    return (str(value) for value in values)
