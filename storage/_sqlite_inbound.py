"""Inbound events of the SQLite store: deduplicated webhook and poll events, in order."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from storage._records import InboundBacklog, InboundEvent, InboundState
from storage._sqlite_base import StoreBase, _all, _one, _required

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


class InboundMixin(StoreBase):
    """Inbound events: stored once, processed per conversation in sent order."""

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

    async def inbound_backlog(self) -> InboundBacklog:
        """The queue's depth (pending, processing) and when its oldest pending event arrived.

        One statement, each part a range of inbound_events_due (state, next_attempt_at, id)
        read from the index alone, as long as the backlog and never the history. The oldest
        pending event is the one with the smallest id (ids grow with arrival): MIN(id) comes
        from the index, where MIN(received_at) would read every pending row.
        """
        async with self._read() as db:
            row = await _one(
                db,
                """
                SELECT
                    (SELECT COUNT(*) FROM inbound_events WHERE state = 'pending') AS pending,
                    (SELECT COUNT(*) FROM inbound_events WHERE state = 'processing')
                        AS processing,
                    (SELECT received_at FROM inbound_events WHERE id = (
                        SELECT MIN(id) FROM inbound_events WHERE state = 'pending'
                    )) AS oldest
                """,
            )
        row = _required(row)
        oldest = row["oldest"]
        return InboundBacklog(
            pending=int(row["pending"]),
            processing=int(row["processing"]),
            oldest_pending_received_at=None if oldest is None else float(oldest),
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
