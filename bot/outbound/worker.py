"""OutboxWorker: sends outbox entries exactly once, reconciling uncertain outcomes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence

from bot.files import SlackFileRef
from bot.files.outbound import FileSendError, OutboundFiles
from bot.highlevel import (
    HighLevelClient,
    HighLevelError,
    Message,
    MessageChannel,
    RateLimitedError,
    SendMessageRequest,
    SendMessageResponse,
)
from bot.outbound.entry import Display, files_of, unpack_entry
from bot.outbound.presenter import SendOutcomeObserver, SendPresenter
from bot.tenancy.accounts import SubAccounts
from bot.ui.thread_builder import PostStatus
from bot.workers import QueueLooks, QueueSlots
from storage import OutboxEntry, OutboxState, Store, StoreError, Takeover, ThreadRecord

log = logging.getLogger(__name__)

# How far back (seconds) a message in the conversation may be dated and still be "ours":
# HighLevel's clock and ours differ a little.
RECONCILE_CLOCK_SKEW = 120.0
MAX_RETRY_DELAY = 60.0

# How a finished send's post shows each final state (unknown ones are reconciled first).
_SHOWN_STATUS = {
    OutboxState.SENT: PostStatus.SENT,
    OutboxState.FAILED: PostStatus.FAILED,
    OutboxState.CANCELLED: PostStatus.CANCELLED,
}

STOPPED_WHILE_SENDING = "the bridge stopped while sending"
TAKEN_OVER = "the instance sending it stopped; another one took it over"


class OutboxWorker:
    """Sends outbox entries in order per contact; survives restarts; never resends blindly."""

    name = "outbox"

    def __init__(
        self,
        *,
        store: Store,
        accounts: SubAccounts,
        presenter: SendPresenter,
        concurrency: int = 4,
        idle_poll_seconds: float = 5.0,
        max_attempts: int = 8,
        reconcile_delays: Sequence[float] = (0.5, 2.0),
        clock: Callable[[], float] = time.time,
        outcomes: SendOutcomeObserver | None = None,
        files: OutboundFiles | None = None,
        on_answered: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        """`on_answered`: told the thread of each send confirmed sent now (it answers the
        customer: `ConversationMarks.answered`)."""
        self._store = store
        self._files = files
        self._on_answered = on_answered
        self._accounts = accounts
        self._presenter = presenter
        self._outcomes = outcomes
        self._max_attempts = max_attempts
        self._reconcile_delays = tuple(reconcile_delays)
        self._clock = clock
        self._reconcile_asked = asyncio.Event()
        self._to_show: set[int] = set()
        # Claims whose request to HighLevel has started and whose handling has not ended
        # (also one cut off by a stop or a crash): never put back in the queue by a hand-over.
        self._requested: set[int] = set()
        looks = QueueLooks(self._store.claim_next_or_due, self._store.next_outbox_due_at)
        self._slots = QueueSlots(
            "outbox",
            claim=looks.claim,
            handle=self._process_safely,
            next_due=looks.next_due,
            concurrency=concurrency,
            idle_poll=idle_poll_seconds,
            clock=clock,
        )

    def wake(self) -> None:
        """New work is queued: stop waiting."""
        self._slots.wake()

    async def run(self, stopping: asyncio.Event) -> None:
        if not self._store.shared:
            # One instance on its own database: whatever was 'sending' was cut off by the
            # last stop of this bridge. With several instances, a send another one is
            # making looks the same; those are taken over only once their lease expired
            # (LeaseKeeper), never at start-up.
            recovered = await self._store.recover_after_crash()
            if recovered:
                log.warning(
                    "%d sends were interrupted by a stop; checking whether they went out",
                    recovered,
                )
            # Sends the last process finished but may not have shown in Slack.
            taken = await self._store.take_over_expired(every_claim=True)
            await self.show_outcomes(taken.unshown)
        await self.reconcile_unknown(STOPPED_WHILE_SENDING)
        reconciler = asyncio.create_task(self._reconcile_when_asked(stopping))
        try:
            await self._slots.run(stopping)
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler

    def sends_in_flight(self) -> frozenset[int]:
        """The claimed sends whose request may have reached HighLevel without their outcome
        being settled here: what a hand-over at a stop must not put back in the queue."""
        return frozenset(self._requested)

    def request_reconcile(self, taken: Takeover | None = None) -> None:
        """Sends were taken over from a dead instance: reconcile them, and show the outcome
        of those it had finished (`taken.unshown`), off the caller's path."""
        if taken is not None:
            self._to_show.update(taken.unshown)
        self._reconcile_asked.set()

    async def _reconcile_when_asked(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._reconcile_asked.wait()
            self._reconcile_asked.clear()
            to_show, self._to_show = sorted(self._to_show), set()
            try:
                await self.show_outcomes(to_show)
                await self.reconcile_unknown(TAKEN_OVER)
            except Exception:
                # The entries keep their state; unknown ones are looked at again next time.
                log.exception("finishing sends taken over from another instance failed")

    async def show_outcomes(self, outbox_ids: Sequence[int]) -> None:
        """Show in Slack how these finished sends ended (their last holder may not have)."""
        for outbox_id in outbox_ids:
            entry = await self._store.get_outbox(outbox_id)
            status = None if entry is None else _SHOWN_STATUS.get(entry.state)
            if entry is None or status is None:
                continue  # gone, back in the queue, or unknown (reconcile_unknown shows it)
            if status is PostStatus.SENT and entry.scheduled_at:
                status = PostStatus.SCHEDULED
            log.info("outbox %d: showing its outcome (%s) for a stopped instance", entry.id, status)
            await self._presenter.show(entry, status, error=entry.last_error)

    async def reconcile_unknown(self, reason: str) -> int:
        """Look up each recent send of unknown outcome (no HighLevel id) in its conversation.

        With several instances, each entry is reconciled by one of them: the first to mark
        it (per entry and state change) does it, for as long as a lease.
        """
        settled = 0
        for entry in await self._store.list_outbox(OutboxState.UNKNOWN, limit=500):
            if entry.ghl_message_id is not None or self._clock() - entry.updated_at >= 86_400:
                continue
            if self._store.shared and not await self._store.mark_processed(
                "reconcile",
                f"{entry.id}:{entry.updated_at!r}",
                ttl_seconds=2 * self._store.lease_seconds,
            ):
                continue
            await self._settle_unknown(entry, reason)
            settled += 1
        return settled

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
            await self._store.release_claim(entry.id)
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
        # The post shows the outcome now: the claim, kept until here (a process dying before
        # this leaves it to expire, and the outcome is shown by whoever takes it over), ends.
        await self._store.release_claim(entry.id)
        self._requested.discard(entry.id)

    async def _process(
        self, entry: OutboxEntry, request: SendMessageRequest, display: Display
    ) -> None:
        thread = await self._thread_for(entry, display)
        thread, entry = await self._presenter.show_sending(entry, thread, display)
        files = files_of(entry)
        if files:
            # Uploaded (or found uploaded) before the send: until every file has its URL the
            # send is certainly not requested, so a stop here hands it back untouched.
            try:
                request = await self._with_files(entry, request, thread, files)
            except FileSendError as exc:
                await self._handle_file_error(entry, thread, display, exc)
                return
        # From here the request may reach HighLevel, even if this task is cut off at once.
        self._requested.add(entry.id)
        try:
            response = await self._accounts.client(entry.location_id).send_message(request)
        except HighLevelError as exc:
            await self._handle_error(entry, thread, display, exc)
            return
        await self._record_sent(entry, thread, display, response)

    async def _with_files(
        self,
        entry: OutboxEntry,
        request: SendMessageRequest,
        thread: ThreadRecord | None,
        files: Sequence[SlackFileRef],
    ) -> SendMessageRequest:
        if self._files is None:
            raise FileSendError("This bridge cannot send files.", lasting=True)
        conversation_id = entry.conversation_id or (thread.conversation_id if thread else None)
        urls = await self._files.attachment_urls(entry, files, conversation_id=conversation_id)
        return request.model_copy(update={"attachments": urls})

    async def _handle_file_error(
        self,
        entry: OutboxEntry,
        thread: ThreadRecord | None,
        display: Display,
        exc: FileSendError,
    ) -> None:
        if not exc.lasting and entry.attempts < self._max_attempts:
            wait = exc.retry_after or min(MAX_RETRY_DELAY, 2.0**entry.attempts)
            log.info("outbox %d: files not ready; retrying in %.1f s", entry.id, wait)
            await self._store.retry_later(
                entry.id, next_attempt_at=self._clock() + wait, error=exc.reason
            )
            self._count("retried")
            return
        log.info("outbox %d: not sent, a file could not be attached", entry.id)
        entry = await self._store.mark_failed(entry.id, exc.reason)
        self._count("failed")
        await self._presenter.show(
            entry, PostStatus.FAILED, thread=thread, display=display, error=exc.reason
        )

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
            ghl_msg=(response.msg or "").strip() or None,
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
        answered = thread.id if thread is not None else entry.thread_id
        if self._on_answered is not None and answered is not None and not entry.scheduled_at:
            await self._on_answered(answered)

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
        files = files_of(entry)
        if files and self._files is not None and not await self._files.all_uploaded(entry, files):
            # Its request goes out only once every file has its URL: it never did. Back in
            # the queue (the files uploaded so far are kept and not uploaded again).
            log.info("outbox %d: stopped while uploading its files; queued again", entry.id)
            await self._store.retry_later(entry.id, next_attempt_at=self._clock(), error=None)
            self.wake()
            return
        request, stored_display = unpack_entry(entry)
        if files:
            # What it carried: told apart from another send of the same text by its files.
            uploads = await self._store.outbox_uploads(entry.id)
            request = request.model_copy(update={"attachments": [uploads[f.id] for f in files]})
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
        highlevel = self._accounts.client(entry.location_id)
        conversation_id = entry.conversation_id or (thread.conversation_id if thread else None)
        if conversation_id is None:
            search = await highlevel.search_conversations(contact_id=entry.contact_id, limit=1)
            if not search.conversations:
                return None
            conversation_id = search.conversations[0].id
        page = await highlevel.list_messages(conversation_id, limit=50)
        since = entry.created_at - RECONCILE_CLOCK_SKEW
        for message in page.messages:
            dated = message.date_added.timestamp() if message.date_added else None
            if message.direction != "outbound" or dated is None or dated < since:
                continue
            matched_id = await self._match(highlevel, message, request)
            if matched_id is not None:
                return SendMessageResponse(
                    conversation_id=message.conversation_id or conversation_id,
                    message_id=message.id,
                    email_message_id=matched_id if request.type is MessageChannel.EMAIL else None,
                )
        return None

    async def _match(
        self, highlevel: HighLevelClient, message: Message, request: SendMessageRequest
    ) -> str | None:
        """The id of `message` (for email: of the email in it) if it is this send, else None."""
        if request.type is not MessageChannel.EMAIL:
            same = (message.body or "").strip() == (request.message or "").strip()
            if same and request.attachments and message.attachments:
                same = list(message.attachments) == list(request.attachments)
            return message.id if same and await self._unclaimed(message.id) else None
        # List entries omit email bodies (HLD#40): look at each email of the thread, newest first.
        email_ids = (
            message.meta.email.message_ids if message.meta and message.meta.email else None
        ) or [message.id]
        for email_id in reversed(email_ids):
            if not await self._unclaimed(email_id):
                continue
            try:
                email = await highlevel.get_email(email_id)
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
