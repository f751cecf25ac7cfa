"""The outbox's SQL and row mapping: the statements its transitions run (some PostgreSQL-only),
which states each transition may start from, and an entry from its row. storage/_outbox.py runs
them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from storage._base import Conn, Row, _one
from storage._errors import NotFoundError, OutboxStateError, StoreError
from storage._intents import CLOSE_INTENT
from storage._records import OutboxEntry, OutboxState

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


def _from_states_sql(action: str) -> str:
    """The states `action` may start from, as a list of SQL literals (enum constants)."""
    return ", ".join(f"'{state.value}'" for state in sorted(_FROM_STATES[action]))


# Leaving 'sending', a send keeps its claim (with a fresh lease) until its Slack post shows
# the outcome: the worker then calls release_claim. A process that dies in between leaves the
# lease to expire, and whoever takes it over shows the outcome (else the post would say
# "Sending…" for ever, and a person might send again). `state` here is the state before the
# update; :show_until is NULL for a transition that must not keep it (back to pending).
_KEEP_SHOW_LEASE = """lease_owner = CASE WHEN state = 'sending'
            AND CAST(:show_until AS DOUBLE PRECISION) IS NOT NULL THEN lease_owner END,
        lease_expires_at = CASE WHEN state = 'sending'
            THEN CAST(:show_until AS DOUBLE PRECISION) END"""

_MARK_SENT = f"""
    UPDATE outbox SET state = 'sent', {_KEEP_SHOW_LEASE},
        conversation_id = COALESCE(:conversation_id, conversation_id),
        ghl_message_id = :ghl_message_id,
        ghl_email_message_id = :ghl_email_message_id,
        ghl_message_ids = :ghl_message_ids,
        ghl_msg = :ghl_msg,
        updated_at = :now
    WHERE id = :id AND state IN ({_from_states_sql("mark_sent")})
    RETURNING *
"""  # noqa: S608 - only constants of this module are formatted in

# PostgreSQL: _MARK_SENT, and in the same statement what mark_sent's other statements do on
# SQLite (_record_sent_messages, the thread's UPDATE), from the row it returned. :ids is
# every id HighLevel returned, in order, or [NULL] (one row without an id). The message rows
# see the snapshot the statement began with, as the look-up before the inserts did.
_MARK_SENT_RECORDED = f"""
    WITH sent AS ({_MARK_SENT}),
    recorded AS (
        INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
            ghl_email_message_id, email_thread_id, direction, message_type, status,
            slack_user_id, outbox_id, created_at, updated_at)
        SELECT sent.thread_id,
            CASE WHEN shown.first THEN sent.channel_id END,
            CASE WHEN shown.first THEN sent.slack_ts END,
            ids.ghl_id,
            CASE WHEN ids.n = 1 THEN sent.ghl_email_message_id END,
            NULL, 'outbound', sent.message_type, NULL, sent.slack_user_id, sent.id,
            sent.updated_at, sent.updated_at
        FROM sent
        CROSS JOIN unnest(CAST(:ids AS TEXT[])) WITH ORDINALITY AS ids (ghl_id, n)
        CROSS JOIN LATERAL (
            -- The Slack post belongs to the first id only, unless recorded elsewhere already.
            SELECT ids.n = 1 AND sent.slack_ts IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM messages AS other
                WHERE other.slack_channel_id = sent.channel_id
                  AND other.slack_ts = sent.slack_ts
            ) AS first
        ) AS shown
        ON CONFLICT (ghl_message_id) WHERE ghl_message_id IS NOT NULL DO UPDATE SET
            outbox_id = COALESCE(messages.outbox_id, excluded.outbox_id),
            updated_at = excluded.updated_at
    ),
    threaded AS (
        UPDATE slack_threads SET
            conversation_id = COALESCE(slack_threads.conversation_id, sent.conversation_id),
            channel_type = sent.message_type,
            updated_at = sent.updated_at
        FROM sent
        WHERE slack_threads.id = sent.thread_id
    )
    SELECT * FROM sent
"""  # noqa: S608 - only constants of this module are formatted in


def _shown_message(channel: str) -> str:
    """The WHERE of an UPDATE of messages picking the row that shows the Slack post (`channel`,
    :ts) of outbox entry :outbox_id: its first row without a post, unless the post or the
    entry is linked to one already."""
    return f"""
        WHERE messages.id = (SELECT id FROM messages WHERE outbox_id = :outbox_id
                             AND slack_ts IS NULL ORDER BY id LIMIT 1)
          AND NOT EXISTS (SELECT 1 FROM messages
                          WHERE slack_channel_id = {channel} AND slack_ts = :ts)
          AND NOT EXISTS (SELECT 1 FROM messages
                          WHERE outbox_id = :outbox_id AND slack_ts IS NOT NULL)
    """  # noqa: S608 - only constants of this module are formatted in


_SHOW_ON_MESSAGE = f"""
    UPDATE messages SET slack_channel_id = :channel, slack_ts = :ts, updated_at = :now
    {_shown_message(":channel")}
