"""Send outbox of the store: durable, ordered, at-most-once sends to HighLevel."""

from __future__ import annotations

import json
import logging
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
from storage._errors import NotFoundError
from storage._intents import _close_intent
from storage._outbox_sql import (
    _CLOSE_INTENT_INSERT_ENTRY,
    _FAIL_UNSENT_FOR_LOCATION,
    _INSERT_ENTRY,
    _KEEP_SHOW_LEASE,
    _MARK_SENT,
    _MARK_SENT_RECORDED,
    _OUTBOX_FREE_HEAD,
    _RECOVERY_ERROR,
    _SET_SLACK_TS_SHOWN,
    _SHOW_ON_MESSAGE,
    _from_states_sql,
    _outbox,
    _transition_from,
)
from storage._records import INTENT_QUEUED, OutboxEntry, OutboxState

log = logging.getLogger(__name__)


def _claim_sql(db: Conn) -> str:
    return queue_claim_sql(db, "outbox", "sending", _OUTBOX_FREE_HEAD)


_NEXT_DUE_SQL = queue_next_due_sql("outbox", _OUTBOX_FREE_HEAD)


class OutboxMixin(StoreBase):
    """The outbox: queued sends, their claims and state transitions."""

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

        values = {
            "key": idempotency_key,
            "team_id": team_id,
            "channel_id": channel_id,
            "slack_user_id": slack_user_id,
            "thread_id": thread_id,
            "location_id": location_id,
            "contact_id": contact_id,
            "conversation_id": conversation_id,
            "message_type": message_type,
            "payload": payload_json,
            "next_attempt_at": now if next_attempt_at is None else next_attempt_at,
            "slack_ts": slack_ts,
            "scheduled_at": scheduled_at,
            "now": now,
        }
        closing = {"intent": close_intent, "outcome": INTENT_QUEUED, "closed_at": now}

        async def enqueue(db: Conn) -> tuple[Row | None, bool]:
            # Race-free without the serial lock: of two inserting one key, the second waits
            # for the first and then inserts nothing, and reads the first's row.
            if close_intent is None:
                row = await _one(db, _INSERT_ENTRY, values)
            elif db.dialect == "postgresql":
                # The intent closed by the same statement: atomic without a transaction, and
                # one round trip (SQLite has no UPDATE inside WITH).
                row = await _one(db, _CLOSE_INTENT_INSERT_ENTRY, {**values, **closing})
            else:
                await _close_intent(db, close_intent, INTENT_QUEUED, now)
                row = await _one(db, _INSERT_ENTRY, values)
            if row is not None:
                return row, True
            existing = await _one(
                db, "SELECT * FROM outbox WHERE idempotency_key = ?", (idempotency_key,)
            )
            return existing, False

        row, created = await self._single_write_op(enqueue)
        return _outbox(_required(row)), created

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None:
        """Move the pending entry due longest (ties: oldest) to 'sending' (attempts + 1) and
        return it.

        Sends to one contact go strictly in order, one at a time: an entry is skipped while
        its contact has an entry 'sending' or an older one still pending (even if that one
        waits for a retry). Other contacts are not held up.
        """
        params = self._claim_params(now)
        row = await self._single_write_op(lambda db: _one(db, _claim_sql(db), params))
        return None if row is None else _outbox(row)

    async def claim_next_or_due(
        self, now: float | None = None
    ) -> tuple[OutboxEntry | None, float | None]:
        """`claim_next`, and when it takes nothing, `next_outbox_due_at` as of that claim: one
        round trip instead of two for a worker slot that finds the queue empty."""
        params = self._claim_params(now)
        row, due = await self._single_write_op(
            lambda db: claim_or_due(db, _claim_sql(db), _NEXT_DUE_SQL, params)
        )
        return (None if row is None else _outbox(row)), due

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
        ghl_email_message_id: str | None = None,
        ghl_message_ids: Sequence[str] = (),
        ghl_msg: str | None = None,
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

        params = {
            "id": outbox_id,
            "conversation_id": conversation_id,
            "ghl_message_id": ghl_message_id,
            "ghl_email_message_id": ghl_email_message_id,
            "ghl_message_ids": json.dumps(list(ghl_message_ids)),
            "ghl_msg": ghl_msg,
            "now": now,
            "show_until": now + self._lease_seconds,
        }

        async def mark(db: Conn) -> OutboxEntry:
            if db.dialect == "postgresql":
                # All of it in one statement: atomic without a transaction, one round trip.
                return _outbox(
                    await _transition_from(
                        db,
                        outbox_id,
                        "mark_sent",
                        _MARK_SENT_RECORDED,
                        {**params, "ids": ids or [None]},
                    )
                )
            # The entry's row first: its UPDATE holds the row until this commits, so a
            # transition of the same entry (or set_outbox_slack_ts) waits, then sees it.
            entry = _outbox(await _transition_from(db, outbox_id, "mark_sent", _MARK_SENT, params))
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

        # No serial lock: each statement is race-free on its own (a conditional UPDATE, an
        # upsert on the message id); on SQLite the transaction makes them one outcome.
        return await self._single_write_op(mark)

    async def _record_sent_messages(
        self, db: Conn, entry: OutboxEntry, ids: list[str], now: float
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
            ts = slack_ts if index == 0 else None
            # An upsert, not a look-up and an insert: the echo webhook's record_message may
            # insert the same id at the same time. If it got here first, its row is only
            # linked to this send.
            await db.execute(
                """
                INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
                    ghl_email_message_id, email_thread_id, direction, message_type, status,
                    slack_user_id, outbox_id, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, NULL, 'outbound', ?, NULL, ?, ?, ?, ?)
                ON CONFLICT (ghl_message_id) WHERE ghl_message_id IS NOT NULL DO UPDATE SET
                    outbox_id = COALESCE(messages.outbox_id, excluded.outbox_id),
                    updated_at = excluded.updated_at
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
        now = self._clock()

        async def transition(db: Conn) -> Row:
            return await _transition_from(
                db,
                outbox_id,
                action,
                f"""
                UPDATE outbox SET state = :state, {_KEEP_SHOW_LEASE},
                    last_error = COALESCE(:error, last_error),
                    next_attempt_at = COALESCE(:next_attempt_at, next_attempt_at),
                    updated_at = :now
                WHERE id = :id AND state IN ({_from_states_sql(action)})
                RETURNING *
                """,  # noqa: S608 - only constants of this module are formatted in
                {
                    "state": target.value,
                    "error": error,
                    "next_attempt_at": next_attempt_at,
                    "now": now,
                    "id": outbox_id,
                    "show_until": (
                        None if target is OutboxState.PENDING else now + self._lease_seconds
                    ),
                },
            )

        # One compare-and-set UPDATE: race-free without the serial lock.
        return _outbox(await self._single_write_op(transition))

    async def fail_unsent_for_location(self, location_id: str, reason: str) -> list[OutboxEntry]:
        """The location's access is lost: its pending sends (never sent, not claimed) become
        'failed' with `reason`; returned by id, for their posts to show them as not sent."""
        params = {"location_id": location_id, "reason": reason, "now": self._clock()}
        # One UPDATE testing the state: an entry claimed meanwhile ('sending') is left out.
        rows = await self._single_write_op(lambda db: _all(db, _FAIL_UNSENT_FOR_LOCATION, params))
        return sorted((_outbox(row) for row in rows), key=lambda entry: entry.id)

    async def set_outbox_thread(self, outbox_id: int, thread_id: int) -> OutboxEntry:
        """Link an entry to the thread the worker found or opened for it."""
        now = self._clock()
        row = await self._single_write_op(
            lambda db: _one(
                db,
                "UPDATE outbox SET thread_id = ?, updated_at = ? WHERE id = ? RETURNING *",
                (thread_id, now, outbox_id),
            )
        )
        if row is None:
            raise NotFoundError(f"no outbox entry {outbox_id}")
        return _outbox(row)

    async def set_outbox_slack_ts(self, outbox_id: int, slack_ts: str) -> OutboxEntry:
        """Remember the Slack post showing this send (also on its message row, if sent)."""
        now = self._clock()

        params = {"ts": slack_ts, "now": now, "outbox_id": outbox_id}

        async def set_ts(db: Conn) -> OutboxEntry:
            if db.dialect == "postgresql":
                row = await _one(db, _SET_SLACK_TS_SHOWN, params)
                if row is None:
                    raise NotFoundError(f"no outbox entry {outbox_id}")
                if row["state_seen"] == row["state"]:
                    return _outbox(row)
                # A transition committed while this waited for the row (mark_sent, which
                # records the message rows, changes the state): the message UPDATE above
                # read rows as they were before it. Do it again, seeing them now.
                entry = _outbox(row)
            else:
                row = await _one(
                    db,
                    "UPDATE outbox SET slack_ts = :ts, updated_at = :now WHERE id = :outbox_id"
                    " RETURNING *",
                    params,
                )
                if row is None:
                    raise NotFoundError(f"no outbox entry {outbox_id}")
                entry = _outbox(row)
            await db.execute(_SHOW_ON_MESSAGE, {"channel": entry.channel_id, **params})
            return entry

        # No serial lock: the entry's row is updated first and held until the commit, so
        # mark_sent of the same entry (which records its messages) runs before or after
        # this whole, never between; the message UPDATE checks its own conditions. On
        # PostgreSQL it is one statement, unless it raced mark_sent (then the message's
        # UPDATE, display data only, follows in a statement of its own).
        return await self._single_write_op(set_ts)

    async def get_outbox(self, outbox_id: int) -> OutboxEntry | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT * FROM outbox WHERE id = ?", (outbox_id,))
        )
        return None if row is None else _outbox(row)

    async def get_outbox_by_key(self, idempotency_key: str) -> OutboxEntry | None:
        row = await self._read_op(
            lambda db: _one(
                db, "SELECT * FROM outbox WHERE idempotency_key = ?", (idempotency_key,)
            )
        )
        return None if row is None else _outbox(row)

    async def list_outbox(
        self, state: OutboxState | None = None, *, limit: int = 100
    ) -> list[OutboxEntry]:
        """Entries, oldest first, optionally only those in `state`."""
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM outbox WHERE (CAST(:state AS TEXT) IS NULL OR state = :state)"
                " ORDER BY id LIMIT :limit",
                {
                    "state": None if state is None else OutboxState(state).value,
                    "limit": limit,
                },
            )
        )
        return [_outbox(row) for row in rows]

    async def has_unsettled_send(self, location_id: str, contact_id: str) -> bool:
        """A send to the contact is queued, in flight, or of unknown outcome (no id yet)."""
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT 1 FROM outbox WHERE location_id = ? AND contact_id = ?"
                " AND state IN ('pending', 'sending', 'unknown') AND ghl_message_id IS NULL"
                " LIMIT 1",
                (location_id, contact_id),
            )
        )
        return row is not None

    async def next_outbox_due_at(self) -> float | None:
        """When claim_next can next take an entry unless a send ends first: the earliest
        due time of a pending entry nothing holds back (None if there is none).

        An entry waiting behind its contact's send in flight is not counted: it becomes
        claimable when that send ends, not at any time this could name.
        """
        row = await self._read_op(lambda db: _one(db, _NEXT_DUE_SQL))
        return None if row is None else float(row[0])

    async def count_outbox_by_state(self) -> dict[OutboxState, int]:
        """How many entries wait, are in flight or need a person: pending, sending, unknown,
        failed (each 0 when there is none).

        One seek per state in outbox_state (state, id), reading only the index. Sent and
        cancelled entries are the whole history (500,000 sent took 33 ms to count, under the
        store's lock): they are left out, and the send counters count them instead.
        """
        states = (OutboxState.PENDING, OutboxState.SENDING, OutboxState.UNKNOWN, OutboxState.FAILED)
        counts = dict.fromkeys(states, 0)
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT state, COUNT(*) AS n FROM outbox"
                " WHERE state IN ('pending', 'sending', 'unknown', 'failed') GROUP BY state",
            )
        )
        for row in rows:
            counts[OutboxState(row["state"])] = int(row["n"])
        return counts

    async def recover_after_crash(self) -> int:
        """At start-up, turn entries left 'sending' by a dead process into 'unknown'.

        Such a request may have reached HighLevel before the crash, so resending it could
        text the customer twice; 'unknown' entries wait for reconciliation against
        HighLevel instead. Call it only while no other process is sending from this outbox.
        """
        now = self._clock()
        rows = await self._single_write_op(
            lambda db: _all(
                db,
                "UPDATE outbox SET state = 'unknown', last_error = ?, updated_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL"
                " WHERE state = 'sending' RETURNING id",
                (_RECOVERY_ERROR, now),
            )
        )
        if rows:
            log.warning(
                "%d outbox entries were being sent when the process stopped; marked unknown: %s",
                len(rows),
                sorted(row["id"] for row in rows),
            )
        return len(rows)
