"""Outbound: a checked draft becomes a durable outbox entry; the worker sends it exactly once.

The rule behind every branch here: a customer text sent twice is a serious bug, and a message
that silently disappears is worse. So an entry is written to SQLite before HighLevel hears of
it; it is resent only when HighLevel certainly did not act on it (429, connection refused); an
outcome we cannot know is looked for in the conversation and, failing that, shown to a person
with a "Resend" button that only a person may press.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from slack_sdk.models.blocks import Block

from bot.compose import (
    CheckedDraft,
    Draft,
    ReplyContext,
    contact_address,
    unreachable_reason,
)
from bot.compose import contact_label as label_of
from bot.contacts import ContactDirectory, ContactNotFoundError
from bot.highlevel import (
    Contact,
    EmailReplyMode,
    HighLevelClient,
    HighLevelError,
    Message,
    MessageChannel,
    NotFoundError,
    RateLimitedError,
    SendMessageRequest,
    SendMessageResponse,
)
from bot.slack_posts import SlackPoster, SlackPostError
from bot.ui.thread_builder import PostStatus, SendPost
from bot.workers import QueueSlots
from storage import MessageDirection, OutboxEntry, OutboxState, Store, StoreError, ThreadRecord

log = logging.getLogger(__name__)

# How far back (seconds) a message in the conversation may be dated and still be "ours":
# HighLevel's clock and ours differ a little.
RECONCILE_CLOCK_SKEW = 120.0
MAX_RETRY_DELAY = 60.0
# A worker that cannot read its queue (the database busy) waits this long before trying again.
# full): it is then not in the outbox, so nothing will be sent, and the person must know.
NOT_SAVED = (
    "The bridge could not save it (its database is busy or unavailable), so nothing was sent. "
    "Try again in a moment."
)


@dataclass(frozen=True, slots=True)
class SlackOrigin:
    """Who asked for a send, and where."""

    team_id: str
    channel_id: str
    user_id: str


@dataclass(frozen=True, slots=True)
class Submitted:
    entry: OutboxEntry
    created: bool  # False: this request was seen before (double click, replay) — nothing new
    contact: Contact
    contact_created: bool


class ComposeRejected(Exception):
    """The send cannot be accepted; `message` is for the person, `field` the input it concerns."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class NotInChannelError(ComposeRejected):
    """The bot cannot post in the channel, so nothing is sent (no send behind anyone's back)."""


@dataclass(frozen=True, slots=True)
class Display:
    """What the Slack post shows about the recipient, kept beside the request in the outbox."""

    contact_label: str
    contact_address: str | None
    created_contact: bool = False


def _payload(request: SendMessageRequest, display: Display) -> dict[str, Any]:
    return {
        "request": request.to_wire(),
        "display": {
            "contact_label": display.contact_label,
            "contact_address": display.contact_address,
            "created_contact": display.created_contact,
        },
    }


def _unpack(entry: OutboxEntry) -> tuple[SendMessageRequest, Display]:
    payload = entry.payload
    display = payload.get("display") or {}
    return SendMessageRequest.model_validate(payload["request"]), Display(
        contact_label=str(display.get("contact_label") or entry.contact_id),
        contact_address=display.get("contact_address"),
        created_contact=bool(display.get("created_contact")),
    )


def build_request(
    checked: CheckedDraft, contact: Contact, reply: ReplyContext | None
) -> SendMessageRequest:
    """The HighLevel send for a checked draft."""
    is_email = checked.channel is MessageChannel.EMAIL
    fields: dict[str, Any] = {
        "type": checked.channel,
        "contact_id": contact.id,
        "message": checked.message or None,
        "scheduled_timestamp": checked.schedule_at,
    }
    if is_email:
        fields |= {
            "subject": checked.subject,
            "html": checked.html,
            "email_cc": list(checked.cc) or None,
            "email_bcc": list(checked.bcc) or None,
        }
        if reply is not None and reply.email_thread_id:
            # The seed: threadId is "the message ID that contains multiple email messages in
            # the thread" and replyMessageId the "ID of message being replied to"; with both,
            # HighLevel files the reply in the customer's existing mailbox thread.
            fields |= {
                "thread_id": reply.email_thread_id,
                "reply_message_id": reply.reply_message_id,
                "email_reply_mode": reply.email_reply_mode or EmailReplyMode.REPLY,
            }
    elif checked.from_number:
        fields["from_number"] = checked.from_number
    return SendMessageRequest(**fields)