"""  # noqa: S608 - only constants of this module are formatted in

# PostgreSQL: set_outbox_slack_ts in one statement, and the entry's state as the statement's
# snapshot saw it (state_seen: when it differs, a transition committed in between).
_SET_SLACK_TS_SHOWN = f"""
    WITH entry AS (
        UPDATE outbox SET slack_ts = :ts, updated_at = :now WHERE id = :outbox_id RETURNING *
    ),
    shown AS (
        UPDATE messages SET slack_channel_id = entry.channel_id, slack_ts = :ts,
            updated_at = :now
        FROM entry
        {_shown_message("entry.channel_id")}
    )
    SELECT entry.*, seen.state AS state_seen
    FROM entry LEFT JOIN outbox AS seen ON seen.id = entry.id
"""  # noqa: S608 - only constants of this module are formatted in

# A location's access is lost: its sends never sent are failed (shown as not sent). 'pending'
# entries were never sent (a retry's pending was not acted on, or proved not received) and
# hold no claim (claim_next makes one 'sending'; a return to pending drops the claim); the
# lease test only keeps a claim that is still live out of it, should one ever be left.
# 'sending' and 'unknown' entries may have reached HighLevel and are left alone.
_FAIL_UNSENT_FOR_LOCATION = """
    UPDATE outbox SET state = 'failed', last_error = :reason, updated_at = :now
    WHERE location_id = :location_id AND state = 'pending'
      AND (lease_owner IS NULL OR lease_expires_at IS NULL OR lease_expires_at < :now)
    RETURNING *
"""

_RECOVERY_ERROR = "process stopped while sending; the request may have reached HighLevel"

_INSERT_ENTRY = """
    INSERT INTO outbox (idempotency_key, team_id, channel_id, slack_user_id, thread_id,
        location_id, contact_id, conversation_id, message_type, payload, state, attempts,
        next_attempt_at, slack_ts, scheduled_at, created_at, updated_at)
    VALUES (:key, :team_id, :channel_id, :slack_user_id, :thread_id, :location_id,
        :contact_id, :conversation_id, :message_type, :payload, 'pending', 0,
        :next_attempt_at, :slack_ts, :scheduled_at, :now, :now)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING *
"""
# PostgreSQL: the compose intent :intent closed by the statement inserting its entry.
_CLOSE_INTENT_INSERT_ENTRY = f"WITH closed AS ({CLOSE_INTENT}) {_INSERT_ENTRY}"

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


# A transition that keeps meeting a state it may start from, yet changes no row, is racing
# something that never settles: give up rather than spin.
_TRANSITION_TRIES = 5


async def _transition_from(
    db: Conn, outbox_id: int, action: str, update: str, params: Mapping[str, Any]
) -> Row:
    """Run `update`, an UPDATE ... WHERE id = :id AND state IN (the states `action` may start
    from) RETURNING *, and return its row; else say why not (NotFoundError, OutboxStateError).

    The state is tested by the UPDATE itself, so no serial lock is needed: on PostgreSQL a
    concurrent change of the row makes it wait and test the row as that change left it.
    """
    for _ in range(_TRANSITION_TRIES):
        row = await _one(db, update, params)
        if row is not None:
            return row
        current = await _one(db, "SELECT state FROM outbox WHERE id = ?", (outbox_id,))
        if current is None:
            raise NotFoundError(f"no outbox entry {outbox_id}")
        if OutboxState(current["state"]) not in _FROM_STATES[action]:
            raise OutboxStateError(outbox_id, current["state"], action)
        # Changed into a state this may start from since the UPDATE looked: try again.
    raise StoreError(f"outbox entry {outbox_id} kept changing under {action}")


def _outbox(row: Row) -> OutboxEntry:
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
        # Absent from a row of a store still at an older schema (its tests enqueue there).
        ghl_msg=row["ghl_msg"] if "ghl_msg" in row.keys() else None,  # noqa: SIM118
    )


def _str_list(text: str) -> Iterable[str]:
    values = json.loads(text)
    if not isinstance(values, list):
        raise StoreError(f"expected a JSON list, found {text!r}")
    return (str(value) for value in values)
