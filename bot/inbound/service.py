"""InboundService: stores each HighLevel event once, before it is answered."""

from __future__ import annotations

import asyncio
import codecs
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.inbound.messages import (
    MESSAGE_EVENTS,
    IncomingMessage,
    MessageRef,
    from_webhook,
    ref_of_webhook,
)
from bot.inbox.waiting import UNREAD_EVENT, unread_update_from
from storage import Store

log = logging.getLogger(__name__)

__all__ = ["DEDUPE_TTL_SECONDS", "INBOUND_SETTLE_SECONDS", "MESSAGE_EVENTS", "InboundService"]

DEDUPE_TTL_SECONDS = 14 * 86_400
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
        # The worker is woken once at this loop time, when the webhooks stored just before
        # fall due (see `_wake_when_due`); None when no wake is waiting.
        self._wake_at: float | None = None

    async def accept_webhook(
        self,
        webhook_id: str,
        event_type: str,
        payload: Mapping[str, Any],
        raw_body: bytes | None = None,
    ) -> bool:
        """Store a verified webhook; False when it was a duplicate or not about a message.

        `raw_body`: the bytes that were verified, of which `payload` is the parsed form. They
        are stored as they arrived (the worker parses them again), never re-encoded.
        """
        if event_type == UNREAD_EVENT:
            return await self._accept_unread(webhook_id, payload, raw_body)
        if event_type not in MESSAGE_EVENTS:
            log.debug("ignoring HighLevel event %s", event_type or "(no type)")
            return False
        message = ref_of_webhook(payload)
        if message is None:
            log.debug("ignoring %s without messageId/contactId", event_type)
            return False
        body = _text(raw_body)
        stored: tuple[str, str | dict[str, Any]]
        if body is not None:
            stored = (event_type, body)
        elif (whole := from_webhook(payload)) is not None:  # always, as `message` is not None
            # Stored re-encoded, as the message it holds.
            stored = (f"{whole.direction}_message", whole.to_payload())
        else:
            return False
        return await self._store_message(
            message,
            "webhook",
            [f"webhook:{webhook_id}"],
            not_before=self._clock() + INBOUND_SETTLE_SECONDS,
            stored=stored,
        )

    async def _accept_unread(
        self, webhook_id: str, payload: Mapping[str, Any], raw_body: bytes | None
    ) -> bool:
        """A ConversationUnreadUpdate: stored like a message's webhook, in its contact's
        order (`bot.inbox.waiting` carries it out)."""
        update = unread_update_from(payload)
        if update is None:
            log.debug("ignoring %s without id/contactId", UNREAD_EVENT)
            return False
        body = _text(raw_body)
        not_before = self._clock() + INBOUND_SETTLE_SECONDS
        event = await self._store.enqueue_inbound(
            source="webhook",
            event_type=UNREAD_EVENT,
            conversation_key=conversation_key(update.location_id, update.contact_id),
            payload=body if body is not None else dict(payload),
            dedupe_keys=[f"webhook:{webhook_id}"],
            ttl_seconds=DEDUPE_TTL_SECONDS,
            sort_at=update.at,
            not_before=not_before,
        )
        if event is None:
            return False
        self._wake_when_due(not_before - self._clock())
        return True

    async def accept_polled(self, message: IncomingMessage) -> bool:
        """Store a polled message (the poller hands each conversation's over oldest first)."""
        return await self._store_message(
            message,
            "poll",
            [],
            not_before=None,
            stored=(f"{message.direction}_message", message.to_payload()),
        )

    def key_for(self, message: IncomingMessage | MessageRef) -> str:
        return conversation_key(message.location_id or self._location_id, message.contact_id)

    async def _store_message(
        self,
        message: IncomingMessage | MessageRef,
        source: str,
        keys: list[str],
        *,
        not_before: float | None,
        stored: tuple[str, str | dict[str, Any]],
    ) -> bool:
        """`stored`: the event type and the payload to store (a webhook's JSON text, see
        MESSAGE_EVENTS, or a polled message's `to_payload()`)."""
        event_type, payload = stored
        event = await self._store.enqueue_inbound(
            source=source,
            event_type=event_type,
            conversation_key=self.key_for(message),
            payload=payload,
            dedupe_keys=[*keys, f"message:{message.key_id}:{message.status or ''}"],
            ttl_seconds=DEDUPE_TTL_SECONDS,
            sort_at=message.date_added,
            not_before=not_before,
        )
        if event is None:
            return False
        if not_before is None:
            self._wake_worker()
        else:
            self._wake_when_due(not_before - self._clock())
        return True

    def _wake_when_due(self, delay: float) -> None:
        """Wake the worker in `delay` seconds, when the event just stored falls due.

        Woken at once, each of its slots would look, find the event not due yet and go back
        to sleep: in a burst of webhooks, several store round trips per webhook for nothing.
        One wake waiting at a time is enough: woken, the worker handles what is due and then
        sleeps until the next event's due time by itself (QueueSlots asks next_due).
        """
        loop = asyncio.get_running_loop()
        due = loop.time() + max(0.0, delay)
        if self._wake_at is not None and self._wake_at <= due:
            return  # the waiting wake comes first; the worker then finds this one's due time
        self._wake_at = due
        loop.call_at(due, self._wake_now, due)

    def _wake_now(self, due: float) -> None:
        if self._wake_at == due:
            self._wake_at = None
        self._wake_worker()


def _text(raw_body: bytes | None) -> str | None:
    """The body as text to store; None unless it is UTF-8 without a byte order mark, the only
    form json.loads takes back as text (it took the bytes in UTF-16 and -32 too, and with a
    BOM): such a body is stored re-encoded."""
    if raw_body is None or raw_body.startswith(codecs.BOM_UTF8):
        return None
    try:
        return raw_body.decode("utf-8")
    except UnicodeDecodeError:
        return None
