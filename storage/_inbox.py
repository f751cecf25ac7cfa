"""A conversation's state on its thread root: waiting, unread, starred, assignee (migration 14).

Each write is one conditional UPDATE ... RETURNING (race-free on PostgreSQL, one round trip;
SQLite serialises it like any write), and each says whether it changed what the root shows,
so only the instance whose write changed it adds or removes a reaction.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Protocol

from storage._base import Conn, Params, Row, StoreBase, _one
from storage._inbound import SET_INBOUND_STATE, inbound_state_params
from storage._records import UNSET, InboundState, Unset
from storage._threads import THREAD_CHANGES, thread_change_params


@dataclass(frozen=True, slots=True)
class ConversationState:
    """What a thread root shows of its conversation, and where the root is."""

    thread_id: int
    team_id: str
    channel_id: str
    thread_ts: str | None
    location_id: str
    contact_id: str
    conversation_id: str | None
    waiting_since: float | None
    """When the first customer message not answered yet arrived (None: nobody waits)."""
    last_inbound_at: float | None
    unread_count: int | None
    """HighLevel's unread count as last set from Slack or told by a webhook (None: unknown)."""
    starred: bool
    assigned_to: str | None

    @property
    def waiting(self) -> bool:
        return self.waiting_since is not None

    @property
    def unread(self) -> bool:
        return (self.unread_count or 0) > 0


@dataclass(frozen=True, slots=True)
class StateChange:
    """A write's outcome: the state after it, and whether it changed (so the root must too)."""

    state: ConversationState
    changed: bool


@dataclass(frozen=True, slots=True)
class WaitingChange:
    """What a message shown in a thread does to its wait: a customer wrote at `at` (the
    wait starts, if it had not), or someone answered (`at` None: the wait ends)."""

    at: float | None

    @classmethod
    def customer_wrote(cls, at: float) -> WaitingChange:
        return cls(at)

    @classmethod
    def answered(cls) -> WaitingChange:
        return cls(None)


class InboxStore(Protocol):
    """The store's inbox operations (part of `Store`)."""

    async def conversation_state(self, thread_id: int) -> ConversationState | None:
        """The thread's conversation state; None for no such thread."""
        ...

    async def mark_waiting(self, thread_id: int, at: float) -> StateChange | None:
        """A customer message arrived at `at`: last_inbound_at moves forward to it, and
        waiting_since is set to it unless already set (`changed`: it was not). None: no thread."""
        ...

    async def clear_waiting(self, thread_id: int) -> StateChange | None:
        """Someone answered: waiting_since cleared (`changed`: it was set). None: no thread."""
        ...

    async def record_shown(
        self,
        message_id: int,
        *,
        slack_channel_id: str,
        slack_ts: str,
        thread_id: int,
        waiting: WaitingChange | None = None,
        finishes: int | None = None,
        conversation_id: str | Unset = UNSET,
        channel_type: str | Unset = UNSET,
        email_thread_id: str | Unset = UNSET,
        subject: str | Unset = UNSET,
    ) -> StateChange | None:
        """A HighLevel message is posted in its thread, all in one write: the post on the
        message (`attach_slack_ts`; one that has a post keeps it), what the thread learnt
        from it (`update_thread`), its wait (`mark_waiting`, `clear_waiting`; `changed`
        says whether that changed, always False without `waiting`), and, with `finishes`,
        the end of the inbound event that showed it (`finish_inbound`), when nothing of it
        is left to do. None: no thread (the rest is written all the same)."""
        ...

    async def set_conversation_flags(
        self,
        thread_id: int,
        *,
        unread_count: int | None = None,
        starred: bool | None = None,
    ) -> StateChange | None:
        """Set the unread count and/or the star (None leaves one as it is); `changed`: what
        the root shows (unread or not, starred or not) changed. None: no thread."""
        ...

    async def set_assigned_to(self, thread_id: int, user_id: str | None) -> StateChange | None:
        """The HighLevel user the contact was assigned to from Slack. None: no thread."""
        ...


