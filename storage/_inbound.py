"""Inbound events of the store: deduplicated webhook and poll events, in order."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from storage._base import (
    Conn,
    Row,
    StoreBase,
    _all,
    _one,
    _required,
    claim_or_due,
    queue_claim_sql,
    queue_next_due_sql,
)
from storage._errors import StoreError
from storage._records import InboundBacklog, InboundEvent, InboundState

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


def _claim_sql(db: Conn) -> str:
    # In the order of inbound_events_due. (Ordered by id, it had to test and sort every
    # pending event on each claim: with a few thousand pending that took over 100 ms, under
    # the store's lock.)
    return queue_claim_sql(db, "inbound_events", "processing", _INBOUND_FREE_HEAD)


_NEXT_DUE_SQL = queue_next_due_sql("inbound_events", _INBOUND_FREE_HEAD)


# How an event ended, or when it is tried again. Not once another instance has claimed it
# again (this one's lease had expired): the event is that instance's now, and it will say how
# it ended. Between the take-over and the new claim the owner is NULL, and this still counts.
SET_INBOUND_STATE = """
UPDATE inbound_events SET state = :state, last_error = COALESCE(:error, last_error),
    next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at), updated_at = :now,
    lease_owner = NULL, lease_expires_at = NULL
WHERE id = :event AND (lease_owner IS NULL OR lease_owner = :owner)
"""


def inbound_state_params(
    event_id: int,
    state: InboundState,
    *,
    now: float,
    owner: str,
    error: str | None = None,
    next_attempt_at: float | None = None,
) -> dict[str, Any]:
    """The parameters of SET_INBOUND_STATE (an error or due time of None keeps the one set)."""
    return {
        "event": event_id,
        "state": state.value,
        "now": now,
        "owner": owner,
        "error": error,
        "next_attempt_at": next_attempt_at,
    }


class _AlreadySeen(Exception):
    """One of an event's keys is live: the event is not stored (its transaction rolls back)."""


def _take_keys_sql(count: int) -> str:
    rows = ", ".join(["('inbound', ?, ?)"] * count)
    return (
        "INSERT INTO processed_deliveries (source, key, expires_at)"  # noqa: S608 - only "?"s are formatted in
        f" VALUES {rows}"
        " ON CONFLICT (source, key) DO UPDATE SET expires_at = excluded.expires_at"
        " WHERE processed_deliveries.expires_at <= ? RETURNING key"
    )


def _take_keys_values(keys: list[str], now: float, ttl_seconds: float) -> list[object]:
    values: list[object] = []
    for key in keys:
        values += [key, now + ttl_seconds]
    return [*values, now]


_INSERT_EVENT = """
    INSERT INTO inbound_events (source, event_type, conversation_key, payload,
        next_attempt_at, received_at, updated_at, sort_at)
"""
_STORE_EVENT = f"""{_INSERT_EVENT}
    VALUES (:source, :event_type, :conversation_key, :payload, :due, :now, :now, :sort_at)
    RETURNING id
"""

# The error a statement of _TAKE_KEYS_AND_STORE fails with (rolling back what it did) when it
# took only some of the keys: another delivery, in flight when it began, had the others.
_TAKEN_MEANWHILE = "inbound: a dedupe key of the event was taken meanwhile"