class OutboundService:
    """Accepts sends from Slack: resolves the contact, checks it, writes the outbox entry."""

    def __init__(
        self,
        *,
        store: Store,
        highlevel: HighLevelClient,
        contacts: ContactDirectory,
        poster: SlackPoster,
        presenter: SendPresenter,
        location_id: str,
        wake_worker: Callable[[], None],
    ) -> None:
        self._store = store
        self._highlevel = highlevel
        self._contacts = contacts
        self._poster = poster
        self._presenter = presenter
        self._location_id = location_id
        self._wake_worker = wake_worker

    async def can_post(self, channel_id: str) -> bool:
        """The bot can post in the channel (so a send there will have its thread)."""
        return await self._poster.can_post(channel_id)

    async def notify(
        self, channel_id: str, user_id: str, text: str, blocks: Sequence[Block] = ()
    ) -> None:
        """A notice only `user_id` sees, in the channel they are working in."""
        await self._poster.ephemeral(channel_id, user_id, text, blocks)

    async def find_contact(
        self, checked: CheckedDraft, reply: ReplyContext | None
    ) -> tuple[Contact, bool]:
        """The contact a draft is for (created if new), or ComposeRejected saying why not."""
        try:
            if reply is not None:
                return await self._contacts.get(reply.contact_id), False
            assert checked.recipient is not None  # noqa: S101 - check_draft guarantees it
            resolved = await self._contacts.resolve(checked.recipient)
        except ContactNotFoundError as exc:
            raise ComposeRejected(str(exc), field="recipient") from None
        except HighLevelError as exc:
            raise ComposeRejected(
                f"HighLevel did not answer the contact lookup: {exc.message}"
            ) from None
        return resolved.contact, resolved.created

    async def submit(
        self,
        checked: CheckedDraft,
        origin: SlackOrigin,
        *,
        idempotency_key: str,
        reply: ReplyContext | None = None,
        contact: Contact | None = None,
        contact_created: bool = False,
    ) -> Submitted:
        """Write the send to the outbox (once per idempotency key) and wake the worker."""
        try:
            return await self._submit(
                checked,
                origin,
                idempotency_key=idempotency_key,
                reply=reply,
                contact=contact,
                contact_created=contact_created,
            )
        except StoreError as exc:
            # Every write of a submit is the one enqueue, rolled back whole when it fails.
            log.warning("could not queue a send from %s: %s", origin.user_id, exc)
            raise ComposeRejected(NOT_SAVED) from None

    async def _submit(
        self,
        checked: CheckedDraft,
        origin: SlackOrigin,
        *,
        idempotency_key: str,
        reply: ReplyContext | None,
        contact: Contact | None,
        contact_created: bool,
    ) -> Submitted:
        existing = await self._store.get_outbox_by_key(idempotency_key)
        if existing is not None:
            known = contact or await self._contacts.get(existing.contact_id)
            return Submitted(existing, created=False, contact=known, contact_created=False)
        if not await self._poster.can_post(origin.channel_id):
            raise NotInChannelError("The bot is not in this channel.")
        if contact is None:
            contact, contact_created = await self.find_contact(checked, reply)
        reason = unreachable_reason(contact, checked.channel)
        if reason is not None:
            raise ComposeRejected(reason, field="channel")
        thread_id = reply.thread_id if reply is not None else None
        if thread_id is None:
            thread = await self._store.find_thread_for_contact(
                origin.team_id, origin.channel_id, self._location_id, contact.id
            )
            thread_id = thread.id if thread is not None else None
        request = build_request(checked, contact, reply)
        display = Display(
            contact_label=label_of(contact),
            contact_address=contact_address(contact, checked.channel),
            created_contact=contact_created,
        )
        entry, created = await self._store.enqueue(
            idempotency_key=idempotency_key,
            team_id=origin.team_id,
            channel_id=origin.channel_id,
            slack_user_id=origin.user_id,
            location_id=self._location_id,
            contact_id=contact.id,
            message_type=checked.channel.value,
            payload=_payload(request, display),
            thread_id=thread_id,
            scheduled_at=checked.schedule_at,
        )
        if created:
            log.info("outbox %d: %s queued by %s", entry.id, entry.message_type, origin.user_id)
            self._wake_worker()
        return Submitted(entry, created, contact, contact_created)

    async def thread_for_slack_message(
        self, team_id: str, channel_id: str, ts: str, thread_ts: str | None
    ) -> int | None:
        """The mapped thread a Slack message belongs to (its root or any reply), if any."""
        thread = await self._store.get_thread_by_slack(team_id, channel_id, thread_ts or ts)
        return thread.id if thread is not None else None

    async def reply_context(
        self, thread_id: int, *, channel_id: str | None = None, message_ts: str | None = None
    ) -> tuple[ReplyContext, Draft]:
        """What a reply into a mapped thread needs, and how the composer starts.

        The channel defaults to the one the customer last used. For email, the reply joins the
        customer's mailbox thread: `threadId` is the thread's id and `replyMessageId` the email
        answered (the one the shortcut was used on, else the latest from the customer); it is
        `reply_all`, with the CC prefilled, when that email had other recipients.
        """
        thread = await self._store.get_thread(thread_id)
        if thread is None:
            raise ComposeRejected("This thread is no longer linked to a HighLevel conversation.")
        try:
            channel = MessageChannel(thread.channel_type or MessageChannel.SMS.value)
        except ValueError:
            channel = MessageChannel.SMS
        label = thread.contact_label or thread.contact_id
        answered = None
        if channel_id is not None and message_ts is not None:
            answered = await self._store.get_message_by_slack(channel_id, message_ts)
            if answered is not None and answered.message_type != MessageChannel.EMAIL.value:
                answered = None
        if answered is None:
            answered = await self._store.latest_message(
                thread.id,
                direction=MessageDirection.INBOUND,
                message_type=MessageChannel.EMAIL.value,
            )
        email_thread_id = (answered.email_thread_id if answered else None) or thread.email_thread_id
        if email_thread_id is None:
            reply = ReplyContext(
                thread_id=thread.id, contact_id=thread.contact_id, contact_label=label
            )
            return reply, Draft(channel=channel)
        reply_message_id = (
            (answered.ghl_email_message_id or answered.ghl_message_id) if answered else None
        )
        subject = thread.subject or ""
        cc: list[str] = []
        if reply_message_id is not None:
            try:
                email = await asyncio.wait_for(self._highlevel.get_email(reply_message_id), 1.0)
            except (HighLevelError, TimeoutError):
                email = None
            if email is not None:
                subject = email.subject or subject
                cc = list(email.cc)
        if subject and not subject.lower().startswith("re:"):
            subject = f"Re: {subject}"
        reply = ReplyContext(
            thread_id=thread.id,
            contact_id=thread.contact_id,
            contact_label=label,
            email_thread_id=email_thread_id,
            reply_message_id=reply_message_id,
            email_reply_mode=EmailReplyMode.REPLY_ALL if cc else EmailReplyMode.REPLY,
        )
        return reply, Draft(channel=channel, subject=subject, cc=", ".join(cc))

    async def send_again(self, outbox_id: int, origin: SlackOrigin) -> Submitted:
        """A person pressed Resend/Retry: a new entry, once per original (double clicks too)."""
        try:
            return await self._send_again(outbox_id, origin)
        except StoreError as exc:
            log.warning("could not queue a resend of outbox %d: %s", outbox_id, exc)
            raise ComposeRejected(NOT_SAVED) from None

    async def _send_again(self, outbox_id: int, origin: SlackOrigin) -> Submitted:
        original = await self._store.get_outbox(outbox_id)
        if original is None:
            raise ComposeRejected("That message is no longer in the outbox.")
        if original.state not in (OutboxState.FAILED, OutboxState.UNKNOWN):
            raise ComposeRejected("That message was sent; there is nothing to resend.")
        request, display = _unpack(original)
        if request.scheduled_timestamp is not None and request.scheduled_timestamp <= time.time():
            request = request.model_copy(update={"scheduled_timestamp": None})
        entry, created = await self._store.enqueue(
            idempotency_key=f"again:{original.id}",
            team_id=original.team_id,
            channel_id=original.channel_id,
            slack_user_id=origin.user_id,
            location_id=original.location_id,
            contact_id=original.contact_id,
            message_type=original.message_type,
            payload=_payload(request, replace(display, created_contact=False)),
            thread_id=original.thread_id,
            scheduled_at=request.scheduled_timestamp,
        )
        if created:
            self._wake_worker()
        contact = await self._contacts.get(original.contact_id)
        return Submitted(entry, created, contact, contact_created=False)

    async def cancel_scheduled(self, outbox_id: int) -> OutboxEntry:
        """Cancel a scheduled send at HighLevel (or before it left); ComposeRejected if too late."""
        entry = await self._store.get_outbox(outbox_id)
        if entry is None or entry.scheduled_at is None:
            raise ComposeRejected("That message is not a scheduled one.")
        if entry.state is OutboxState.CANCELLED:
            return entry
        if entry.state is OutboxState.SENT:
            try:
                if entry.message_type == MessageChannel.EMAIL.value and entry.ghl_email_message_id:
                    await self._highlevel.cancel_scheduled_email(entry.ghl_email_message_id)
                elif entry.ghl_message_id:
                    await self._highlevel.cancel_scheduled_message(entry.ghl_message_id)
            except NotFoundError:
                raise ComposeRejected(
                    "HighLevel could not cancel it: it was probably sent already."
                ) from None
            except HighLevelError as exc:
                raise ComposeRejected(f"HighLevel could not cancel it: {exc.message}") from None
        elif entry.state is OutboxState.SENDING:
            raise ComposeRejected(
                "It is being handed to HighLevel right now; try again in a moment."
            )
        entry = await self._store.mark_cancelled(entry.id)
        await self._presenter.show(entry, PostStatus.CANCELLED)
        return entry


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
    ) -> None:
        self._store = store
        self._highlevel = highlevel
        self._presenter = presenter
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
            request, display = _unpack(entry)
        except (KeyError, TypeError, ValueError) as exc:
            # Nothing was sent: the stored request could not even be read.
            log.error("outbox %d: unreadable request (%s); marked failed", entry.id, exc)
            await self._store.mark_failed(entry.id, "the stored message could not be read")
            return
        try:
            await self._process(entry, request, display)
        except (StoreError, asyncio.CancelledError):
            raise  # the worker restarts; recovery reconciles what was in flight
        except Exception:
            log.exception("outbox %d: unexpected error while sending; outcome unknown", entry.id)
            with contextlib.suppress(Exception):
                entry = await self._store.mark_unknown(entry.id, "an internal error interrupted it")
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
            request, _ = _unpack(entry)
            # A new email thread's id is the send's messageId (NOTES.md §2); a reply keeps its own.
            await self._store.update_thread(
                thread.id,
                email_thread_id=request.thread_id or response.message_id,
                subject=request.subject,
            )
        log.info("outbox %d: sent", entry.id)
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
            return
        log.info("outbox %d: HighLevel refused it (%s)", entry.id, type(exc).__name__)
        entry = await self._store.mark_failed(entry.id, exc.message)
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
        request, stored_display = _unpack(entry)
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
                await self._record_sent(entry, thread, display, response)
                return
        await self._presenter.show(
            entry, PostStatus.UNKNOWN, thread=thread, display=display, error=reason
        )

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


