"""The Home tab's reads: conversations waiting for a reply (migration 14).

Every read is scoped by Slack workspace (team_id) and by the sub-accounts (location ids) the
caller says the person may see: a thread of another workspace or sub-account is never read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from storage._base import Row, StoreBase, _all

# Per sub-account, its waiting threads oldest first (with their place and how many wait),
# and for each one shown, the newest customer message of its contact in that sub-account
# (inbound_events are keyed "<location_id>:<contact_id>", bot/inbound/service.py). The
# correlated look-up runs only for the rows kept by :shown. A customer's message is an
# InboundMessage webhook's body as it arrived, or a polled `inbound_message`. `{locations}`
# is a list of numbered parameters (:location_0, …), formatted in by `_waiting_sql`.
_WAITING = """
WITH waiting AS (
    SELECT t.id, t.team_id, t.channel_id, t.thread_ts, t.location_id, t.contact_id,
        t.contact_label, t.channel_type, t.waiting_since, t.last_inbound_at, t.unread_count,
        t.starred, t.assigned_to,
        ROW_NUMBER() OVER (PARTITION BY t.location_id ORDER BY t.waiting_since, t.id)
            AS position,
        COUNT(*) OVER (PARTITION BY t.location_id) AS waiting_count
    FROM slack_threads AS t
    WHERE t.team_id = :team_id
      AND t.waiting_since IS NOT NULL
      AND t.thread_ts IS NOT NULL
      AND t.location_id IN ({locations})
),
shown AS (
    SELECT * FROM waiting WHERE position <= :shown
)
SELECT shown.*, e.event_type AS last_event_type, e.payload AS last_payload,
    e.sort_at AS last_message_at
FROM shown
LEFT JOIN inbound_events AS e ON e.id = (
    SELECT newest.id FROM inbound_events AS newest
    WHERE newest.conversation_key = shown.location_id || ':' || shown.contact_id
      AND newest.event_type IN ('InboundMessage', 'inbound_message')
    ORDER BY newest.sort_at DESC, newest.id DESC
    LIMIT 1
)
ORDER BY shown.location_id, shown.waiting_since, shown.id
"""


def _waiting_sql(count: int) -> str:
    locations = ", ".join(f":location_{index}" for index in range(count))
    return _WAITING.format(locations=locations)


@dataclass(frozen=True, slots=True)
class WaitingThread:
    """A conversation waiting for a reply, as the Home tab lists it.

    `last_payload` is the stored event of the contact's newest message (JSON text as stored,
    `{"purged": true}` once MESSAGE_RETENTION_DAYS removed it; None when none is stored), of
    type `last_event_type`. `waiting_count` is how many of the sub-account's threads in the
    workspace wait, shown or not.
    """

    thread_id: int
    team_id: str
    channel_id: str
    thread_ts: str
    location_id: str
    contact_id: str
    contact_label: str | None
    channel_type: str | None
    waiting_since: float
    last_inbound_at: float | None
    unread_count: int | None
    starred: bool
    assigned_to: str | None
    waiting_count: int
    last_event_type: str | None
    last_payload: str | None
    last_message_at: float | None


class HomeStore(Protocol):
    """The store's home operations (part of `Store`)."""

    async def waiting_threads(
        self, team_id: str, location_ids: Sequence[str], *, per_location: int
    ) -> list[WaitingThread]:
        """The threads of workspace `team_id` and of these sub-accounts that wait for a
        reply, at most `per_location` of each (the oldest waiting first), ordered by
        sub-account then oldest first."""
        ...


class HomeMixin(StoreBase):
    """`HomeStore` on both backends."""

    async def waiting_threads(
        self, team_id: str, location_ids: Sequence[str], *, per_location: int
    ) -> list[WaitingThread]:
        if per_location < 1:
            raise ValueError(f"per_location must be at least 1, got {per_location}")
        locations = list(dict.fromkeys(location_ids))
        if not locations:
            return []
        params: dict[str, object] = {"team_id": team_id, "shown": per_location}
        params |= {f"location_{index}": value for index, value in enumerate(locations)}
        sql = _waiting_sql(len(locations))
        rows = await self._read_op(lambda db: _all(db, sql, params))
        return [_waiting(row) for row in rows]


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _waiting(row: Row) -> WaitingThread:
    unread = row["unread_count"]
    return WaitingThread(
        thread_id=int(row["id"]),
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        thread_ts=row["thread_ts"],
        location_id=row["location_id"],
        contact_id=row["contact_id"],
        contact_label=row["contact_label"],
        channel_type=row["channel_type"],
        waiting_since=float(row["waiting_since"]),
        last_inbound_at=_optional_float(row["last_inbound_at"]),
        unread_count=None if unread is None else int(unread),
        starred=bool(row["starred"]),
        assigned_to=row["assigned_to"],
        waiting_count=int(row["waiting_count"]),
        last_event_type=row["last_event_type"],
        last_payload=row["last_payload"],
        last_message_at=_optional_float(row["last_message_at"]),
    )