# PostgreSQL: enqueue_inbound in one statement, atomic without a transaction. Nothing is taken
# if a key is live when it begins (`live`: a repeat, the common case; it returns no row).
# Else it takes the keys (:keys, sorted, so that two deliveries sharing keys wait for each
# other in one order) and stores the event, but a key another delivery took meanwhile makes
# it fail: plain SQL cannot roll back a statement that took only some keys but by an error,
# here a cast of _TAKEN_MEANWHILE to a boolean.
_TAKE_KEYS_AND_STORE = f"""
    WITH live AS (
        SELECT 1 FROM processed_deliveries
        WHERE source = 'inbound' AND key = ANY(CAST(:keys AS TEXT[]))
          AND expires_at > CAST(:now AS DOUBLE PRECISION)
        LIMIT 1
    ),
    taken AS (
        INSERT INTO processed_deliveries (source, key, expires_at)
        SELECT 'inbound', key, CAST(:expires_at AS DOUBLE PRECISION)
        FROM unnest(CAST(:keys AS TEXT[])) AS key
        WHERE NOT EXISTS (SELECT 1 FROM live)
        ON CONFLICT (source, key) DO UPDATE SET expires_at = excluded.expires_at
            WHERE processed_deliveries.expires_at <= CAST(:now AS DOUBLE PRECISION)
        RETURNING key
    )
    {_INSERT_EVENT}
    SELECT CAST(:source AS TEXT), CAST(:event_type AS TEXT), CAST(:conversation_key AS TEXT),
        CAST(:payload AS TEXT), CAST(:due AS DOUBLE PRECISION), CAST(:now AS DOUBLE PRECISION),
        CAST(:now AS DOUBLE PRECISION), CAST(:sort_at AS DOUBLE PRECISION)
    WHERE CAST(CASE
        WHEN EXISTS (SELECT 1 FROM live) THEN 'false'
        WHEN (SELECT COUNT(*) FROM taken) = cardinality(CAST(:keys AS TEXT[])) THEN 'true'
        ELSE '{_TAKEN_MEANWHILE}'
    END AS BOOLEAN)
    RETURNING id
"""  # noqa: S608 - only constants of this module are formatted in


async def _take_keys_and_store(
    db: Conn, keys: list[str], expires_at: float, event: Mapping[str, Any]
) -> Row:
    try:
        row = await _one(
            db,
            _TAKE_KEYS_AND_STORE,
            {**event, "keys": sorted(keys), "expires_at": expires_at},
        )
    except StoreError as exc:
        if _TAKEN_MEANWHILE in str(exc):
            raise _AlreadySeen from exc
        raise
    if row is None:
        raise _AlreadySeen
    return row