class KeyedLocks:
    """One asyncio lock per key, forgotten once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[int, asyncio.Lock] = {}
        self._users: dict[int, int] = {}

    @contextlib.asynccontextmanager
    async def hold(self, key: int) -> AsyncIterator[None]:
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._users[key] = self._users.get(key, 0) + 1
        try:
            async with lock:
                yield
        finally:
            self._users[key] -= 1
            if not self._users[key]:
                del self._users[key], self._locks[key]


class SendPresenter:
    """Shows a send in Slack: its post (the thread root for a conversation's first send) and
    each status change. Rendering is the builders' job; this decides what and where."""

    def __init__(self, *, store: Store, poster: SlackPoster) -> None:
        self._store = store
        self._poster = poster
        # One status change of a send is shown at a time: the outbox worker and the inbound
        # worker (HighLevel's status webhooks) both show sends, and two first posts of one send
        # racing each other would leave it shown twice.
        self._showing = KeyedLocks()
        # One post at a time may start a thread: see `thread_root`.
        self._rooting = KeyedLocks()

    def thread_root(self, thread_id: int) -> contextlib.AbstractAsyncContextManager[None]:
        """Held while deciding whether a post starts the thread, posting it and recording it.

        The outbox worker (a send) and the inbound worker (the customer's message) may both
        find a thread without a root; whoever comes second must see the first one's root and
        reply under it, or the conversation would be split over two threads.
        """
        return self._rooting.hold(thread_id)

    async def show_sending(
        self, entry: OutboxEntry, thread: ThreadRecord | None, display: Display
    ) -> tuple[ThreadRecord | None, OutboxEntry]:
        """Make sure the send has its Slack post (the thread root if it is the first) before
        HighLevel hears of it, so a crash mid-send still leaves something a person can see."""
        if entry.slack_ts is not None or thread is None:
            return thread, entry
        async with self.thread_root(thread.id):
            thread = await self._store.get_thread(thread.id) or thread
            as_root = thread.thread_ts is None
            post = self.post(entry, display, PostStatus.SENDING, thread=thread)
            try:
                ts = await self._poster.show_send(
                    entry.channel_id, post, thread_ts=thread.thread_ts, as_root=as_root
                )
            except SlackPostError as exc:
                log.warning(
                    "outbox %d: could not post to Slack (%s); sending anyway", entry.id, exc.error
                )
                return thread, entry
            if as_root:
                thread = await self._store.set_thread_ts(thread.id, ts)
            entry = await self._store.set_outbox_slack_ts(entry.id, ts)
        return thread, entry

    def post(
        self,
        entry: OutboxEntry,
        display: Display,
        status: PostStatus,
        *,
        thread: ThreadRecord | None,
        error: str | None = None,
    ) -> SendPost:
        request, _ = _unpack(entry)
        return SendPost(
            outbox_id=entry.id,
            sender_user_id=entry.slack_user_id,
            channel=request.type,
            contact_label=display.contact_label,
            contact_address=display.contact_address,
            text=request.message or "",
            status=status,
            subject=request.subject,
            error=error,
            scheduled_at=int(entry.scheduled_at) if entry.scheduled_at else None,
            cc=tuple(request.email_cc or ()),
            thread_id=thread.id if thread is not None else None,
            created_contact=display.created_contact,
        )

    async def show(
        self,
        entry: OutboxEntry,
        status: PostStatus,
        *,
        thread: ThreadRecord | None = None,
        display: Display | None = None,
        error: str | None = None,
    ) -> None:
        """Update the send's Slack post (or post it, if posting failed earlier)."""
        async with self._showing.hold(entry.id):
            thread_id = entry.thread_id or (thread.id if thread is not None else None)
            if thread_id is None:
                await self._show(entry, status, thread=thread, display=display, error=error)
                return
            async with self.thread_root(thread_id):
                await self._show(entry, status, thread=thread, display=display, error=error)

    async def _show(
        self,
        entry: OutboxEntry,
        status: PostStatus,
        *,
        thread: ThreadRecord | None,
        display: Display | None,
        error: str | None,
    ) -> None:
        display = display or _unpack(entry)[1]
        # The post (and the thread root) may have been made since the caller read them.
        current = await self._store.get_outbox(entry.id)
        if current is not None and current.slack_ts != entry.slack_ts:
            entry = replace(entry, slack_ts=current.slack_ts)
        if entry.thread_id is not None:
            thread = await self._store.get_thread(entry.thread_id) or thread
        post = self.post(entry, display, status, thread=thread, error=error)
        as_root = (
            thread is not None and entry.slack_ts is not None and entry.slack_ts == thread.thread_ts
        )
        if thread is not None and thread.thread_ts is None and entry.slack_ts is None:
            as_root = True
        try:
            ts = await self._poster.show_send(
                entry.channel_id,
                post,
                thread_ts=None if as_root else (thread.thread_ts if thread else None),
                ts=entry.slack_ts,
                as_root=as_root,
            )
        except SlackPostError as exc:
            log.warning("outbox %d: could not show its status in Slack (%s)", entry.id, exc.error)
            return
        if entry.slack_ts is None:
            if as_root and thread is not None:
                await self._store.set_thread_ts(thread.id, ts)
            await self._store.set_outbox_slack_ts(entry.id, ts)
