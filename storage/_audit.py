"""The audit of sends: every outbox entry with its status history (outbox_status_history,
appended by the triggers of migration 12), without message bodies."""

from __future__ import annotations

import json

from storage._base import Conn, Row, StoreBase, _all
from storage._records import RESEND_KEY_PREFIX, AuditRow, OutboxState, StatusChange

# The payload is read for its quiet-hours mark only, in the database: the bodies it holds
# never leave it. (SQLite's json_extract gives JSON true as 1.)
_OVERRIDE = {
    "sqlite": "COALESCE(json_extract(o.payload, '$.quiet_hours_override') = 1, 0)",
    "postgresql": "COALESCE((CAST(o.payload AS jsonb) ->> 'quiet_hours_override') = 'true', false)",
}

# One statement (one snapshot on either backend): each send, then its history rows, oldest
# first; a send with no history yet has one row with NULL history columns.
_AUDIT = """
    SELECT o.id, o.idempotency_key, o.team_id, o.channel_id, o.slack_user_id, o.location_id,
        o.contact_id, o.message_type, o.state, o.ghl_message_id, o.ghl_email_message_id,
        o.ghl_message_ids, o.scheduled_at, o.created_at, {override} AS quiet_hours_override,
        h.status AS h_status, h.at AS h_at, h.detail AS h_detail
    FROM outbox AS o
    LEFT JOIN outbox_status_history AS h ON h.outbox_id = o.id
    WHERE o.created_at >= :since
      AND (CAST(:until AS DOUBLE PRECISION) IS NULL OR o.created_at < :until)
      AND (CAST(:location_id AS TEXT) IS NULL OR o.location_id = :location_id)
    ORDER BY o.created_at, o.id, h.id
"""


class AuditMixin(StoreBase):
    """Read-only: the sends made in a time window, for `ghl-bridge audit`."""

    async def audit_rows(
        self, since: float, until: float | None = None, location_id: str | None = None
    ) -> list[AuditRow]:
        """The sends made at or after `since` and before `until` (None: up to now), of one
        sub-account or all, ordered by when they were made, each with its history."""
        params = {"since": since, "until": until, "location_id": location_id}

        async def read(db: Conn) -> list[Row]:
            return await _all(db, _AUDIT.format(override=_OVERRIDE[db.dialect]), params)

        rows = await self._read_op(read)
        audit: list[AuditRow] = []
        history: list[StatusChange] = []
        for index, row in enumerate(rows):
            if row["h_status"] is not None:
                history.append(StatusChange(row["h_status"], row["h_at"], row["h_detail"]))
            if index + 1 < len(rows) and rows[index + 1]["id"] == row["id"]:
                continue
            audit.append(_audit_row(row, tuple(history)))
            history = []
        return audit


def _audit_row(row: Row, history: tuple[StatusChange, ...]) -> AuditRow:
    key: str = row["idempotency_key"]
    original = key.removeprefix(RESEND_KEY_PREFIX)
    ids = [row["ghl_message_id"], row["ghl_email_message_id"], *json.loads(row["ghl_message_ids"])]
    return AuditRow(
        outbox_id=row["id"],
        created_at=row["created_at"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        slack_user_id=row["slack_user_id"],
        location_id=row["location_id"],
        contact_id=row["contact_id"],
        message_type=row["message_type"],
        state=OutboxState(row["state"]),
        ghl_message_ids=tuple(dict.fromkeys(str(i) for i in ids if i)),
        scheduled_at=row["scheduled_at"],
        quiet_hours_override=bool(row["quiet_hours_override"]),
        resend_of=int(original) if original != key and original.isdigit() else None,
        history=history,
    )
