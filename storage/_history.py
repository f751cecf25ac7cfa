"""Earlier messages: the HighLevel messages a thread showed as history (migration 14).

A thread pages back through its conversation's history one click at a time. Where the paging
stopped is the thread's `history_cursor` (HighLevel's `lastMessageId`), `history_done` says it
reached the start, and `history_busy_until` is a short lease: one click at a time, across all
instances, works on a thread's history. Each message posted as history has a `thread_history`
row, inserted before its post by whoever wins the insert, so no message is shown twice even
when a lease ran out under a slow holder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from storage._base import Conn, Row, StoreBase, _all, _one


@dataclass(frozen=True, slots=True)
class HistoryLease:
    """A click's hold on a thread's history: where paging goes on from, and until when it is
    this click's (`until` also tells this lease from a later one)."""

    thread_id: int
    cursor: str | None
    until: float


@dataclass(frozen=True, slots=True)
class HistoryState:
    """A thread's paging through its history, as stored."""

    thread_id: int
    cursor: str | None
    done: bool
    busy_until: float | None


class HistoryStore(Protocol):
    """The store's history operations (part of `Store`)."""

    async def claim_history(self, thread_id: int, *, seconds: float) -> HistoryLease | None:
        """Hold the thread's history for `seconds`; None when it is done, held by another
        click whose lease has not run out, or the thread is unknown (see `history_state`)."""
        ...

    async def renew_history(self, lease: HistoryLease, *, seconds: float) -> HistoryLease | None:
        """The lease, `seconds` from now; None when it is no longer this one."""
        ...

    async def finish_history(self, lease: HistoryLease, *, cursor: str | None, done: bool) -> bool:
        """Store where paging goes on from (and whether it reached the start) and free the
        thread's history; False, changing nothing, when the lease was no longer this one."""
        ...

    async def release_history(self, lease: HistoryLease) -> None:
        """Free the thread's history without moving its cursor (the click failed)."""
        ...

    async def history_state(self, thread_id: int) -> HistoryState | None:
        """The thread's paging state; None for an unknown thread."""
        ...

    async def shown_in_thread(self, thread_id: int) -> frozenset[str]:
        """HighLevel ids (message and email ids) the thread shows: posted or sent there by the
        bridge (`messages`), or shown as history."""
        ...

    async def claim_history_message(
        self, thread_id: int, ghl_message_id: str, *, also: tuple[str, ...] = ()
    ) -> bool:
        """Mark one HighLevel message shown as history in the thread, before it is posted.
        True for the one caller that may post it; False when it is shown already, as history
        or as one of the thread's messages (`ghl_message_id` or any of `also`, its other ids)."""
        ...

    async def unclaim_history_message(self, thread_id: int, ghl_message_id: str) -> None:
        """Its post certainly failed: a later click may show it."""
        ...

    async def shown_as_history(self, thread_id: int, ghl_message_ids: tuple[str, ...]) -> bool:
        """Whether "Earlier messages" showed one of these ids in the thread already."""
        ...


