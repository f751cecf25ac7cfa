"""Variants b and d: the store over SQLAlchemy Core, one code for SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa  # type: ignore[import-not-found, unused-ignore]
from sqlalchemy.dialects import postgresql as sa_postgresql  # type: ignore[import-not-found, unused-ignore]
from sqlalchemy.ext.asyncio import AsyncConnection  # type: ignore[import-not-found, unused-ignore]

from bench.store_backends._common import _check_mark_sent, _sent_ids
from bench.store_backends._tables import _DELIVERIES, _INBOUND, _MESSAGES, _OUTBOX, _THREADS
from storage import InboundEvent, OutboxEntry
from storage._inbound import _inbound
from storage._outbox_sql import _outbox

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
        return _inbound(row._mapping)

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
                return _outbox(existing._mapping), False
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
        return _outbox(row._mapping), True

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        when = self._clock() if now is None else now
        async with self._write() as conn:
            result = await conn.execute(self._statement(_claim_next), {"now": when})
            row = result.first()
        return None if row is None else _outbox(row._mapping)

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
            entry = _outbox(result.one()._mapping)
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
