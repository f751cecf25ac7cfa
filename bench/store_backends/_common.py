"""What the variants share: settings, the operations measured, and rows made entries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from storage import (
    InboundEvent,
    NotFoundError,
    OutboxEntry,
    OutboxState,
    OutboxStateError,
)

POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
TEAM_ID = "T0BENCH"
CHANNEL_ID = "C0BENCH"
SLACK_USER_ID = "U0BENCH"
LOCATION_ID = "benchLocation0000001"
CONTACTS = 50  # sends and events spread over this many contacts, each with its thread
DEDUPE_TTL = 7 * 86_400.0
LIMIT = 0.15  # the cost in throughput above which two backends are kept

_MARK_SENT_FROM = frozenset({OutboxState.SENDING, OutboxState.UNKNOWN})


class _BenchStore(Protocol):
    """The four operations measured, as SqliteStore has them."""

    async def enqueue_inbound(
        self,
        *,
        source: str,
        event_type: str,
        conversation_key: str,
        payload: Mapping[str, Any],
        dedupe_keys: Sequence[str],
        ttl_seconds: float,
    ) -> InboundEvent | None: ...

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
    ) -> tuple[OutboxEntry, bool]: ...

    async def claim_next(self, now: float | None = None) -> OutboxEntry | None: ...

    async def mark_sent(
        self,
        outbox_id: int,
        *,
        conversation_id: str | None,
        ghl_message_id: str | None,
    ) -> OutboxEntry: ...


def _sent_ids(ghl_message_id: str | None, ghl_message_ids: Sequence[str]) -> list[str]:
    return list(dict.fromkeys([*([ghl_message_id] if ghl_message_id else []), *ghl_message_ids]))


def _check_mark_sent(outbox_id: int, state: str | None) -> None:
    if state is None:
        raise NotFoundError(f"no outbox entry {outbox_id}")
    if OutboxState(state) not in _MARK_SENT_FROM:
        raise OutboxStateError(outbox_id, state, "mark_sent")
