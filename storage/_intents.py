"""Compose intents of the store: what a person asked for, saved before Slack is answered."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from storage._base import Conn, Row, StoreBase, _all, _one
from storage._records import ComposeIntent, IntentState


class IntentsMixin(StoreBase):
    """Compose intents: opened before the Slack ack, closed when handled."""

    async def open_intent(
        self,
        *,
        idempotency_key: str,
        kind: str,
        team_id: str,
        channel_id: str,
        slack_user_id: str,
        payload: Mapping[str, Any],
        response_url: str | None = None,
    ) -> bool:
        """Save what a person asked for before Slack is answered; False if the key exists.

        One small insert. A key seen before (a replayed request) keeps its row as it is,
        open or done, so a replay never reopens a finished compose.
        """
        if not idempotency_key:
            raise ValueError("idempotency_key must not be empty")
        payload_json = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        now = self._clock()
        # A Slack ack waits for this insert, so it goes before every store operation queued
        # (only the one running is waited for), and it is one statement in autocommit (atomic
        # on its own): no BEGIN ... COMMIT around it.
        rows = await self._urgent_op(
            lambda db: _all(
                db,
                """
                INSERT INTO compose_intents (idempotency_key, kind, team_id, channel_id,
                    slack_user_id, payload, response_url, state, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'open', ?)
                ON CONFLICT (idempotency_key) DO NOTHING
                RETURNING id
                """,
                (
                    idempotency_key,
                    kind,
                    team_id,
                    channel_id,
                    slack_user_id,
                    payload_json,
                    response_url,
                    now,
                ),
            )
        )
        return bool(rows)

    async def close_intent(self, idempotency_key: str, outcome: str) -> bool:
        """Mark an open intent done with `outcome`; False if none was open under that key."""
        now = self._clock()
        return await self._single_write_op(
            lambda db: _close_intent(db, idempotency_key, outcome, now)
        )

    async def get_intent(self, idempotency_key: str) -> ComposeIntent | None:
        row = await self._read_op(
            lambda db: _one(
                db, "SELECT * FROM compose_intents WHERE idempotency_key = ?", (idempotency_key,)
            )
        )
        return None if row is None else _intent(row)

    async def list_open_intents(
        self, *, created_before: float, limit: int = 100
    ) -> list[ComposeIntent]:
        """Open intents saved before `created_before`, oldest first."""
        rows = await self._read_op(
            lambda db: _all(
                db,
                "SELECT * FROM compose_intents WHERE state = 'open' AND created_at < ?"
                " ORDER BY created_at, id LIMIT ?",
                (created_before, limit),
            )
        )
        return [_intent(row) for row in rows]


# Closes the open intent :intent with :outcome at :closed_at (also a CTE of enqueue's insert).
CLOSE_INTENT = (
    "UPDATE compose_intents SET state = 'done', outcome = :outcome, closed_at = :closed_at"
    " WHERE idempotency_key = :intent AND state = 'open'"
)


async def _close_intent(db: Conn, idempotency_key: str, outcome: str, now: float) -> bool:
    rows = await _all(
        db,
        CLOSE_INTENT + " RETURNING id",
        {"outcome": outcome, "closed_at": now, "intent": idempotency_key},
    )
    return bool(rows)


def _intent(row: Row) -> ComposeIntent:
    return ComposeIntent(
        id=row["id"],
        idempotency_key=row["idempotency_key"],
        kind=row["kind"],
        team_id=row["team_id"],
        channel_id=row["channel_id"],
        slack_user_id=row["slack_user_id"],
        payload_json=row["payload"],
        response_url=row["response_url"],
        state=IntentState(row["state"]),
        outcome=row["outcome"],
        created_at=row["created_at"],
        closed_at=row["closed_at"],
    )
