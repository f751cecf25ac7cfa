"""Slack threads of the store: the Slack thread <-> HighLevel contact map."""

from __future__ import annotations

from typing import Any

from storage._base import Conn, Row, StoreBase, _all, _one, _required
from storage._errors import NotFoundError
from storage._records import UNSET, ThreadRecord, Unset


class ThreadsMixin(StoreBase):
    """Threads: one per contact and Slack channel, with its Slack root post."""

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

        async def upsert(db: Conn) -> Row | None:
            # One upsert decides, without the serial lock: of concurrent first sends to a
            # contact, one inserts the thread and the others wait for it, then fill only
            # what is still NULL. When nothing is left to fill it changes nothing and
            # returns no row, and the thread is read.
            row = await _one(
                db,
                """
                INSERT INTO slack_threads (team_id, channel_id, thread_ts, location_id,
                    contact_id, conversation_id, channel_type, email_thread_id, subject,
                    contact_label, created_at, updated_at)
                VALUES (:team_id, :channel_id, :thread_ts, :location_id, :contact_id,
                    :conversation_id, :channel_type, :email_thread_id, :subject,
                    :contact_label, :now, :now)
                ON CONFLICT (team_id, channel_id, location_id, contact_id) DO UPDATE SET
                    thread_ts = COALESCE(slack_threads.thread_ts, excluded.thread_ts),
                    conversation_id = COALESCE(slack_threads.conversation_id,
                        excluded.conversation_id),
                    channel_type = COALESCE(slack_threads.channel_type, excluded.channel_type),
                    email_thread_id = COALESCE(slack_threads.email_thread_id,
                        excluded.email_thread_id),
                    subject = COALESCE(slack_threads.subject, excluded.subject),
                    contact_label = COALESCE(slack_threads.contact_label,
                        excluded.contact_label),
                    updated_at = excluded.updated_at
                WHERE (slack_threads.thread_ts IS NULL AND excluded.thread_ts IS NOT NULL)
                   OR (slack_threads.conversation_id IS NULL
                       AND excluded.conversation_id IS NOT NULL)
                   OR (slack_threads.channel_type IS NULL AND excluded.channel_type IS NOT NULL)
                   OR (slack_threads.email_thread_id IS NULL
                       AND excluded.email_thread_id IS NOT NULL)
                   OR (slack_threads.subject IS NULL AND excluded.subject IS NOT NULL)
                   OR (slack_threads.contact_label IS NULL
                       AND excluded.contact_label IS NOT NULL)
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
            if row is None:
                row = await _one(
                    db,
                    "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ?"
                    " AND location_id = ? AND contact_id = ?",
                    (team_id, channel_id, location_id, contact_id),
                )
            return row

        return _thread(_required(await self._single_write_op(upsert)))

    async def get_thread(self, thread_id: int) -> ThreadRecord | None:
        row = await self._read_op(
            lambda db: _one(db, "SELECT * FROM slack_threads WHERE id = ?", (thread_id,))
        )
        return None if row is None else _thread(row)

    async def get_thread_by_slack(
        self, team_id: str, channel_id: str, thread_ts: str
    ) -> ThreadRecord | None:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT * FROM slack_threads"
                " WHERE team_id = ? AND channel_id = ? AND thread_ts = ?",
                (team_id, channel_id, thread_ts),
            )
        )
        return None if row is None else _thread(row)

    async def find_thread_for_contact(
        self, team_id: str, channel_id: str, location_id: str, contact_id: str
    ) -> ThreadRecord | None:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT * FROM slack_threads WHERE team_id = ? AND channel_id = ?"
                " AND location_id = ? AND contact_id = ?",
                (team_id, channel_id, location_id, contact_id),
            )
        )
        return None if row is None else _thread(row)

    async def find_threads_for_conversation(
        self, location_id: str, conversation_id: str
    ) -> list[ThreadRecord]:
        """Threads (one per channel) showing this conversation, most recently updated first."""
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM slack_threads WHERE location_id = ? AND conversation_id = ?"
                " ORDER BY updated_at DESC, id DESC",
                (location_id, conversation_id),
            )
        )
        return [_thread(row) for row in rows]

    async def find_threads_for_contact(
        self, location_id: str, contact_id: str
    ) -> list[ThreadRecord]:
        """Threads of this contact in any channel, most recently updated first.

        For inbound messages whose conversation is not yet linked to a thread.
        """
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM slack_threads WHERE location_id = ? AND contact_id = ?"
                " ORDER BY updated_at DESC, id DESC",
                (location_id, contact_id),
            )
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
        params = thread_change_params(
            thread_id,
            self._clock(),
            conversation_id=conversation_id,
            channel_type=channel_type,
            email_thread_id=email_thread_id,
            subject=subject,
            contact_label=contact_label,
        )
        row = await self._single_write_op(lambda db: _one(db, _UPDATE_THREAD, params))
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
        now = self._clock()

        async def set_ts(db: Conn) -> Row | None:
            row = await _one(
                db,
                "UPDATE slack_threads SET thread_ts = :ts, updated_at = :now"
                " WHERE id = :id AND (thread_ts IS NULL OR :replace)"
                " RETURNING *",
                {"ts": thread_ts, "now": now, "id": thread_id, "replace": replace},
            )
            if row is None:
                row = await _one(db, "SELECT * FROM slack_threads WHERE id = ?", (thread_id,))
            return row

        # One compare-and-set UPDATE: race-free without the serial lock.
        row = await self._single_write_op(set_ts)
        if row is None:
            raise NotFoundError(f"no thread {thread_id}")
        return _thread(row)

    async def delete_thread(self, thread_id: int) -> bool:
        """Forget a thread (its messages and outbox entries keep existing, unlinked)."""
        rows = await self._single_write_op(
            lambda db: _all(db, "DELETE FROM slack_threads WHERE id = ? RETURNING id", (thread_id,))
        )
        return bool(rows)


# What update_thread changes: one fixed SET list whose CASEs keep the columns not given
# (`thread_change_params` says which are), rather than SQL assembled from the arguments.
THREAD_CHANGES = """
    conversation_id = CASE WHEN :set_conversation_id
        THEN :conversation_id ELSE conversation_id END,
    channel_type = CASE WHEN :set_channel_type THEN :channel_type ELSE channel_type END,
    email_thread_id = CASE WHEN :set_email_thread_id
        THEN :email_thread_id ELSE email_thread_id END,
    subject = CASE WHEN :set_subject THEN :subject ELSE subject END,
    contact_label = CASE WHEN :set_contact_label THEN :contact_label ELSE contact_label END,
    updated_at = :now"""
_UPDATE_THREAD = f"UPDATE slack_threads SET {THREAD_CHANGES} WHERE id = :id RETURNING *"  # noqa: S608


def thread_change_params(
    thread_id: int,
    now: float,
    *,
    conversation_id: str | Unset | None = UNSET,
    channel_type: str | Unset | None = UNSET,
    email_thread_id: str | Unset | None = UNSET,
    subject: str | Unset | None = UNSET,
    contact_label: str | Unset | None = UNSET,
) -> dict[str, Any]:
    """The parameters of THREAD_CHANGES (and `:id`): only the columns given change."""
    given = {
        "conversation_id": conversation_id,
        "channel_type": channel_type,
        "email_thread_id": email_thread_id,
        "subject": subject,
        "contact_label": contact_label,
    }
    params: dict[str, Any] = {"id": thread_id, "now": now}
    for column, value in given.items():
        params[f"set_{column}"] = value is not UNSET
        params[column] = None if value is UNSET else value
    return params


def _thread(row: Row) -> ThreadRecord:
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