class HistoryMixin(StoreBase):
    """`HistoryStore` on both backends."""

    async def claim_history(self, thread_id: int, *, seconds: float) -> HistoryLease | None:
        now = self._clock()
        until = now + seconds
        # One compare-and-set UPDATE: of two clicks (any instances) one gets the row.
        row = await self._single_write_op(
            lambda db: _one(
                db,
                """
                UPDATE slack_threads SET history_busy_until = :until
                WHERE id = :id AND history_done = 0
                  AND (history_busy_until IS NULL OR history_busy_until < :now)
                RETURNING history_cursor
                """,
                {"until": until, "id": thread_id, "now": now},
            )
        )
        if row is None:
            return None
        return HistoryLease(thread_id=thread_id, cursor=row["history_cursor"], until=until)

    async def renew_history(self, lease: HistoryLease, *, seconds: float) -> HistoryLease | None:
        until = self._clock() + seconds
        row = await self._single_write_op(
            lambda db: _one(
                db,
                "UPDATE slack_threads SET history_busy_until = :until"
                " WHERE id = :id AND history_busy_until = :mine RETURNING id",
                {"until": until, "id": lease.thread_id, "mine": lease.until},
            )
        )
        if row is None:
            return None
        return HistoryLease(thread_id=lease.thread_id, cursor=lease.cursor, until=until)

    async def finish_history(self, lease: HistoryLease, *, cursor: str | None, done: bool) -> bool:
        row = await self._single_write_op(
            lambda db: _one(
                db,
                "UPDATE slack_threads SET history_cursor = :cursor, history_done = :done,"
                " history_busy_until = NULL"
                " WHERE id = :id AND history_busy_until = :mine RETURNING id",
                {
                    "cursor": cursor,
                    "done": 1 if done else 0,
                    "id": lease.thread_id,
                    "mine": lease.until,
                },
            )
        )
        return row is not None

    async def release_history(self, lease: HistoryLease) -> None:
        await self._single_write_op(
            lambda db: db.execute(
                "UPDATE slack_threads SET history_busy_until = NULL"
                " WHERE id = ? AND history_busy_until = ?",
                (lease.thread_id, lease.until),
            )
        )

    async def history_state(self, thread_id: int) -> HistoryState | None:
        row = await self._read_op(
            lambda db: _one(
                db,
                "SELECT history_cursor, history_done, history_busy_until FROM slack_threads"
                " WHERE id = ?",
                (thread_id,),
            )
        )
        if row is None:
            return None
        return HistoryState(
            thread_id=thread_id,
            cursor=row["history_cursor"],
            done=bool(row["history_done"]),
            busy_until=row["history_busy_until"],
        )

    async def shown_in_thread(self, thread_id: int) -> frozenset[str]:
        rows = await self._read_op(
            lambda db: _all(
                db,
                """
                SELECT ghl_message_id AS id FROM thread_history WHERE thread_id = :thread
                UNION
                SELECT ghl_message_id FROM messages
                WHERE thread_id = :thread AND ghl_message_id IS NOT NULL
                UNION
                SELECT ghl_email_message_id FROM messages
                WHERE thread_id = :thread AND ghl_email_message_id IS NOT NULL
                """,
                {"thread": thread_id},
            )
        )
        return frozenset(str(row[0]) for row in rows)

    async def claim_history_message(
        self, thread_id: int, ghl_message_id: str, *, also: tuple[str, ...] = ()
    ) -> bool:
        now = self._clock()
        ids = list(dict.fromkeys((ghl_message_id, *also)))

        async def claim(db: Conn) -> Row | None:
            # One statement decides (race-free without the serial lock): the insert happens
            # only if the thread does not show the message already, and only once.
            placeholders = ", ".join(f":id{index}" for index in range(len(ids)))
            values = {f"id{index}": value for index, value in enumerate(ids)}
            return await _one(
                db,
                f"""
                INSERT INTO thread_history (thread_id, ghl_message_id, shown_at)
                SELECT CAST(:thread AS INTEGER), CAST(:key AS TEXT),
                    CAST(:now AS DOUBLE PRECISION)
                WHERE NOT EXISTS (
                    SELECT 1 FROM messages WHERE thread_id = :thread
                      AND (ghl_message_id IN ({placeholders})
                           OR ghl_email_message_id IN ({placeholders}))
                )
                ON CONFLICT (thread_id, ghl_message_id) DO NOTHING
                RETURNING ghl_message_id
                """,  # noqa: S608 - only numbered placeholders are formatted in
                {"thread": thread_id, "key": ghl_message_id, "now": now, **values},
            )

        return await self._single_write_op(claim) is not None

    async def shown_as_history(self, thread_id: int, ghl_message_ids: tuple[str, ...]) -> bool:
        ids = [i for i in dict.fromkeys(ghl_message_ids) if i]
        if not ids:
            return False
        placeholders = ", ".join("?" for _ in ids)
        row = await self._read_op(
            lambda db: _one(
                db,
                f"SELECT 1 FROM thread_history WHERE thread_id = ?"  # noqa: S608 - placeholders only
                f" AND ghl_message_id IN ({placeholders})",
                (thread_id, *ids),
            )
        )
        return row is not None

    async def unclaim_history_message(self, thread_id: int, ghl_message_id: str) -> None:
        await self._single_write_op(
            lambda db: db.execute(
                "DELETE FROM thread_history WHERE thread_id = ? AND ghl_message_id = ?",
                (thread_id, ghl_message_id),
            )
        )
