"""Variant c: the store in hand-written SQL on raw asyncpg."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from bench.store_backends._common import (
    _check_mark_sent,
    _sent_ids,
)
from storage import InboundEvent, OutboxEntry
from storage._base import _required
from storage._inbound import _inbound
from storage._outbox_sql import _outbox

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
        return _inbound(_required(row))

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
                return _outbox(existing), False
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
        return _outbox(_required(row)), True

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        when = self._clock() if now is None else now
        async with self._write() as conn:
            row = await conn.fetchrow(_PG_CLAIM_NEXT, when)
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
            entry = _outbox(_required(row))
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