class InboxMixin(StoreBase):
    """`InboxStore` on both backends.

    A write that must say whether it changed what the root shows is two UPDATEs: the first
    only where it changes it (so its RETURNING says it did), the other, when the first
    matched nothing, for the rest. Each is race-free on its own (on PostgreSQL a concurrent
    one waits for the row and looks at it again), so no serial lock. On SQLite they run in
    one transaction; on PostgreSQL in one statement (`_pg_change`).
    """

    async def conversation_state(self, thread_id: int) -> ConversationState | None:
        row = await self._read_op(lambda db: _one(db, _SELECT, {"id": thread_id}))
        return None if row is None else _state(row)

    async def _change(self, changing: str, otherwise: str, params: Params) -> StateChange | None:
        async def change(db: Conn) -> StateChange | None:
            if db.dialect == "postgresql":
                # Both in one statement: a round trip each, plus BEGIN and COMMIT, cost more
                # than the statements themselves.
                row = await _one(db, _pg_change(changing, otherwise), params)
                if row is None:
                    return None
                return StateChange(_state(row), changed=bool(row["changed_now"]))
            row = await _one(db, changing, params)
            if row is not None:
                return StateChange(_state(row), changed=True)
            row = await _one(db, otherwise, params)
            return None if row is None else StateChange(_state(row), changed=False)

        return await self._single_write_op(change)

    async def mark_waiting(self, thread_id: int, at: float) -> StateChange | None:
        return await self._change(_START_WAITING, _NOTE_INBOUND, {"id": thread_id, "at": at})

    async def clear_waiting(self, thread_id: int) -> StateChange | None:
        return await self._change(_CLEAR_WAITING, _SELECT, {"id": thread_id})

    async def record_shown(
        self,
        message_id: int,
        *,
        slack_channel_id: str,
        slack_ts: str,
        thread_id: int,
        waiting: WaitingChange | None = None,
        finishes: int | None = None,
        conversation_id: str | Unset = UNSET,
        channel_type: str | Unset = UNSET,
        email_thread_id: str | Unset = UNSET,
        subject: str | Unset = UNSET,
    ) -> StateChange | None:
        now = self._clock()
        params = thread_change_params(
            thread_id,
            now,
            conversation_id=conversation_id,
            channel_type=channel_type,
            email_thread_id=email_thread_id,
            subject=subject,
        )
        params.update(message=message_id, channel=slack_channel_id, ts=slack_ts)
        writes: tuple[str, ...] = (_ATTACH_POST,)
        if finishes is not None:
            writes += (SET_INBOUND_STATE,)
            params.update(
                inbound_state_params(finishes, InboundState.DONE, now=now, owner=self._instance_id)
            )
        if waiting is None:
            changing, otherwise = None, _LEARN
        elif waiting.at is None:
            changing, otherwise = _LEARN_CLEAR_WAITING, _LEARN
        else:
            changing, otherwise = _LEARN_START_WAITING, _LEARN_NOTE_INBOUND
            params["at"] = waiting.at

        async def record(db: Conn) -> StateChange | None:
            if db.dialect == "postgresql":
                # The post and the event's end ride along as parts of the same statement.
                if changing is None:
                    row = await _one(db, _pg_after(writes, otherwise), params)
                    return None if row is None else StateChange(_state(row), changed=False)
                row = await _one(db, _pg_change(changing, otherwise, writes), params)
                if row is None:
                    return None
                return StateChange(_state(row), changed=bool(row["changed_now"]))
            for write in writes:
                await db.execute(write, params)
            row = await _one(db, changing, params) if changing else None
            if row is not None:
                return StateChange(_state(row), changed=True)
            row = await _one(db, otherwise, params)
            return None if row is None else StateChange(_state(row), changed=False)

        return await self._single_write_op(record)

    async def set_conversation_flags(
        self,
        thread_id: int,
        *,
        unread_count: int | None = None,
        starred: bool | None = None,
    ) -> StateChange | None:
        return await self._change(
            _FLAGS_SHOWN,
            _FLAGS,
            {
                "id": thread_id,
                "set_unread": unread_count is not None,
                "unread": unread_count if unread_count is not None else 0,
                "set_starred": starred is not None,
                "starred": int(bool(starred)),
            },
        )

    async def set_assigned_to(self, thread_id: int, user_id: str | None) -> StateChange | None:
        return await self._change(_ASSIGN, _SELECT, {"id": thread_id, "user": user_id})


# The columns of a ConversationState, as each statement returns them.
_STATE = """id, team_id, channel_id, thread_ts, location_id, contact_id, conversation_id,
    waiting_since, last_inbound_at, unread_count, starred, assigned_to"""
_WHERE_ID = "WHERE id = :id"
_SELECT = f"SELECT {_STATE} FROM slack_threads {_WHERE_ID}"  # noqa: S608 - constants only


def _thread_update(sets: str, condition: str = "") -> str:
    """An UPDATE of one thread (`:id`) that returns its state; `condition` narrows it."""
    where = f"{_WHERE_ID} AND {condition}" if condition else _WHERE_ID
    return f"UPDATE slack_threads SET {sets} {where} RETURNING {_STATE}"  # noqa: S608 - constants


_LAST_INBOUND = """last_inbound_at = CASE WHEN last_inbound_at IS NULL OR last_inbound_at < :at
    THEN :at ELSE last_inbound_at END"""
