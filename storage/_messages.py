"""Messages of the store: each HighLevel message and the Slack post showing it."""

from __future__ import annotations

from storage._base import Conn, Row, StoreBase, _one, _required
from storage._errors import NotFoundError
from storage._outbox_sql import _outbox
from storage._records import MessageDirection, MessageRecord, OutboxEntry

_SET_STATUS = "UPDATE messages SET status = :status, updated_at = :now WHERE ghl_message_id = :id"
# PostgreSQL: the update and the read of the send's entry in one statement.
_SET_STATUS_OF_SEND = (
    f"WITH updated AS ({_SET_STATUS} RETURNING outbox_id)"  # noqa: S608 - constants only
    " SELECT outbox.* FROM outbox JOIN updated ON outbox.id = updated.outbox_id"
)


class MessagesMixin(StoreBase):
    """Messages, idempotent on their HighLevel id or their Slack post."""

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
        direction_value = MessageDirection(direction).value
        now = self._clock()

        # The insert decides (no look-up first, no serial lock): of callers recording one
        # message at once, one inserts it and the others' upserts do nothing; they, and a
        # caller recording a known message, then read the row that was kept.
        if ghl_message_id is not None:
            conflict = "ON CONFLICT (ghl_message_id) WHERE ghl_message_id IS NOT NULL DO NOTHING"
            lookup = "SELECT * FROM messages WHERE ghl_message_id = ?"
            key: tuple[str, ...] = (ghl_message_id,)
        elif slack_ts is not None and slack_channel_id is not None:
            conflict = (
                "ON CONFLICT (slack_channel_id, slack_ts) WHERE slack_ts IS NOT NULL DO NOTHING"
            )
            lookup = "SELECT * FROM messages WHERE slack_channel_id = ? AND slack_ts = ?"
            key = (slack_channel_id, slack_ts)
        else:
            conflict, lookup, key = "", "", ()

        async def record(db: Conn) -> tuple[Row | None, bool]:
            row = await _one(
                db,
                f"""
                INSERT INTO messages (thread_id, slack_channel_id, slack_ts, ghl_message_id,
                    ghl_email_message_id, email_thread_id, direction, message_type, status,
                    slack_user_id, outbox_id, created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                {conflict}
                RETURNING *
                """,  # noqa: S608 - only constants of this function are formatted in
                (
                    thread_id,
                    slack_channel_id,
                    slack_ts,
                    ghl_message_id,
                    ghl_email_message_id,
                    email_thread_id,
                    direction_value,
                    message_type,
                    status,
                    slack_user_id,
                    outbox_id,
                    now,
                    now,
                ),
            )
            if row is not None or not lookup:
                return row, True
            return await _one(db, lookup, key), False

        row, created = await self._single_write_op(record)
        return _message(_required(row)), created

    async def get_message(self, message_id: int) -> MessageRecord | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT * FROM messages WHERE id = ?", (message_id,))
        )
        return None if row is None else _message(row)

    async def get_message_by_ghl_id(self, ghl_message_id: str) -> MessageRecord | None:
        row = await self._read_op(
            lambda db: _one(
                db, "SELECT * FROM messages WHERE ghl_message_id = ?", (ghl_message_id,)
            )
        )
        return None if row is None else _message(row)

    async def get_message_by_slack(self, channel_id: str, ts: str) -> MessageRecord | None:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT * FROM messages WHERE slack_channel_id = ? AND slack_ts = ?",
                (channel_id, ts),
            )
        )
        return None if row is None else _message(row)

    async def update_message_status(self, ghl_message_id: str, status: str) -> MessageRecord | None:
        """Set the delivery status of a known HighLevel message; None if it is not recorded."""
        params = {"status": status, "now": self._clock(), "id": ghl_message_id}
        row = await self._single_write_op(lambda db: _one(db, f"{_SET_STATUS} RETURNING *", params))
        return None if row is None else _message(row)

    async def update_status_of_send(self, ghl_message_id: str, status: str) -> OutboxEntry | None:
        """`update_message_status`, returning the outbox entry that sent the message (None if
        the message is not recorded or no send of this bridge made it): one round trip for a
        delivery status, which the send's post then shows."""
        params = {"status": status, "now": self._clock(), "id": ghl_message_id}

        async def update(db: Conn) -> Row | None:
            if db.dialect == "postgresql":
                return await _one(db, _SET_STATUS_OF_SEND, params)
            updated = await _one(db, f"{_SET_STATUS} RETURNING outbox_id", params)
            if updated is None or updated["outbox_id"] is None:
                return None
            return await _one(db, "SELECT * FROM outbox WHERE id = ?", (updated["outbox_id"],))

        row = await self._single_write_op(update)
        return None if row is None else _outbox(row)

    async def latest_message(
        self,
        thread_id: int,
        *,
        direction: MessageDirection | None = None,
        message_type: str | None = None,
    ) -> MessageRecord | None:
        """The thread's newest message, optionally of one direction and/or type."""
        row = await self._read_op(
            lambda db: _one(
                db,
                """
                SELECT * FROM messages
                WHERE thread_id = :thread_id
                  AND (CAST(:direction AS TEXT) IS NULL OR direction = :direction)
                  AND (CAST(:message_type AS TEXT) IS NULL OR message_type = :message_type)
                ORDER BY created_at DESC, id DESC
                LIMIT 1
                """,
                {
                    "thread_id": thread_id,
                    "direction": None if direction is None else MessageDirection(direction).value,
                    "message_type": message_type,
                },
            )
        )
        return None if row is None else _message(row)

    async def attach_slack_ts(
        self, message_id: int, *, slack_channel_id: str, slack_ts: str, replace: bool = False
    ) -> MessageRecord:
        """Link a recorded message to the Slack post showing it; the first post wins.

        Unless `replace`, a message that already has a post keeps it (compare slack_ts).
        ConflictError if that Slack post is already linked to another message.
        """
        now = self._clock()

        async def attach(db: Conn) -> Row | None:
            row = await _one(
                db,
                "UPDATE messages SET slack_channel_id = :channel, slack_ts = :ts, updated_at = :now"
                " WHERE id = :id AND (slack_ts IS NULL OR :replace)"
                " RETURNING *",
                {
                    "channel": slack_channel_id,
                    "ts": slack_ts,
                    "now": now,
                    "id": message_id,
                    "replace": replace,
                },
            )
            if row is None:
                row = await _one(db, "SELECT * FROM messages WHERE id = ?", (message_id,))
            return row

        # One compare-and-set UPDATE: race-free without the serial lock.
        row = await self._single_write_op(attach)
        if row is None:
            raise NotFoundError(f"no message {message_id}")
        return _message(row)


def _message(row: Row) -> MessageRecord:
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
