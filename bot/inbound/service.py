"""InboundService: stores each HighLevel event once, before it is answered."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.inbound.messages import IncomingMessage, from_webhook
from storage import Store

log = logging.getLogger(__name__)

DEDUPE_TTL_SECONDS = 14 * 86_400
MESSAGE_EVENTS = frozenset({"InboundMessage", "OutboundMessage"})
# HighLevel may deliver a burst of webhooks concurrently, so they can be stored out of the
# order the messages were sent. A webhook is first processed this long after it is stored:
# the window lets the earlier ones of a burst land, so the per-contact order by dateAdded
# (`sort_at`) holds for them. Polled messages are stored oldest first and need no window.
INBOUND_SETTLE_SECONDS = 0.5


def conversation_key(location_id: str, contact_id: str) -> str:
    """What the inbound queue orders and serialises events by: one contact of a sub-account.

    Not the conversationId: HighLevel leaves it out of some events (a status update of the
    same message may carry it or not), and a contact's conversations in one sub-account are
    one Slack thread anyway.
    """
    return f"{location_id}:{contact_id}"


class InboundService:
    """Takes HighLevel events in: stores each once and wakes the worker."""

    def __init__(
        self,
        *,
        store: Store,
        wake_worker: Callable[[], None],
        location_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._wake_worker = wake_worker
        # For an event that does not say which sub-account it is about.
        self._location_id = location_id or ""
        self._clock = clock

    async def accept_webhook(
        self, webhook_id: str, event_type: str, payload: Mapping[str, Any]
    ) -> bool:
        """Store a verified webhook; False when it was a duplicate or not about a message."""
        if event_type not in MESSAGE_EVENTS:
            log.debug("ignoring HighLevel event %s", event_type or "(no type)")
            return False
        message = from_webhook(payload)
        if message is None:
            log.debug("ignoring %s without messageId/contactId", event_type)
            return False
        return await self._store_message(
            message,
            "webhook",
            [f"webhook:{webhook_id}"],
            not_before=self._clock() + INBOUND_SETTLE_SECONDS,
        )

    async def accept_polled(self, message: IncomingMessage) -> bool:
        """Store a polled message (the poller hands each conversation's over oldest first)."""
        return await self._store_message(message, "poll", [], not_before=None)

    def key_for(self, message: IncomingMessage) -> str:
        return conversation_key(message.location_id or self._location_id, message.contact_id)

    async def _store_message(
        self, message: IncomingMessage, source: str, keys: list[str], *, not_before: float | None
    ) -> bool:
        event = await self._store.enqueue_inbound(
            source=source,
            event_type=f"{message.direction}_message",
            conversation_key=self.key_for(message),
            payload=message.to_payload(),
            dedupe_keys=[*keys, f"message:{message.key_id}:{message.status or ''}"],
            ttl_seconds=DEDUPE_TTL_SECONDS,
            sort_at=message.date_added,
            not_before=not_before,
        )
        if event is None:
            return False
        self._wake_worker()
        return True