_START_WAITING = _thread_update(f"waiting_since = :at, {_LAST_INBOUND}", "waiting_since IS NULL")
_NOTE_INBOUND = _thread_update(_LAST_INBOUND)
_CLEAR_WAITING = _thread_update("waiting_since = NULL", "waiting_since IS NOT NULL")
# record_shown's: the same, each with what the thread learnt from a message shown in it.
_LEARN = _thread_update(THREAD_CHANGES)
_LEARN_START_WAITING = _thread_update(
    f"{THREAD_CHANGES}, waiting_since = :at, {_LAST_INBOUND}", "waiting_since IS NULL"
)
_LEARN_NOTE_INBOUND = _thread_update(f"{THREAD_CHANGES}, {_LAST_INBOUND}")
_LEARN_CLEAR_WAITING = _thread_update(
    f"{THREAD_CHANGES}, waiting_since = NULL", "waiting_since IS NOT NULL"
)
# And the post on the message (as attach_slack_ts: a message's post, once made, is kept).
_ATTACH_POST = """
UPDATE messages SET slack_channel_id = :channel, slack_ts = :ts, updated_at = :now
WHERE id = :message AND slack_ts IS NULL
"""

# The first only where what the root shows (unread or not, starred or not) changes.
_FLAGS_SHOWN = f"""
UPDATE slack_threads SET
    unread_count = CASE WHEN :set_unread THEN :unread ELSE unread_count END,
    starred = CASE WHEN :set_starred THEN :starred ELSE starred END
WHERE id = :id
  AND ((:set_unread AND (COALESCE(unread_count, 0) > 0) <> (:unread > 0))
       OR (:set_starred AND starred <> :starred))
RETURNING {_STATE}
"""  # noqa: S608 - only this module's constants are formatted in
_FLAGS = f"""
UPDATE slack_threads SET
    unread_count = CASE WHEN :set_unread THEN :unread ELSE unread_count END,
    starred = CASE WHEN :set_starred THEN :starred ELSE starred END
WHERE id = :id
RETURNING {_STATE}
"""  # noqa: S608 - only this module's constants are formatted in
_ASSIGN = f"""
UPDATE slack_threads SET assigned_to = CAST(:user AS TEXT)
WHERE id = :id
  AND (CASE WHEN assigned_to IS NULL THEN CAST(:user AS TEXT) IS NOT NULL
       ELSE CAST(:user AS TEXT) IS NULL OR assigned_to <> CAST(:user AS TEXT) END)
RETURNING {_STATE}
"""  # noqa: S608 - only this module's constants are formatted in


@functools.cache
def _pg_change(changing: str, otherwise: str, writes: tuple[str, ...] = ()) -> str:
    """`changing` and, when it matched nothing, `otherwise` as one PostgreSQL statement
    (data-modifying WITH); its rows carry `changed_now`. `otherwise` runs only where the
    first returned no row, so the row is never written twice by the statement. `writes`
    (of other tables' rows) go first, as parts of the same statement."""
    if otherwise.count(_WHERE_ID) != 1:
        raise ValueError("the fallback statement must select its row by id alone")
    guard = " AND NOT EXISTS (SELECT 1 FROM changed)"
    guarded = otherwise.replace(_WHERE_ID, _WHERE_ID + guard)
    return (
        f"WITH {_parts(writes)}changed AS ({changing}), other AS ({guarded})"  # noqa: S608
        " SELECT *, TRUE AS changed_now FROM changed"
        " UNION ALL SELECT *, FALSE AS changed_now FROM other"
    )


@functools.cache
def _pg_after(writes: tuple[str, ...], statement: str) -> str:
    """`statement` (an UPDATE ... RETURNING) with `writes` of other tables' rows first, as
    one PostgreSQL statement."""
    return f"WITH {_parts(writes)}learnt AS ({statement}) SELECT * FROM learnt"  # noqa: S608


def _parts(writes: tuple[str, ...]) -> str:
    """`writes` as data-modifying WITH parts (each followed by a comma): PostgreSQL runs
    them whether or not the rest of the statement reads them."""
    return "".join(f"write{n} AS ({sql}), " for n, sql in enumerate(writes))


def _state(row: Row) -> ConversationState:
    unread = row["unread_count"]
    return ConversationState(
        thread_id=row["id"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        thread_ts=row["thread_ts"],
        location_id=row["location_id"],
        contact_id=row["contact_id"],
        conversation_id=row["conversation_id"],
        waiting_since=row["waiting_since"],
        last_inbound_at=row["last_inbound_at"],
        unread_count=None if unread is None else int(unread),
        starred=bool(row["starred"]),
        assigned_to=row["assigned_to"],
    )
