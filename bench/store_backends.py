"""SQLAlchemy Core 2.x (async) against the hand-written store, on webhook ingest and sends.

A standalone script, not part of `make bench`. SQLAlchemy is no dependency of the project:
it needs `pip install 'sqlalchemy[asyncio]>=2'` in the venv it runs from (without it, it says
so and exits 2), and the PostgreSQL at 127.0.0.1:5432 (database `test`, trust auth). Run
`python -m bench.store_backends [--rounds 5 --events 800 --sends 240]`.

The question: would one store implementation over SQLAlchemy Core cost more than 15 % of
ingest or outbound throughput against hand-written code? (If so, keep two backends, aiosqlite
and asyncpg, behind one Store protocol.) The variants run the same statements on the same
schema, each on one connection of its own, one transaction per operation:

a.  today: `storage.SqliteStore` itself, on a file in a temporary folder;
b1. SQLAlchemy Core on that same file (sqlite+aiosqlite; BEGIN IMMEDIATE, WAL and
    synchronous=NORMAL as today), each statement built from Table/select/insert/update on
    every call, as ported code would, and compiled once thanks to SQLAlchemy's cache;
b2. the same code keeping each statement it built (the tuning SQLAlchemy recommends), to show
    how much of the cost tuning takes back;
c.  raw asyncpg on PostgreSQL, written the way the store is, in a fresh schema (the project's
    migrations in PostgreSQL's types) that is dropped at the end;
d1, d2. the code of b1 and b2 on that schema (postgresql+asyncpg).

Ingest is `enqueue_inbound` (dedupe look-up, dedupe insert, INSERT ... RETURNING, commit) of
unique events with a ~1 kB payload and two dedupe keys. A send is `enqueue`, `claim_next` and
`mark_sent`, each its own transaction. After a warm-up, each round gives every variant the
same number of each, in slices the variants take in rotation (the machine is shared), and
yields operations per second and the process CPU per operation (time.process_time: it counts
aiosqlite's threads, not the PostgreSQL server). Each SQLAlchemy variant is compared with the
hand-written one of its backend round by round; b1 and d1, the port as written, decide.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib.util
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Protocol

# asyncpg has types only where asyncpg-stubs is installed, and SQLAlchemy is not installed in
# the project's venv at all: there `make typecheck` takes both as untyped (Any). This file is
# checked with SQLAlchemy's own types from a venv that has it; `unused-ignore` lets it pass both.
import asyncpg  # type: ignore[import-untyped, unused-ignore]

import storage
from storage import (
    MIGRATIONS,
    InboundEvent,
    InboundState,
    NotFoundError,
    OutboxEntry,
    OutboxState,
    OutboxStateError,
    StoreError,
    open_store,
)

try:
    import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]
    from sqlalchemy.dialects import postgresql as sa_postgresql  # type: ignore[import-not-found, unused-ignore]
    from sqlalchemy.ext.asyncio import (  # type: ignore[import-not-found, unused-ignore]
        AsyncConnection,
        create_async_engine,
    )
except ImportError:
    sa_missing = True
else:
    # SQLAlchemy's asyncio layer runs on greenlet, which `sqlalchemy[asyncio]` installs.
    sa_missing = (
        importlib.util.find_spec("greenlet") is None or int(sa.__version__.split(".")[0]) < 2
    )
if sa_missing:
    print(
        "bench.store_backends needs SQLAlchemy 2 with asyncio, which the project does not"
        " install: pip install 'sqlalchemy[asyncio]>=2'",
        file=sys.stderr,
    )
    raise SystemExit(2)

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEAM_ID = "T0BENCH"
CHANNEL_ID = "C0BENCH"
SLACK_USER_ID = "U0BENCH"
LOCATION_ID = "benchLocation0000001"
CONTACTS = 50  # sends and events spread over this many contacts, each with its thread
DEDUPE_TTL = 7 * 86_400.0
LIMIT = 0.15  # the cost in throughput above which two backends are kept

# The statements' tables, as a port would declare them (the migrations create them).
_META = sa.MetaData()
_THREADS = sa.Table(
    "slack_threads",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("team_id", sa.Text),
    sa.Column("channel_id", sa.Text),
    sa.Column("thread_ts", sa.Text),
    sa.Column("location_id", sa.Text),
    sa.Column("contact_id", sa.Text),
    sa.Column("conversation_id", sa.Text),
    sa.Column("channel_type", sa.Text),
    sa.Column("email_thread_id", sa.Text),
    sa.Column("subject", sa.Text),
    sa.Column("contact_label", sa.Text),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_OUTBOX = sa.Table(
    "outbox",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("idempotency_key", sa.Text),
    sa.Column("team_id", sa.Text),
    sa.Column("channel_id", sa.Text),
    sa.Column("slack_user_id", sa.Text),
    sa.Column("thread_id", sa.BigInteger),
    sa.Column("location_id", sa.Text),
    sa.Column("contact_id", sa.Text),
    sa.Column("conversation_id", sa.Text),
    sa.Column("message_type", sa.Text),
    sa.Column("payload", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("ghl_message_id", sa.Text),
    sa.Column("ghl_email_message_id", sa.Text),
    sa.Column("ghl_message_ids", sa.Text),
    sa.Column("slack_ts", sa.Text),
    sa.Column("scheduled_at", sa.Float),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_MESSAGES = sa.Table(
    "messages",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("thread_id", sa.BigInteger),
    sa.Column("slack_channel_id", sa.Text),
    sa.Column("slack_ts", sa.Text),
    sa.Column("ghl_message_id", sa.Text),
    sa.Column("ghl_email_message_id", sa.Text),
    sa.Column("email_thread_id", sa.Text),
    sa.Column("direction", sa.Text),
    sa.Column("message_type", sa.Text),
    sa.Column("status", sa.Text),
    sa.Column("slack_user_id", sa.Text),
    sa.Column("outbox_id", sa.BigInteger),
    sa.Column("created_at", sa.Float),
    sa.Column("updated_at", sa.Float),
)
_INBOUND = sa.Table(
    "inbound_events",
    _META,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("source", sa.Text),
    sa.Column("event_type", sa.Text),
    sa.Column("conversation_key", sa.Text),
    sa.Column("payload", sa.Text),
    sa.Column("state", sa.Text),
    sa.Column("attempts", sa.Integer),
    sa.Column("last_error", sa.Text),
    sa.Column("next_attempt_at", sa.Float),
    sa.Column("received_at", sa.Float),
    sa.Column("updated_at", sa.Float),
    sa.Column("sort_at", sa.Float),
)
_DELIVERIES = sa.Table(
    "processed_deliveries",
    _META,
    sa.Column("source", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("expires_at", sa.Float),
)

_MARK_SENT_FROM = frozenset({OutboxState.SENDING, OutboxState.UNKNOWN})


class _BenchStore(Protocol):
    """The four operations measured, as SqliteStore has them."""

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any],
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
    ) -> InboundEvent | None: ...

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
    ) -> tuple[OutboxEntry, bool]: ...

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None: ...

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
    ) -> OutboxEntry: ...


class _Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def _inbound_event(row: _Row) -> InboundEvent:
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


def _outbox_entry(row: _Row) -> OutboxEntry:
    ids = json.loads(row["ghl_message_ids"])
    if not isinstance(ids, list):
        raise StoreError(f"expected a JSON list, found {ids!r}")
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
        ghl_message_ids=tuple(str(value) for value in ids),
        slack_ts=row["slack_ts"],
        scheduled_at=row["scheduled_at"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _required(row: _Row | None) -> _Row:
    # An INSERT/UPDATE ... RETURNING on a row the transaction holds always returns it.
    if row is None:
        raise StoreError("a write returned no row")
    return row


def _sent_ids(ghl_message_id: str | None, ghl_message_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*([ghl_message_id] if ghl_message_id else []), *ghl_message_ids]))


def _check_mark_sent(outbox_id: int, state: str | None) -> None:
    if state is None:
        raise NotFoundError(f"no outbox entry {outbox_id}")
    if OutboxState(state) not in _MARK_SENT_FROM:
        raise OutboxStateError(outbox_id, state, "mark_sent")


# ------------------------------------------------------------------ b and d: SQLAlchemy Core
#
# Each statement is built by a function with named bind parameters; the store either calls it
# for every operation (what ported code does: SQLAlchemy then finds the compiled form in its
# cache by the statement's cache key) or keeps what it built the first time (the tuning
# SQLAlchemy recommends for hot paths). Bind names differ from column names, which UPDATE
# reserves for its SET clause.


def _seen_delivery() -> Any:
    return (
        sa.select(sa.literal_column("1"))
        .select_from(_DELIVERIES)
        .where(
            _DELIVERIES.c.source == "inbound",
            _DELIVERIES.c.key.in_(sa.bindparam("keys", expanding=True)),
            _DELIVERIES.c.expires_at > sa.bindparam("now", type_=sa.Float),
        )
        .limit(1)
    )


def _mark_deliveries_sqlite() -> Any:
    return sa.insert(_DELIVERIES).prefix_with("OR REPLACE")


def _mark_deliveries_postgresql() -> Any:
    upsert = sa_postgresql.insert(_DELIVERIES)
    return upsert.on_conflict_do_update(
        index_elements=[_DELIVERIES.c.source, _DELIVERIES.c.key],
        set_={"expires_at": upsert.excluded.expires_at},
    )


def _insert_inbound() -> Any:
    return sa.insert(_INBOUND).returning(*_INBOUND.c)


def _outbox_by_key() -> Any:
    return sa.select(_OUTBOX).where(_OUTBOX.c.idempotency_key == sa.bindparam("key"))


def _insert_outbox() -> Any:
    return sa.insert(_OUTBOX).returning(*_OUTBOX.c)


def _claim_next() -> Any:
    candidate = _OUTBOX.alias("candidate")
    busy = _OUTBOX.alias("busy")
    head = _OUTBOX.alias("head")
    contact_busy = (
        sa.select(sa.literal_column("1"))
        .select_from(busy)
        .where(
            busy.c.location_id == candidate.c.location_id,
            busy.c.contact_id == candidate.c.contact_id,
            busy.c.state == "sending",
        )
        .exists()
    )
    contact_head = (
        sa.select(head.c.id)
        .where(
            head.c.location_id == candidate.c.location_id,
            head.c.contact_id == candidate.c.contact_id,
            head.c.state == "pending",
        )
        .order_by(head.c.id)
        .limit(1)
        .scalar_subquery()
    )
    now = sa.bindparam("now", type_=sa.Float)
    first_free = (
        sa.select(candidate.c.id)
        .where(
            candidate.c.state == "pending",
            candidate.c.next_attempt_at <= now,
            ~contact_busy,
            candidate.c.id == contact_head,
        )
        .order_by(candidate.c.next_attempt_at, candidate.c.id)
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.update(_OUTBOX)
        .where(_OUTBOX.c.id == first_free)
        .values(state="sending", attempts=_OUTBOX.c.attempts + 1, updated_at=now)
        .returning(*_OUTBOX.c)
    )


def _outbox_state() -> Any:
    return sa.select(_OUTBOX.c.state).where(_OUTBOX.c.id == sa.bindparam("outbox_id"))


def _set_sent() -> Any:
    return (
        sa.update(_OUTBOX)
        .where(_OUTBOX.c.id == sa.bindparam("outbox_id"))
        .values(
            state="sent",
            conversation_id=sa.func.coalesce(
                sa.bindparam("conversation", type_=sa.Text), _OUTBOX.c.conversation_id
            ),
            ghl_message_id=sa.bindparam("ghl_id", type_=sa.Text),
            ghl_email_message_id=sa.bindparam("ghl_email_id", type_=sa.Text),
            ghl_message_ids=sa.bindparam("ghl_ids", type_=sa.Text),
            updated_at=sa.bindparam("now", type_=sa.Float),
        )
        .returning(*_OUTBOX.c)
    )


def _message_by_slack() -> Any:
    return (
        sa.select(sa.literal_column("1"))
        .select_from(_MESSAGES)
        .where(
            _MESSAGES.c.slack_channel_id == sa.bindparam("channel"),
            _MESSAGES.c.slack_ts == sa.bindparam("ts"),
        )
    )


def _message_by_ghl_id() -> Any:
    return sa.select(_MESSAGES.c.id).where(_MESSAGES.c.ghl_message_id == sa.bindparam("ghl_id"))


def _link_message() -> Any:
    return (
        sa.update(_MESSAGES)
        .where(_MESSAGES.c.id == sa.bindparam("message_id"))
        .values(
            outbox_id=sa.func.coalesce(
                _MESSAGES.c.outbox_id, sa.bindparam("outbox_id", type_=sa.BigInteger)
            ),
            updated_at=sa.bindparam("now", type_=sa.Float),
        )
    )


def _insert_message() -> Any:
    return sa.insert(_MESSAGES)


def _touch_thread() -> Any:
    return (
        sa.update(_THREADS)
        .where(_THREADS.c.id == sa.bindparam("thread_id"))
        .values(
            conversation_id=sa.func.coalesce(
                _THREADS.c.conversation_id, sa.bindparam("conversation", type_=sa.Text)
            ),
            channel_type=sa.bindparam("channel_type", type_=sa.Text),
            updated_at=sa.bindparam("now", type_=sa.Float),
        )
    )


class SqlAlchemyStore:
    """The four operations over SQLAlchemy Core: one code for SQLite and PostgreSQL."""

    def __init__(
        self,
        conn: AsyncConnection,
        *,
        build_once: bool,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = asyncio.Lock()  # one connection, as today: one transaction at a time
        self._build_once = build_once
        self._built: dict[Callable[[], Any], Any] = {}
        self._mark_deliveries = (
            _mark_deliveries_postgresql
            if conn.dialect.name == "postgresql"
            else _mark_deliveries_sqlite
        )

    def _statement(self, build: Callable[[], Any]) -> Any:
        if not self._build_once:
            return build()
        statement = self._built.get(build)
        if statement is None:
            statement = self._built[build] = build()
        return statement

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with self._lock, self._conn.begin():
            yield self._conn

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any],
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
    ) -> InboundEvent | None:
        now = self._clock()
        keys = list(dict.fromkeys(dedupe_keys))
        async with self._write() as conn:
            if keys:
                seen = await conn.execute(
                    self._statement(_seen_delivery), {"keys": keys, "now": now}
                )
                if seen.first() is not None:
                    return None
                await conn.execute(
                    self._statement(self._mark_deliveries),
                    [
                        {"source": "inbound", "key": key, "expires_at": now + ttl_seconds}
                        for key in keys
                    ],
                )
            result = await conn.execute(
                self._statement(_insert_inbound),
                {
                    "source": source,
                    "event_type": event_type,
                    "conversation_key": conversation_key,
                    "payload": json.dumps(payload),
                    "next_attempt_at": now,
                    "received_at": now,
                    "updated_at": now,
                    "sort_at": now,
                },
            )
            row = result.one()
        return _inbound_event(row._mapping)

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
    ) -> tuple[OutboxEntry, bool]:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        payload_json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = self._clock()
        async with self._write() as conn:
            existing = (
                await conn.execute(self._statement(_outbox_by_key), {"key": idempotency_key})
            ).first()
            if existing is not None:
                return _outbox_entry(existing._mapping), False
            result = await conn.execute(
                self._statement(_insert_outbox),
                {
                    "idempotency_key": idempotency_key,
                    "team_id": team_id,
                    "channel_id": channel_id,
                    "slack_user_id": slack_user_id,
                    "thread_id": thread_id,
                    "location_id": location_id,
                    "contact_id": contact_id,
                    "conversation_id": None,
                    "message_type": message_type,
                    "payload": payload_json,
                    "state": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "slack_ts": None,
                    "scheduled_at": None,
                    "created_at": now,
                    "updated_at": now,
                },
            )
            row = result.one()
        return _outbox_entry(row._mapping), True

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        when = self._clock() if now is None else now
        async with self._write() as conn:
            result = await conn.execute(self._statement(_claim_next), {"now": when})
            row = result.first()
        return None if row is None else _outbox_entry(row._mapping)

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
        ghl_email_message_id: str | None = None,
        ghl_message_ids: Sequence[str] = (),
    ) -> OutboxEntry:
        ids = _sent_ids(ghl_message_id, ghl_message_ids)
        now = self._clock()
        async with self._write() as conn:
            state = (
                await conn.execute(self._statement(_outbox_state), {"outbox_id": outbox_id})
            ).scalar_one_or_none()
            _check_mark_sent(outbox_id, state)
            result = await conn.execute(
                self._statement(_set_sent),
                {
                    "outbox_id": outbox_id,
                    "conversation": conversation_id,
                    "ghl_id": ghl_message_id,
                    "ghl_email_id": ghl_email_message_id,
                    "ghl_ids": json.dumps(list(ghl_message_ids)),
                    "now": now,
                },
            )
            entry = _outbox_entry(result.one()._mapping)
            await self._record_sent_messages(conn, entry, ids, now)
            if entry.thread_id is not None:
                await conn.execute(
                    self._statement(_touch_thread),
                    {
                        "thread_id": entry.thread_id,
                        "conversation": entry.conversation_id,
                        "channel_type": entry.message_type,
                        "now": now,
                    },
                )
        return entry

    async def _record_sent_messages(
        self, conn: AsyncConnection, entry: OutboxEntry, ids: list[str], now: float
    ) -> None:
        slack_ts = entry.slack_ts
        if slack_ts is not None:
            taken = await conn.execute(
                self._statement(_message_by_slack), {"channel": entry.channel_id, "ts": slack_ts}
            )
            if taken.first() is not None:
                slack_ts = None
        for index, ghl_id in enumerate(ids or [None]):
            existing = None
            if ghl_id is not None:
                existing = (
                    await conn.execute(self._statement(_message_by_ghl_id), {"ghl_id": ghl_id})
                ).scalar_one_or_none()
            if existing is not None:
                await conn.execute(
                    self._statement(_link_message),
                    {"message_id": existing, "outbox_id": entry.id, "now": now},
                )
                continue
            ts = slack_ts if index == 0 else None
            await conn.execute(
                self._statement(_insert_message),
                {
                    "thread_id": entry.thread_id,
                    "slack_channel_id": None if ts is None else entry.channel_id,
                    "slack_ts": ts,
                    "ghl_message_id": ghl_id,
                    "ghl_email_message_id": entry.ghl_email_message_id if index == 0 else None,
                    "email_thread_id": None,
                    "direction": "outbound",
                    "message_type": entry.message_type,
                    "status": None,
                    "slack_user_id": entry.slack_user_id,
                    "outbox_id": entry.id,
                    "created_at": now,
                    "updated_at": now,
                },
            )


# ----------------------------------------------------------------------- c: raw asyncpg

_PG_CLAIM_NEXT = """
    UPDATE outbox
    SET state = 'sending', attempts = attempts + 1, updated_at = $1
    WHERE id = (
        SELECT candidate.id FROM outbox AS candidate
        WHERE candidate.state = 'pending'
          AND candidate.next_attempt_at <= $1
          AND NOT EXISTS (
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
        ORDER BY candidate.next_attempt_at, candidate.id
        LIMIT 1
    )
    RETURNING *
"""


class AsyncpgStore:
    """The four operations in hand-written SQL on asyncpg, as SqliteStore writes them."""

    def __init__(self, conn: asyncpg.Connection, *, clock: Callable[[], float] = time.time) -> None:
        self._conn = conn
        self._clock = clock
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[asyncpg.Connection]:
        async with self._lock, self._conn.transaction():
            yield self._conn

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any],
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
    ) -> InboundEvent | None:
        now = self._clock()
        keys = list(dict.fromkeys(dedupe_keys))
        placeholders = ", ".join(f"${n}" for n in range(1, len(keys) + 1))
        async with self._write() as conn:
            if keys:
                lookup = (
                    "SELECT 1 FROM processed_deliveries WHERE source = 'inbound'"  # noqa: S608 - only "$n"s are formatted in
                    f" AND key IN ({placeholders}) AND expires_at > ${len(keys) + 1} LIMIT 1"
                )
                if await conn.fetchval(lookup, *keys, now) is not None:
                    return None
                await conn.executemany(
                    "INSERT INTO processed_deliveries (source, key, expires_at)"
                    " VALUES ('inbound', $1, $2)"
                    " ON CONFLICT (source, key) DO UPDATE SET expires_at = EXCLUDED.expires_at",
                    [(key, now + ttl_seconds) for key in keys],
                )
            row = await conn.fetchrow(
                """
                INSERT INTO inbound_events (source, event_type, conversation_key, payload,
                    next_attempt_at, received_at, updated_at, sort_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                RETURNING *
                """,
                source,
                event_type,
                conversation_key,
                json.dumps(payload),
                now,
                now,
                now,
                now,
            )
        return _inbound_event(_required(row))

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
    ) -> tuple[OutboxEntry, bool]:
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        payload_json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = self._clock()
        async with self._write() as conn:
            existing = await conn.fetchrow(
                "SELECT * FROM outbox WHERE idempotency_key = $1", idempotency_key
            )
            if existing is not None:
                return _outbox_entry(existing), False
            row = await conn.fetchrow(
                """
                INSERT INTO outbox (idempotency_key, team_id, channel_id, slack_user_id,
                    thread_id, location_id, contact_id, conversation_id, message_type, payload,
                    state, attempts, next_attempt_at, slack_ts, scheduled_at, created_at,
                    updated_at)
                VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', 0, $11, $12, $13,
                    $14, $15)
                RETURNING *
                """,
                idempotency_key,
                team_id,
                channel_id,
                slack_user_id,
                thread_id,
                location_id,
                contact_id,
                None,
                message_type,
                payload_json,
                now,
                None,
                None,
                now,
                now,
            )
        return _outbox_entry(_required(row)), True

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        when = self._clock() if now is None else now
        async with self._write() as conn:
            row = await conn.fetchrow(_PG_CLAIM_NEXT, when)
        return None if row is None else _outbox_entry(row)

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
        ghl_email_message_id: str | None = None,
        ghl_message_ids: Sequence[str] = (),
    ) -> OutboxEntry:
        ids = _sent_ids(ghl_message_id, ghl_message_ids)
        now = self._clock()
        async with self._write() as conn:
            state = await conn.fetchval("SELECT state FROM outbox WHERE id = $1", outbox_id)
            _check_mark_sent(outbox_id, state)
            row = await conn.fetchrow(
                """
                UPDATE outbox SET state = 'sent',
                    conversation_id = COALESCE($2, conversation_id),
                    ghl_message_id = $3,
                    ghl_email_message_id = $4,
                    ghl_message_ids = $5,
                    updated_at = $6
                WHERE id = $1
                RETURNING *
                """,
                outbox_id,
                conversation_id,
                ghl_message_id,
                ghl_email_message_id,
                json.dumps(list(ghl_message_ids)),
                now,
            )
            entry = _outbox_entry(_required(row))
            await self._record_sent_messages(conn, entry, ids, now)
            if entry.thread_id is not None:
                await conn.execute(
                    """
                    UPDATE slack_threads SET
                        conversation_id = COALESCE(conversation_id, $2),
                        channel_type = $3,
                        updated_at = $4
                    WHERE id = $1
                    """,
                    entry.thread_id,
                    entry.conversation_id,
                    entry.message_type,
                    now,
                )
        return entry

    async def _record_sent_messages(
        self, conn: asyncpg.Connection, entry: OutboxEntry, ids: list[str], now: float
    ) -> None:
        slack_ts = entry.slack_ts
        if slack_ts is not None and await conn.fetchval(
            "SELECT 1 FROM messages WHERE slack_channel_id = $1 AND slack_ts = $2",
            entry.channel_id,
            slack_ts,
        ):
            slack_ts = None
        for index, ghl_id in enumerate(ids or [None]):
            existing = None
            if ghl_id is not None:
                existing = await conn.fetchval(
                    "SELECT id FROM messages WHERE ghl_message_id = $1", ghl_id
                )
            if existing is not None:
                await conn.execute(
                    "UPDATE messages SET outbox_id = COALESCE(outbox_id, $1), updated_at = $2"
                    " WHERE id = $3",
                    entry.id,
                    now,
                    existing,
                )
                continue
            ts = slack_ts if index == 0 else None
            await conn.execute(
                """
                INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
                    ghl_email_message_id, email_thread_id, direction, message_type, status,
                    slack_user_id, outbox_id, created_at, updated_at)
                VALUES ($1, $2, $3, $4, $5, NULL, 'outbound', $6, NULL, $7, $8, $9, $10)
                """,
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
            )


# ------------------------------------------------------------------------------ workload


def _contact(index: int) -> str:
    return f"ct{index % CONTACTS:018d}"


_BODY = (
    "Hi, this is Dana from the Riverside office. Following up on the quote we sent last week"
    " for the kitchen renovation: the cabinets you picked are back in stock and we could"
    " start on the 14th. Could you confirm the measurements of the north wall, and whether"
    " the old tiles stay? Reply here or call us at the office, whichever suits you best."
)


def _webhook(tag: str, index: int) -> dict[str, Any]:
    """An InboundMessage webhook as HighLevel sends it (about 1 kB of JSON)."""
    contact = _contact(index)
    return {
        "type": "InboundMessage",
        "locationId": LOCATION_ID,
        "attachments": [],
        "body": _BODY,
        "contactId": contact,
        "conversationId": f"cv{contact}",
        "dateAdded": "2025-03-14T09:26:53.589Z",
        "direction": "inbound",
        "messageType": "SMS",
        "contentType": "text/plain",
        "status": "delivered",
        "messageId": f"msg-{tag}-{index:08d}",
        "webhookId": f"wh-{uuid.uuid5(uuid.NAMESPACE_URL, f'{tag}/{index}')}",
        "timestamp": "2025-03-14T09:26:54.102Z",
        "source": "app",
        "userId": None,
        "conversationProviderId": None,
    }


@dataclass(frozen=True, slots=True)
class Timing:
    wall: float
    cpu: float


@dataclass(frozen=True, slots=True)
class Sample:
    ops_per_second: float
    cpu_us_per_op: float


async def ingest(store: _BenchStore, tag: str, start: int, count: int) -> Timing:
    """Webhooks `start` to `start + count` of `tag`, each unique, through enqueue_inbound."""
    events = [_webhook(tag, index) for index in range(start, start + count)]
    cpu, wall = time.process_time(), time.perf_counter()
    for event in events:
        stored = await store.enqueue_inbound(
            source="webhook",
            event_type="InboundMessage",
            conversation_key=f"{LOCATION_ID}:{event['contactId']}",
            payload=event,
            dedupe_keys=(f"webhook:{event['webhookId']}", f"message:{event['messageId']}"),
            ttl_seconds=DEDUPE_TTL,
        )
        if stored is None:
            raise RuntimeError(f"unique event {event['messageId']} was taken for a repeat")
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


async def outbound(
    store: _BenchStore, tag: str, start: int, count: int, threads: Sequence[int]
) -> Timing:
    """Sends `start` to `start + count` of `tag`, each enqueued, claimed and marked sent."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(start, start + count):
        contact = _contact(index)
        entry, created = await store.enqueue(
            idempotency_key=f"send-{tag}-{index:08d}",
            team_id=TEAM_ID,
            channel_id=CHANNEL_ID,
            slack_user_id=SLACK_USER_ID,
            location_id=LOCATION_ID,
            contact_id=contact,
            message_type="SMS",
            payload={"type": "SMS", "contactId": contact, "message": _BODY[:160]},
            thread_id=threads[index % CONTACTS],
        )
        claimed = await store.claim_next()
        if not created or claimed is None or claimed.id != entry.id:
            raise RuntimeError(f"send {entry.id} was not the one claimed ({claimed})")
        sent = await store.mark_sent(
            claimed.id, conversation_id=f"cv{contact}", ghl_message_id=f"gm-{tag}-{index}"
        )
        if sent.state is not OutboxState.SENT:
            raise RuntimeError(f"send {sent.id} is {sent.state} after mark_sent")
    return Timing(wall=time.perf_counter() - wall, cpu=time.process_time() - cpu)


