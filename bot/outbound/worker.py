"""OutboxWorker: sends outbox entries exactly once, reconciling uncertain outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from bot.highlevel import (
    HighLevelClient,
    HighLevelError,
    Message,
    MessageChannel,
    RateLimitedError,
    SendMessageRequest,
    SendMessageResponse,
)
from bot.outbound.entry import Display, unpack_entry
from bot.outbound.presenter import SendOutcomeObserver, SendPresenter
from bot.ui.thread_builder import PostStatus
from bot.workers import QueueSlots
from storage import OutboxEntry, OutboxState, Store, StoreError, ThreadRecord

log = logging.getLogger(__name__)

# How far back (seconds) a message in the conversation may be dated and still be "ours":
# HighLevel's clock and ours differ a little.
RECONCILE_CLOCK_SKEW = 120.0
MAX_RETRY_DELAY = 60.0


class OutboxWorker:
    """Sends outbox entries in order per contact; survives restarts; never resends blindly."""

    name = "outbox"

    def __init__(
        self,
        *,
        store: Store,
        highlevel: HighLevelClient,
        presenter: SendPresenter,
        concurrency: int = 4,
        idle_poll_seconds: float = 5.0,
        max_attempts: int = 8,
        reconcile_delays: Sequence[float] = (0.5, 2.0),
        clock: Callable[[], float] = time.time,
        outcomes: SendOutcomeObserver | None = None,
    ) -> None:
        self._store = store
        self._highlevel = highlevel
        self._presenter = presenter
        self._outcomes = outcomes
        self._max_attempts = max_attempts
        self._reconcile_delays = tuple(reconcile_delays)
        self._clock = clock
        self._slots = QueueSlots(
            "outbox",
            claim=self._store.claim_next,
            handle=self._process_safely,
            next_due=self._store.next_outbox_due_at,
            concurrency=concurrency,
            idle_poll=idle_poll_seconds,
            clock=clock,
        )

    def wake(self) -> None:
        """New work is queued: stop waiting."""
        self._slots.wake()

    async def run(self, stopping: asyncio.Event) -> None:
        recovered = await self._store.recover_after_crash()
        if recovered:
            log.warning(
                "%d sends were interrupted by a stop; checking whether they went out", recovered
            )
        for entry in await self._store.list_outbox(OutboxState.UNKNOWN, limit=500):
            if entry.ghl_message_id is None and self._clock() - entry.updated_at < 86_400:
                await self._settle_unknown(entry, "the bridge stopped while sending")
        await self._slots.run(stopping)

    async def _process_safely(self, entry: OutboxEntry) -> None:
        """One entry that breaks in an unforeseen way must not take the worker (and the other
        slots' sends in flight) down with it; it is set aside where a person can see it."""
        try:
            request, display = unpack_entry(entry)
        except (KeyError, TypeError, ValueError) as exc:
            # Nothing was sent: the stored request could not even be read.
            log.error("outbox %d: unreadable request (%s); marked failed", entry.id, exc)
            await self._store.mark_failed(entry.id, "the stored message could not be read")
            self._count("failed")
            return
        try:
            await self._process(entry, request, display)
        except (StoreError, asyncio.CancelledError):
            raise  # the worker restarts; recovery reconciles what was in flight
        except Exception:
            log.exception("outbox %d: unexpected error while sending; outcome unknown", entry.id)
            with contextlib.suppress(Exception):
                entry = await self._store.mark_unknown(entry.id, "an internal error interrupted it")
                self._count("unknown")
                await self._presenter.show(entry, PostStatus.UNKNOWN, error=entry.last_error)

    async def _process(
        self, entry: OutboxEntry, request: SendMessageRequest, display: Display
    ) -> None:
        thread = await self._thread_for(entry, display)
        thread, entry = await self._presenter.show_sending(entry, thread, display)
        try:
            response = await self._highlevel.send_message(request)
        except HighLevelError as exc:
            await self._handle_error(entry, thread, display, exc)
            return
        await self._record_sent(entry, thread, display, response)

    async def _record_sent(
        self,
        entry: OutboxEntry,
        thread: ThreadRecord | None,
        display: Display,
        response: SendMessageResponse,
        *,
        outcome: str = "sent",
    ) -> None:
        is_email = entry.message_type == MessageChannel.EMAIL.value
        entry = await self._store.mark_sent(
            entry.id,
            conversation_id=response.conversation_id,
            # An email thread is one HighLevel message (its id is the thread id); each email
            # in it has its own emailMessageId, which is what webhooks about it carry.
            ghl_message_id=(response.email_message_id if is_email else None) or response.message_id,
            ghl_email_message_id=response.email_message_id,
            ghl_message_ids=response.message_ids or (),
        )
        if thread is not None and is_email:
            request, _ = unpack_entry(entry)
            # A new email thread's id is the send's messageId (NOTES.md §2); a reply keeps its own.
            await self._store.update_thread(
                thread.id,
                email_thread_id=request.thread_id or response.message_id,
                subject=request.subject,
            )
        log.info("outbox %d: sent", entry.id)
        self._count(outcome)
        status = PostStatus.SCHEDULED if entry.scheduled_at else PostStatus.SENT
        await self._presenter.show(entry, status, thread=thread, display=display)

    async def _handle_error(
        self, entry: OutboxEntry, thread: ThreadRecord | None, display: Display, exc: HighLevelError
    ) -> None:
        if exc.may_have_acted:
            log.warning(
                "outbox %d: outcome unknown (%s); looking for it", entry.id, type(exc).__name__
            )
            entry = await self._store.mark_unknown(entry.id, exc.message)
            await self._settle_unknown(entry, exc.message, thread=thread, display=display)
            return
        retryable = isinstance(exc, RateLimitedError) or exc.status_code is None
        if retryable and entry.attempts < self._max_attempts:
            wait = getattr(exc, "retry_after", 0.0) or min(MAX_RETRY_DELAY, 2.0**entry.attempts)
            log.info(
                "outbox %d: not sent (%s); retrying in %.1f s", entry.id, type(exc).__name__, wait
            )
            await self._store.retry_later(
                entry.id, next_attempt_at=self._clock() + wait, error=exc.message
            )
            self._count("retried")
            return
        log.info("outbox %d: HighLevel refused it (%s)", entry.id, type(exc).__name__)
        entry = await self._store.mark_failed(entry.id, exc.message)
        self._count("failed")
        await self._presenter.show(
            entry, PostStatus.FAILED, thread=thread, display=display, error=exc.message
        )

    async def _settle_unknown(
        self,
        entry: OutboxEntry,
        reason: str,
        *,
        thread: ThreadRecord | None = None,
        display: Display | None = None,
    ) -> None:
        """Look for the send in the conversation; if found it was sent, else a person decides."""
        request, stored_display = unpack_entry(entry)
        display = display or stored_display
        if thread is None and entry.thread_id is not None:
            thread = await self._store.get_thread(entry.thread_id)
        for delay in self._reconcile_delays:
            await asyncio.sleep(delay)
            try:
                found = await self._find_in_conversation(entry, request, thread)
            except HighLevelError as exc:
                log.info("outbox %d: could not look for it: %s", entry.id, exc.message)
                continue
            if found is not None:
                log.info("outbox %d: found in the conversation; it was sent", entry.id)
                response = found
                await self._record_sent(
                    entry, thread, display, response, outcome="found_by_reconciliation"
                )
                return
        self._count("unknown")
        await self._presenter.show(
            entry, PostStatus.UNKNOWN, thread=thread, display=display, error=reason
        )

    def _count(self, outcome: str) -> None:
        if self._outcomes is not None:
            self._outcomes.send_outcome(outcome)

    async def _find_in_conversation(
        self, entry: OutboxEntry, request: SendMessageRequest, thread: ThreadRecord | None
    ) -> SendMessageResponse | None:
        """The send, if the conversation shows it, as the answer HighLevel would have given."""
        conversation_id = entry.conversation_id or (thread.conversation_id if thread else None)
        if conversation_id is None:
            search = await self._highlevel.search_conversations(
                contact_id=entry.contact_id, limit=1
            )
            if not search.conversations:
                return None
            conversation_id = search.conversations[0].id
        page = await self._highlevel.list_messages(conversation_id, limit=50)
        since = entry.created_at - RECONCILE_CLOCK_SKEW
        for message in page.messages:
            dated = message.date_added.timestamp() if message.date_added else None
            if message.direction != "outbound" or dated is None or dated < since:
                continue
            matched_id = await self._match(message, request)
            if matched_id is not None:
                return SendMessageResponse(
                    conversation_id=message.conversation_id or conversation_id,
                    message_id=message.id,
                    email_message_id=matched_id if request.type is MessageChannel.EMAIL else None,
                )
        return None

    async def _match(self, message: Message, request: SendMessageRequest) -> str | None:
        """The id of `message` (for email: of the email in it) if it is this send, else None."""
        if request.type is not MessageChannel.EMAIL:
            same = (message.body or "").strip() == (request.message or "").strip()
            return message.id if same and await self._unclaimed(message.id) else None
        # List entries omit email bodies (HLD#40): look at each email of the thread, newest first.
        email_ids = (
            message.meta.email.message_ids if message.meta and message.meta.email else None
        ) or [message.id]
        for email_id in reversed(email_ids):
            if not await self._unclaimed(email_id):
                continue
            try:
                email = await self._highlevel.get_email(email_id)
            except HighLevelError:
                continue
            if email.direction == "outbound" and (email.subject or "") == (request.subject or ""):
                return email.id
        return None

    async def _unclaimed(self, ghl_id: str) -> bool:
        """No other send claims this message (a mirror of it posted by the inbound path may)."""
        known = await self._store.get_message_by_ghl_id(ghl_id)
        return known is None or known.outbox_id is None

    async def _thread_for(self, entry: OutboxEntry, display: Display) -> ThreadRecord | None:
        if entry.thread_id is not None:
            return await self._store.get_thread(entry.thread_id)
        thread = await self._store.upsert_thread(
            team_id=entry.team_id,
            channel_id=entry.channel_id,
            location_id=entry.location_id,
            contact_id=entry.contact_id,
            channel_type=entry.message_type,
            contact_label=display.contact_label,
        )
        await self._store.set_outbox_thread(entry.id, thread.id)
        return thread
