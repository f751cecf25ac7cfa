"""Polling HighLevel for new messages: for tokens that get no webhooks, and to catch what
webhooks missed (HighLevel drops a webhook that is not answered 2xx or 429)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from bot.highlevel import HighLevelClient, HighLevelError, Message
from bot.inbound import InboundService, from_polled
from storage import Store

log = logging.getLogger(__name__)

CURSOR_KEY = "poll:last_message_at"
LAST_SUCCESS_KEY = "poll:last_success_at"  # read by `ghl-bridge doctor`
# Messages this close to the cursor are looked at again (equal timestamps, clock skew);
# dedupe on message ids keeps them from being shown twice.
OVERLAP_SECONDS = 120.0
FIRST_RUN_LOOKBACK_SECONDS = 600.0


class InboundPoller:
    """Every `interval` seconds: recently active conversations, then their new messages."""

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
    ) -> None:
        self._highlevel = highlevel
        self._inbound = inbound
        self._store = store
        self._interval = interval
        self._max_conversations = max_conversations
        self._clock = clock

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
        """One pass; returns how many messages were new. The cursor moves only after success."""
        stored = await self._store.kv_get(CURSOR_KEY)
        cursor = float(stored) if stored else self._clock() - FIRST_RUN_LOOKBACK_SECONDS
        since = cursor - OVERLAP_SECONDS
        newest = cursor
        accepted = 0
        result = await self._highlevel.search_conversations(
            sort_by="last_message_date", sort="desc", limit=self._max_conversations
        )
        for conversation in result.conversations:
            last = conversation.last_message_date
            if last is not None and last / 1000.0 < since:
                break  # sorted newest first: the rest are older still
            page = await self._highlevel.list_messages(conversation.id, limit=20)
            for message in page.messages:
                dated = message.date_added.timestamp() if message.date_added else None
                if dated is None or dated < since:
                    continue
                newest = max(newest, dated)
                accepted += await self._accept(message)
        await self._store.kv_set(CURSOR_KEY, repr(newest))
        await self._store.kv_set(LAST_SUCCESS_KEY, repr(self._clock()))
        return accepted

    async def _accept(self, message: Message) -> int:
        email_ids = message.meta.email.message_ids if message.meta and message.meta.email else []
        if not email_ids:
            return int(await self._inbound.accept_polled(from_polled(message)))
        accepted = 0
        for email_id in email_ids:
            if await self._store.get_message_by_ghl_id(email_id) is not None:
                continue  # shown already (or one of our sends)
            email = await self._highlevel.get_email(email_id)
            accepted += int(await self._inbound.accept_polled(from_polled(message, email)))
        return accepted