class InboundMixin(StoreBase):
    """Inbound events: stored once, processed per conversation in sent order."""

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any] | str,
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
        sort_at: float | None = None,
        not_before: float | None = None,
    ) -> InboundEvent | None:
        """Store an event unless any of its keys (webhookId, messageId…) was seen; None if so.

        The keys and the event are written in one transaction (on PostgreSQL one statement),
        so an event is either stored with all its keys or not at all: a crash cannot leave a
        key that hides a lost event.
        `sort_at` is when the message was sent (default: now): a conversation's events are
        processed in that order. `not_before` is when the event may first be processed
        (default: now); until then its conversation's later events wait behind it too.
        A str `payload` is JSON text, stored as it is (a webhook's body as it arrived).
        """
        now = self._clock()
        for name, value in (("sort_at", sort_at), ("not_before", not_before)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name} must be a finite time, got {value!r}")
        keys = list(dict.fromkeys(dedupe_keys))
        payload_json = payload if isinstance(payload, str) else json.dumps(payload)
        due = now if not_before is None else not_before

        event = {
            "source": source,
            "event_type": event_type,
            "conversation_key": conversation_key,
            "payload": payload_json,
            "due": due,
            "now": now,
            "sort_at": now if sort_at is None else sort_at,
        }

        async def enqueue(db: Conn) -> Row | None:
            if keys and db.dialect == "postgresql":
                return await _take_keys_and_store(db, keys, now + ttl_seconds, event)
            if keys:
                taken = await _all(
                    db, _take_keys_sql(len(keys)), _take_keys_values(keys, now, ttl_seconds)
                )
                if len(taken) < len(keys):
                    raise _AlreadySeen
            return await _one(db, _STORE_EVENT, event)

        try:
            # Race-free on its own (no serial lock): the keys are taken by one upsert that
            # returns those it took. A live key held by another transaction makes this one
            # wait for it and then not take the key, so of two instances given the same
            # webhook at once exactly one stores it; the other rolls back. On SQLite,
            # webhooks arriving together may share a transaction (and its commit), each
            # still all or nothing; on PostgreSQL each is one statement.
            row = await self._grouped_write_op(enqueue)
        except _AlreadySeen:
            return None
        # The new row is what was just written: only its id is read back (RETURNING * would
        # make SQLite hand the whole payload back too).
        return InboundEvent(
            id=_required(row)["id"],
            source=source,
            event_type=event_type,
            conversation_key=conversation_key,
            payload_json=payload_json,
            state=InboundState.PENDING,
            attempts=0,
            last_error=None,
            next_attempt_at=due,
            received_at=now,
        )

    async def claim_inbound(self, now: float | None = None) -> InboundEvent | None:
        """Move one due event to 'processing': per conversation, the pending event sent
        first (smallest sort_at, then id), and only while none of it is processing.

        An event is never taken while an earlier-sent one of its conversation is pending
        (even one waiting for a retry). Across conversations, the one due longest goes first.
        """
        params = self._claim_params(now)
        row = await self._single_write_op(lambda db: _one(db, _claim_sql(db), params))
        return None if row is None else _inbound(row)

    async def claim_inbound_or_due(
        self, now: float | None = None
    ) -> tuple[InboundEvent | None, float | None]:
        """`claim_inbound`, and when it takes nothing, `next_inbound_due_at` as of that
        claim: one round trip instead of two for a worker slot that finds nothing."""
        params = self._claim_params(now)
        row, due = await self._single_write_op(
            lambda db: claim_or_due(db, _claim_sql(db), _NEXT_DUE_SQL, params)
        )
        return (None if row is None else _inbound(row)), due

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
        params = inbound_state_params(
            event_id,
            state,
            now=self._clock(),
            owner=self._instance_id,
            error=error,
            next_attempt_at=next_attempt_at,
        )
        await self._single_write_op(lambda db: db.execute(SET_INBOUND_STATE, params))

    async def recover_inbound(self) -> int:
        """At start-up, events left 'processing' by a stopped process go back to 'pending'."""
        now = self._clock()
        rows = await self._single_write_op(
            lambda db: _all(
                db,
                "UPDATE inbound_events SET state = 'pending', updated_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state = 'processing' RETURNING id",
                (now,),
            )
        )
        return len(rows)

    async def next_inbound_due_at(self) -> float | None:
        """When claim_inbound can next take an event unless one in process ends first: the
        earliest due time of a pending event nothing holds back (None if there is none)."""
        row = await self._read_op(lambda db: _one(db, _NEXT_DUE_SQL))
        return None if row is None else float(row[0])

    async def count_inbound(self, state: InboundState | None = None) -> int:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT COUNT(*) FROM inbound_events"
                " WHERE (CAST(:state AS TEXT) IS NULL OR state = :state)",
                {"state": None if state is None else state.value},
            )
        )
        return int(row[0]) if row else 0

    async def last_inbound_at(self, source: str) -> float | None:
        """When the newest event from `source` ('webhook', 'poll') was stored; None if never."""
        row = await self._read_op(
            lambda db: _one(
                db, "SELECT MAX(received_at) FROM inbound_events WHERE source = ?", (source,)
            )
        )
        return None if row is None or row[0] is None else float(row[0])

    async def inbound_backlog(self) -> InboundBacklog:
        """The queue's depth (pending, processing) and when its oldest pending event arrived.

        One statement, each part a range of inbound_events_due (state, next_attempt_at, id)
        read from the index alone, as long as the backlog and never the history. The oldest
        pending event is the one with the smallest id (ids grow with arrival): MIN(id) comes
        from the index, where MIN(received_at) would read every pending row.
        """
        row = await self._read_op(
            lambda db: _one(
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
        )
        row = _required(row)
        oldest = row["oldest"]
        return InboundBacklog(
            pending=int(row["pending"]),
            processing=int(row["processing"]),
            oldest_pending_received_at=None if oldest is None else float(oldest),
        )


def _inbound(row: Row) -> InboundEvent:
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