async def timed_round(
    path: str, all_variants: Sequence[Variant], round_index: int, total: int, slices: int
) -> dict[str, Sample]:
    """`total` operations of `path` per variant, in slices taken by each variant in turn.

    Slicing keeps every variant under the same conditions: the machine is shared, and a load
    that comes and goes over seconds would otherwise favour whichever ran while it was away.
    """
    wall = dict.fromkeys((variant.key for variant in all_variants), 0.0)
    cpu = dict.fromkeys(wall, 0.0)
    size = -(-total // slices)
    gc.collect()
    for slice_index, start in enumerate(range(0, total, size)):
        count = min(size, total - start)
        turn = (round_index + slice_index) % len(all_variants)
        for variant in [*all_variants[turn:], *all_variants[:turn]]:
            tag = f"r{round_index}-{variant.key}"
            if path == "ingest":
                timing = await ingest(variant.store, tag, start, count)
            else:
                timing = await outbound(variant.store, tag, start, count, variant.threads)
            wall[variant.key] += timing.wall
            cpu[variant.key] += timing.cpu
    return {key: Sample(total / wall[key], cpu[key] / total * 1e6) for key in wall}


async def check_dedupe(store: _BenchStore, tag: str) -> None:
    """A repeated webhook is refused: the look-up each variant times does its work."""
    event = _webhook(tag, 0)
    again = await store.enqueue_inbound(
        source="webhook",
        event_type="InboundMessage",
        conversation_key=f"{LOCATION_ID}:{event['contactId']}",
        payload=event,
        dedupe_keys=(f"webhook:{event['webhookId']}", f"message:{event['messageId']}"),
        ttl_seconds=DEDUPE_TTL,
    )
    if again is not None:
        raise RuntimeError(f"{tag}: a repeated webhook was stored again")


# ------------------------------------------------------------------------------ backends


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    label: str
    store: _BenchStore
    threads: Sequence[int]
    engine: Any = None  # SQLAlchemy's, for the compiled-cache check


# Each SQLAlchemy variant against the hand-written one on its backend. The port as it would
# be written (statements built per call) decides; built-once shows how far tuning gets it.
COMPARISONS = (
    ("sqlite", "a", "b1", True),
    ("sqlite", "a", "b2", False),
    ("postgresql", "c", "d1", True),
    ("postgresql", "c", "d2", False),
)


def _postgresql_ddl() -> list[str]:
    """The project's migrations in PostgreSQL's types."""
    return [
        statement.replace(
            "INTEGER PRIMARY KEY", "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
        )
        .replace("INTEGER REFERENCES", "BIGINT REFERENCES")
        .replace(" REAL", " DOUBLE PRECISION")
        .replace(") WITHOUT ROWID", ")")
        for migration in MIGRATIONS
        for statement in migration.statements
    ]


async def _postgres_threads(conn: asyncpg.Connection) -> list[int]:
    now = time.time()
    ids = []
    for index in range(CONTACTS):
        thread_id = await conn.fetchval(
            "INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id, contact_id,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING id",
            TEAM_ID,
            CHANNEL_ID,
            f"1700000000.{index:06d}",
            LOCATION_ID,
            _contact(index),
            now,
        )
        ids.append(int(thread_id))
    return ids


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # As SqliteStore sets them; isolation_level None so that only our BEGIN opens transactions.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA busy_timeout = 5000",
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = NORMAL",
        "PRAGMA foreign_keys = ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_begin_immediate(conn: Any) -> None:
    # SQLAlchemy's documented recipe for an explicit BEGIN on pysqlite and aiosqlite.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


@asynccontextmanager
async def variants(workdir: Path) -> AsyncIterator[list[Variant]]:
    """Every variant's store, open, on one SQLite file and one fresh PostgreSQL schema."""
    path = workdir / "store.sqlite3"
    schema = f"bench_store_{uuid.uuid4().hex[:12]}"
    async with AsyncExitStack() as stack:
        admin = await asyncpg.connect(POSTGRES_URL)
        stack.push_async_callback(admin.close)
        await admin.execute(f'CREATE SCHEMA "{schema}"')
        stack.push_async_callback(admin.execute, f'DROP SCHEMA "{schema}" CASCADE')

        today = await open_store(f"sqlite:///{path}")  # the real schema, every migration
        stack.push_async_callback(today.close)
        sqlite_threads = [
            (
                await today.upsert_thread(
                    team_id=TEAM_ID,
                    channel_id=CHANNEL_ID,
                    location_id=LOCATION_ID,
                    contact_id=_contact(index),
                    thread_ts=f"1700000000.{index:06d}",
                )
            ).id
            for index in range(CONTACTS)
        ]
        sa_sqlite = create_async_engine(f"sqlite+aiosqlite:///{path}")
        stack.push_async_callback(sa_sqlite.dispose)
        sa.event.listen(sa_sqlite.sync_engine, "connect", _sqlite_pragmas)
        sa.event.listen(sa_sqlite.sync_engine, "begin", _sqlite_begin_immediate)

        # asyncpg takes server settings as URL parameters; SQLAlchemy would hand them on as
        # keyword arguments asyncpg does not know, so it gets them in connect_args.
        raw = await asyncpg.connect(f"{POSTGRES_URL}?search_path={schema}")
        stack.push_async_callback(raw.close)
        async with raw.transaction():
            for statement in _postgresql_ddl():
                await raw.execute(statement)
            postgres_threads = await _postgres_threads(raw)
        sa_postgres = create_async_engine(
            POSTGRES_URL.replace("postgresql://", "postgresql+asyncpg://"),
            connect_args={"server_settings": {"search_path": schema}},
        )
        stack.push_async_callback(sa_postgres.dispose)

        async def port(engine: Any, *, build_once: bool) -> SqlAlchemyStore:
            conn = await stack.enter_async_context(engine.connect())
            return SqlAlchemyStore(conn, build_once=build_once)

        yield [
            Variant("a", "today: SqliteStore (aiosqlite)", today, sqlite_threads),
            Variant(
                "b1",
                "SQLAlchemy, aiosqlite, built per call",
                await port(sa_sqlite, build_once=False),
                sqlite_threads,
                sa_sqlite,
            ),
            Variant(
                "b2",
                "SQLAlchemy, aiosqlite, built once",
                await port(sa_sqlite, build_once=True),
                sqlite_threads,
                sa_sqlite,
            ),
            Variant("c", "raw asyncpg", AsyncpgStore(raw), postgres_threads),
            Variant(
                "d1",
                "SQLAlchemy, asyncpg, built per call",
                await port(sa_postgres, build_once=False),
                postgres_threads,
                sa_postgres,
            ),
            Variant(
                "d2",
                "SQLAlchemy, asyncpg, built once",
                await port(sa_postgres, build_once=True),
                postgres_threads,
                sa_postgres,
            ),
        ]


# ------------------------------------------------------------------------------- report

PATHS = ("ingest", "outbound")


def _spread(values: Sequence[float]) -> str:
    return f"{statistics.median(values):,.0f} [{min(values):,.0f}-{max(values):,.0f}]"


def _percent(values: Sequence[float], sign: str = "") -> str:
    return (
        f"{statistics.median(values):{sign}.0%}"
        f" [{min(values):{sign}.0%} to {max(values):{sign}.0%}]"
    )


def report(samples: dict[tuple[str, str], list[Sample]], all_variants: Sequence[Variant]) -> bool:
    """Print both tables; True when the port as written stays within the limit everywhere."""
    print(
        f"\n{'path':9}{'variant':41}{'ops/s median [min-max]':>24}"
        f"{'CPU us/op median [min-max]':>30}"
    )
    for path in PATHS:
        for variant in all_variants:
            runs = samples[(path, variant.key)]
            print(
                f"{path:9}{variant.key:3}{variant.label:38}"
                f"{_spread([s.ops_per_second for s in runs]):>24}"
                f"{_spread([s.cpu_us_per_op for s in runs]):>30}"
            )
    print(
        "\nSQLAlchemy against hand-written code on the same backend, paired round by round,"
        " median [min to max]"
    )
    print(
        f"{'path':9}{'backend':12}{'pair':9}{'ops/s SA/raw':>22}{'throughput lost':>24}"
        f"{'CPU per op':>24}   verdict (limit {LIMIT:.0%} lost)"
    )
    within = True
    for path in PATHS:
        for backend, raw, port, decides in COMPARISONS:
            pairs = list(zip(samples[(path, raw)], samples[(path, port)], strict=True))
            ratios = [p.ops_per_second / r.ops_per_second for r, p in pairs]
            costs = [1 - ratio for ratio in ratios]
            cpu = [p.cpu_us_per_op / r.cpu_us_per_op - 1 for r, p in pairs]
            over = statistics.median(costs) > LIMIT
            verdict = "OVER" if over else "within"
            if min(costs) <= LIMIT < max(costs):
                verdict += ", rounds on both sides"
            if decides:
                within = within and not over
            else:
                verdict = f"({verdict}: tuned, does not decide)"
            ratio_text = f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"
            print(
                f"{path:9}{backend:12}{port + '/' + raw:9}{ratio_text:>22}"
                f"{_percent(costs):>24}{_percent(cpu, '+'):>24}   {verdict}"
            )
    return within


async def compiled_cache_hits(variant: Variant, count: int) -> tuple[int, int]:
    """(cache hits, statements compiled by SQLAlchemy) over `count` more of each operation.

    Run after the timed rounds, since the listener that counts costs time of its own.
    """
    hits = compiled = 0

    def tally(*args: Any) -> None:
        nonlocal hits, compiled
        context = args[4]  # conn, cursor, statement, parameters, context, executemany
        if context is not None and context.compiled is not None:
            compiled += 1
            hits += context.cache_hit.name == "CACHE_HIT"

    sa.event.listen(variant.engine.sync_engine, "before_cursor_execute", tally)
    try:
        await ingest(variant.store, f"cache-{variant.key}", 0, count)
        await outbound(variant.store, f"cache-{variant.key}", 0, count, variant.threads)
    finally:
        sa.event.remove(variant.engine.sync_engine, "before_cursor_execute", tally)
    return hits, compiled


async def run(args: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="store-backends-") as tmp:
        async with variants(Path(tmp)) as all_variants:
            for variant in all_variants:  # warm-up: caches, prepared statements, pages
                tag = f"warm-{variant.key}"
                await ingest(variant.store, tag, 0, args.warmup)
                await check_dedupe(variant.store, tag)
                await outbound(variant.store, tag, 0, args.warmup, variant.threads)
            samples: dict[tuple[str, str], list[Sample]] = {
                (path, variant.key): [] for path in PATHS for variant in all_variants
            }
            for round_index in range(args.rounds):
                for path, total in (("ingest", args.events), ("outbound", args.sends)):
                    measured = await timed_round(
                        path, all_variants, round_index, total, args.slices
                    )
                    for key, sample in measured.items():
                        samples[(path, key)].append(sample)
                print(f"  round {round_index + 1}/{args.rounds} done", file=sys.stderr)
            within = report(samples, all_variants)
            checks = []
            for variant in all_variants:
                if variant.engine is not None:
                    hits, compiled = await compiled_cache_hits(variant, 20)
                    checks.append(f"{variant.key} {hits}/{compiled}")
            print(
                "CPU is this process's (aiosqlite's threads included, PostgreSQL's server not)."
                f" Compiled-cache hits over 20 more of each: {', '.join(checks)}"
            )
            return within


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.store_backends",
        description="SQLAlchemy Core (async) against the hand-written store; see the docstring.",
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--events", type=int, default=800, help="webhooks per variant per round")
    parser.add_argument("--sends", type=int, default=240, help="sends per variant per round")
    parser.add_argument("--warmup", type=int, default=150, help="webhooks and sends, per variant")
    parser.add_argument("--slices", type=int, default=10, help="turns per variant per round")
    args = parser.parse_args()
    if min(args.rounds, args.events, args.sends, args.warmup, args.slices) < 1:
        parser.error("every count must be at least 1")
    print(
        f"sqlalchemy {version('sqlalchemy')}, asyncpg {version('asyncpg')},"
        f" aiosqlite {version('aiosqlite')}, SQLite {sqlite3.sqlite_version},"
        f" Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {_load()};"
        f" today's store from {Path(storage.__file__).parent}"
    )
    print(
        f"{args.rounds} rounds of {args.events} webhooks"
        f" ({len(json.dumps(_webhook('r0', 0)))} bytes of JSON, 2 dedupe keys)"
        f" and {args.sends} sends per variant, each in {args.slices} turns taken by the"
        f" variants in rotation, after {args.warmup} of each"
    )
    started = time.perf_counter()
    within = asyncio.run(run(args))
    print(
        f"\nBy the {LIMIT:.0%} rule: "
        + (
            "SQLAlchemy Core stays within it on both paths and backends: one implementation."
            if within
            else "SQLAlchemy Core costs more than that on a path: keep two backends."
        )
    )
    print(f"took {time.perf_counter() - started:.0f} s; load at the end {_load()}")


def _load() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


if __name__ == "__main__":
    main()
