"""Polling HighLevel for new messages: for tokens that get no webhooks, and to catch what
webhooks missed (HighLevel drops a webhook that is not answered 2xx or 429)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from datetime import datetime

from bot.highlevel import EmailMessage, HighLevelClient, HighLevelError, Message
from bot.inbound.messages import IncomingMessage, from_polled
from bot.inbound.service import InboundService
from bot.tenancy.accounts import SubAccounts
from storage import Store

log = logging.getLogger(__name__)

CURSOR_KEY = "poll:last_message_at"  # one sub-account's cursor: CURSOR_KEY:<location id>
LAST_SUCCESS_KEY = "poll:last_success_at"  # read by `ghl-bridge doctor`
# Messages this close to the cursor are looked at again (equal timestamps, clock skew);
# dedupe on message ids keeps them from being shown twice.
OVERLAP_SECONDS = 120.0
FIRST_RUN_LOOKBACK_SECONDS = 600.0
MESSAGES_PER_PAGE = 20  # HighLevel's documented default page size
# Bounds one conversation's catch-up in one poll (400 messages): more than that between two
# polls is a flood, not a conversation; it is logged rather than paged through forever.
MAX_PAGES_PER_CONVERSATION = 20
# Likewise for the conversations active since the last poll (pages of `max_conversations`).
MAX_CONVERSATION_PAGES = 10


class PollingWorker:
    """Every `interval` seconds, polls each connected sub-account in turn; one that fails
    (HighLevel down for it, its access lost) does not hold up the others."""

    name = "poller"

    def __init__(
        self,
        *,
        accounts: SubAccounts,
        inbound: InboundService,
        store: Store,
        interval: float,
        legacy_location: str | None = None,
    ) -> None:
        self._accounts = accounts
        self._inbound = inbound
        self._store = store
        self._interval = interval
        # The GHL_API_TOKEN location, whose cursor was kept under CURSOR_KEY alone before.
        self._legacy_location = legacy_location
        self._pollers: dict[str, InboundPoller] = {}

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            found = 0
            for record in await self._accounts.connected(fresh=True):
                if stopping.is_set():
                    break
                try:
                    found += await self._poller(record.location_id).poll_once()
                except HighLevelError as exc:
                    log.warning(
                        "polling HighLevel failed for %s: %s",
                        self._accounts.label(record.location_id),
                        exc.message,
                    )
            if found:
                log.info("polling found %d new HighLevel messages", found)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._interval)

    def _poller(self, location_id: str) -> InboundPoller:
        poller = self._pollers.get(location_id)
        if poller is None:
            poller = self._pollers[location_id] = InboundPoller(
                highlevel=self._accounts.client(location_id),
                inbound=self._inbound,
                store=self._store,
                interval=self._interval,
                legacy_cursor=location_id == self._legacy_location,
            )
        return poller


class InboundPoller:
    """One sub-account's polling: recently active conversations, then their new messages."""

    name = "poller"

    def __init__(
        self,
        *,
        highlevel: HighLevelClient,
        inbound: InboundService,
        store: Store,
        interval: float,
        max_conversations: int = 20,
        clock: Callable[[], float] = time.time,
        legacy_cursor: bool = False,
    ) -> None:
        self._highlevel = highlevel
        self._inbound = inbound
        self._store = store
        self._interval = interval
        self._max_conversations = max_conversations
        self._clock = clock
        self._cursor_key = f"{CURSOR_KEY}:{highlevel.location_id}"
        self._legacy_cursor = legacy_cursor

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            try:
                found = await self.poll_once()
                if found:
                    log.info("polling found %d new HighLevel messages", found)
            except HighLevelError as exc:
                log.warning("polling HighLevel failed: %s", exc.message)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), self._interval)

    async def poll_once(self) -> int:
        """One pass; returns how many messages were new. The cursor moves only after success.

        Each conversation's new messages are handed over oldest first (HighLevel lists them
        newest first), so they are shown in the order they were sent.
        """
        stored = await self._store.kv_get(self._cursor_key)
        if stored is None and self._legacy_cursor:
            stored = await self._store.kv_get(CURSOR_KEY)
        cursor = float(stored) if stored else self._clock() - FIRST_RUN_LOOKBACK_SECONDS
        since = cursor - OVERLAP_SECONDS
        newest = cursor
        accepted = 0
        for conversation_id in await self._active_conversations(since):
            for message in await self._new_messages(conversation_id, since):
                if message.date_added is not None:
                    newest = max(newest, message.date_added)
                accepted += int(await self._inbound.accept_polled(message))
        await self._store.kv_set(self._cursor_key, repr(newest))
        now = self._clock()
        await self._store.kv_set(LAST_SUCCESS_KEY, repr(now))
        await self._store.note_location_seen(self._highlevel.location_id, poll_at=now)
        return accepted

    async def _active_conversations(self, since: float) -> list[str]:
        """Ids of the conversations with a message since `since`, newest first. Pages on with
        `startAfterDate` (the last one's sort value), so a busy hour loses none."""
        found: list[str] = []
        start_after: int | None = None
        for _ in range(MAX_CONVERSATION_PAGES):
            result = await self._highlevel.search_conversations(
                sort_by="last_message_date",
                sort="desc",
                limit=self._max_conversations,
                start_after_date=start_after,
            )
            known = len(found)
            for conversation in result.conversations:
                last = conversation.last_message_date
                if last is not None and last / 1000.0 < since:
                    return found  # sorted newest first: the rest are older still
                if conversation.id not in found:
                    found.append(conversation.id)
            last_page = result.conversations[-1] if result.conversations else None
            if (
                len(result.conversations) < self._max_conversations
                or len(found) == known
                or last_page is None
                or last_page.last_message_date is None
            ):
                return found
            # One millisecond past the last one's date: conversations sharing that date are
            # listed again (and skipped above) rather than lost at the page boundary.
            start_after = last_page.last_message_date + 1
        log.warning(
            "more than %d conversations were active since the last poll; older ones are not"
            " looked at in this pass",
            MAX_CONVERSATION_PAGES * self._max_conversations,
        )
        return found

    async def _new_messages(self, conversation_id: str, since: float) -> list[IncomingMessage]:
        """The conversation's messages (each email of a thread) sent since `since`, oldest
        first. Pages back until a page reaches `since`, so a busy conversation loses none."""
        listed: list[Message] = []
        last_message_id: str | None = None
        for _ in range(MAX_PAGES_PER_CONVERSATION):
            page = await self._highlevel.list_messages(
                conversation_id, last_message_id=last_message_id, limit=MESSAGES_PER_PAGE
            )
            listed.extend(page.messages)
            if not page.messages or not page.next_page or _active_at(page.messages[-1]) < since:
                break
            last_message_id = page.last_message_id or page.messages[-1].id
        else:
            log.warning(
                "conversation %s has more than %d messages since the last poll; older ones"
                " are not fetched",
                conversation_id,
                MAX_PAGES_PER_CONVERSATION * MESSAGES_PER_PAGE,
            )
        found: list[IncomingMessage] = []
        for message in reversed(listed):  # oldest first: the order equal times keep below
            found.extend(await self._incoming(message, since))
        # Stable: messages sent at the same time stay in the order HighLevel lists them.
        found.sort(key=lambda item: math.inf if item.date_added is None else item.date_added)
        return found

    async def _incoming(self, message: Message, since: float) -> list[IncomingMessage]:
        """What of `message` is new: itself, or for an email thread each email not shown yet."""
        email_ids = message.meta.email.message_ids if message.meta and message.meta.email else []
        if not email_ids:
            dated = _epoch(message.date_added)
            return [] if dated is None or dated < since else [self._incoming_from(message)]
        if _active_at(message) < since:
            return []  # no email of this thread came or changed since
        found: list[IncomingMessage] = []
        for email_id in email_ids:
            if await self._store.get_message_by_ghl_id(email_id) is not None:
                continue  # shown already (or one of our sends)
            email = await self._highlevel.get_email(email_id)
            dated = _epoch(email.date_added)
            if dated is None or dated >= since:  # older ones were looked at by earlier polls
                found.append(self._incoming_from(message, email))
        return found

    def _incoming_from(
        self, message: Message, email: EmailMessage | None = None
    ) -> IncomingMessage:
        return from_polled(message, email, location_id=self._highlevel.location_id)


def _epoch(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


def _active_at(message: Message) -> float:
    """When the message last changed (an email thread changes when an email joins it)."""
    times = [t.timestamp() for t in (message.date_added, message.date_updated) if t is not None]
    return max(times, default=-math.inf)
