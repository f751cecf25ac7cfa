"""Inbound: HighLevel messages (webhooks or polling) into the right Slack thread, exactly once.

HighLevel retries a webhook only on 429 (NOTES.md §4), so an event is stored before we answer
2xx and shown in Slack afterwards, off the request path. Every message is keyed by its id
(for email: its emailMessageId, since an email thread is one HighLevel message), so a webhook
delivered twice, or seen again by polling, is shown once; our own sends coming back as
OutboundMessage only update the status of the post that already shows them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from bot.compose import contact_address, contact_label
from bot.contacts import ContactDirectory
from bot.highlevel import EmailMessage, HighLevelError, Message, MessageChannel
from bot.outbound import SendPresenter
from bot.slack_posts import SlackPoster, SlackPostError
from bot.ui.inbound_builder import InboundPost, status_reaction
from bot.ui.thread_builder import PostStatus
from bot.workers import QueueSlots
from storage import (
    InboundEvent,
    MessageDirection,
    MessageRecord,
    OutboxState,
    Store,
    StoreError,
    ThreadRecord,
)

log = logging.getLogger(__name__)

DEDUPE_TTL_SECONDS = 14 * 86_400
# An echo of our own send may arrive before the send's answer is recorded; wait for it.
ECHO_WAIT_SECONDS = 1.0
ECHO_WAIT_ATTEMPTS = 10
MAX_ATTEMPTS = 8
MESSAGE_EVENTS = frozenset({"InboundMessage", "OutboundMessage"})
_STATUS_SHOWN = {
    "delivered": PostStatus.DELIVERED,
    "read": PostStatus.READ,
    "opened": PostStatus.READ,
    "failed": PostStatus.FAILED,
    "undelivered": PostStatus.FAILED,
}


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """One HighLevel message as the bridge needs it, from a webhook or from polling."""

    key_id: str  # emailMessageId for email, else messageId: what identifies it here
    message_id: str
    contact_id: str
    conversation_id: str | None
    direction: str
    channel: str
    body: str
    status: str | None = None
    attachments: tuple[str, ...] = ()
    date_added: float | None = None
    source: str | None = None
    user_id: str | None = None
    error: str | None = None
    email_message_id: str | None = None
    email_thread_id: str | None = None
    subject: str | None = None
    email_from: str | None = None
    email_to: tuple[str, ...] = ()
    cc: tuple[str, ...] = field(default=())

    @property
    def is_email(self) -> bool:
        return self.channel.upper() in {"EMAIL", "TYPE_EMAIL"}

    def to_payload(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> IncomingMessage:
        values = dict(data)
        for name in ("attachments", "email_to", "cc"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


def _addresses(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, list):
        return tuple(str(item) for item in value if item)
    return ()


def _text(value: object) -> str | None:
    """A webhook field that should be a string; anything else is treated as absent."""
    return value if isinstance(value, str) else None


def _epoch(value: object) -> float | None:
    """Epoch seconds from seconds, milliseconds or ISO-8601; None for anything not a date."""
    seconds: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / (1000.0 if value > 10**11 else 1.0)
    elif isinstance(value, str) and value:
        try:
            seconds = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    # Only what a date can show: not NaN, not before 1970, not thousands of years ahead.
    if seconds is None or not 0 <= seconds < 95_000_000_000:
        return None
    return seconds


def from_webhook(payload: Mapping[str, Any]) -> IncomingMessage | None:
    """An InboundMessage/OutboundMessage webhook body; None when it is not about a message.

    The signature proves who sent the body, not that every field has the documented type: a
    field of the wrong type is treated as absent rather than carried into SQL or Slack.
    """
    message_id = _text(payload.get("messageId"))
    contact_id = _text(payload.get("contactId"))
    if not message_id or not contact_id:
        return None
    email_id = _text(payload.get("emailMessageId")) or None
    return IncomingMessage(
        key_id=email_id or message_id,
        message_id=message_id,
        contact_id=contact_id,
        conversation_id=_text(payload.get("conversationId")) or None,
        direction=str(
            payload.get("direction")
            or ("inbound" if payload.get("type") == "InboundMessage" else "outbound")
        ),
        channel=str(payload.get("messageType") or ""),
        body=str(payload.get("body") or ""),
        status=_text(payload.get("status")),
        attachments=_addresses(payload.get("attachments")),
        date_added=_epoch(payload.get("dateAdded")),
        source=_text(payload.get("source")),
        user_id=_text(payload.get("userId")),
        error=_error_text(payload.get("error")),
        email_message_id=email_id,
        email_thread_id=_text(payload.get("threadId")) or None,
        subject=_text(payload.get("subject")),
        email_from=_text(payload.get("from")),
        email_to=_addresses(payload.get("to")),
        cc=_addresses(payload.get("cc")),
    )


def from_polled(message: Message, email: EmailMessage | None = None) -> IncomingMessage:
    """A message found by polling (for email: one email of its thread)."""
    channel = message.message_type or ""
    if email is not None:
        return IncomingMessage(
            key_id=email.id,
            message_id=message.id,
            contact_id=email.contact_id or message.contact_id or "",
            conversation_id=email.conversation_id or message.conversation_id,
            direction=email.direction or message.direction or "inbound",
            channel="Email",
            body=email.body or "",
            status=email.status,
            attachments=tuple(email.attachments),
            date_added=email.date_added.timestamp() if email.date_added else None,
            source=message.source,
            email_message_id=email.id,
            email_thread_id=email.thread_id or message.id,
            subject=email.subject,
            email_from=email.from_,
            email_to=tuple(email.to),
            cc=tuple(email.cc),
        )
    return IncomingMessage(
        key_id=message.id,
        message_id=message.id,
        contact_id=message.contact_id or "",
        conversation_id=message.conversation_id,
        direction=message.direction or "inbound",
        channel=channel,
        body=message.body or "",
        status=message.status,
        attachments=tuple(message.attachments),
        date_added=message.date_added.timestamp() if message.date_added else None,
        source=message.source,
    )


def _error_text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping):
        text = value.get("message") or value.get("code")
        return str(text) if text else None
    return None


def _channel_type(channel: str) -> str | None:
    """The send `type` matching a HighLevel messageType (SMS, TYPE_SMS, Email…)."""
    name = channel.upper().removeprefix("TYPE_")
    for candidate in MessageChannel:
        if candidate.value.upper() == name or candidate.name == name:
            return candidate.value
    return {
        "WHATSAPP": "WhatsApp",
        "FACEBOOK": "FB",
        "INSTAGRAM": "IG",
        "LIVE_CHAT": "Live_Chat",
    }.get(name)


class InboundService:
    """Takes HighLevel events in: stores each once and wakes the worker."""

    def __init__(self, *, store: Store, wake_worker: Callable[[], None]) -> None:
        self._store = store
        self._wake_worker = wake_worker

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
        return await self._store_message(message, "webhook", [f"webhook:{webhook_id}"])

    async def accept_polled(self, message: IncomingMessage) -> bool:
        return await self._store_message(message, "poll", [])

    async def _store_message(self, message: IncomingMessage, source: str, keys: list[str]) -> bool:
        event = await self._store.enqueue_inbound(
            source=source,
            event_type=f"{message.direction}_message",
            conversation_key=message.conversation_id or f"contact:{message.contact_id}",
            payload=message.to_payload(),
            dedupe_keys=[*keys, f"message:{message.key_id}:{message.status or ''}"],
            ttl_seconds=DEDUPE_TTL_SECONDS,
        )
        if event is None:
            return False
        self._wake_worker()
        return True


class InboundWorker:
    """Shows stored events in Slack, in order per conversation; retries what Slack refuses."""

    name = "inbound"

    def __init__(
        self,
        *,
        store: Store,
        poster: SlackPoster,
        presenter: SendPresenter,
        contacts: ContactDirectory,
        location_id: str,
        inbox_channel: str | None,
        concurrency: int = 4,
        idle_poll_seconds: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._poster = poster
        self._presenter = presenter
        self._contacts = contacts
        self._location_id = location_id
        self._inbox = inbox_channel
        self._clock = clock
        self._slots = QueueSlots(
            "inbound",
            claim=self._store.claim_inbound,
            handle=self._handle,
            next_due=self._store.next_inbound_due_at,
            concurrency=concurrency,
            idle_poll=idle_poll_seconds,
            clock=clock,
        )

    def wake(self) -> None:
        """New work is queued: stop waiting."""
        self._slots.wake()

    async def run(self, stopping: asyncio.Event) -> None:
        recovered = await self._store.recover_inbound()
        if recovered:
            log.info(
                "%d inbound events were interrupted by a stop; processing them again", recovered
            )
        await self._slots.run(stopping)

    async def _handle(self, event: InboundEvent) -> None:
        try:
            done = await self._process(IncomingMessage.from_payload(event.payload), event)
        except (SlackPostError, HighLevelError) as exc:
            reason = getattr(exc, "error", None) or getattr(exc, "message", None) or str(exc)
            if event.attempts >= MAX_ATTEMPTS:
                log.warning(
                    "inbound event %d given up after %d attempts: %s",
                    event.id,
                    event.attempts,
                    reason,
                )
                await self._store.fail_inbound(event.id, str(reason))
                return
            wait = min(60.0, 2.0**event.attempts)
            log.info("inbound event %d: %s; retrying in %.0f s", event.id, reason, wait)
            await self._store.retry_inbound(
                event.id, next_attempt_at=self._clock() + wait, error=str(reason)
            )
            return
        except StoreError:
            raise  # the worker restarts, and the event is taken again from the database
        except Exception as exc:
            # A bug meeting one event must not stop every event after it (the worker would
            # restart, take the same event, and crash again): keep it as failed, for a person
            # to look at with the traceback logged here.
            log.exception("inbound event %d could not be shown; set aside as failed", event.id)
            await self._store.fail_inbound(event.id, f"internal error: {type(exc).__name__}")
            return
        if done:
            await self._store.finish_inbound(event.id)

    async def _process(self, message: IncomingMessage, event: InboundEvent) -> bool:
        known = await self._store.get_message_by_ghl_id(message.key_id)
        if known is not None and known.slack_ts is not None:
            await self._update_status(known, message)
            return True
        if (
            message.direction == "outbound"
            and known is None
            and event.attempts < ECHO_WAIT_ATTEMPTS
            and await self._own_send_pending(message)
        ):
            # Probably our own send, whose answer is not recorded yet: look again shortly.
            await self._store.retry_inbound(
                event.id,
                next_attempt_at=self._clock() + ECHO_WAIT_SECONDS,
                error="waiting for our own send to be recorded",
            )
            return False
        if known is not None and known.outbox_id is not None:
            await self._update_status(known, message)
            return True
        await self._show(message)
        return True

    async def _own_send_pending(self, message: IncomingMessage) -> bool:
        return await self._store.has_unsettled_send(self._location_id, message.contact_id)

    async def _update_status(self, known: MessageRecord, message: IncomingMessage) -> None:
        status = (message.status or "").lower()
        if not status or status == (known.status or "").lower():
            return
        await self._store.update_message_status(message.key_id, status)
        shown = _STATUS_SHOWN.get(status)
        if known.outbox_id is not None and shown is not None:
            entry = await self._store.get_outbox(known.outbox_id)
            if entry is None or entry.state is OutboxState.CANCELLED:
                return
            error = None
            if shown is PostStatus.FAILED:
                error = message.error or f"HighLevel reports the message {status}"
                if entry.state is not OutboxState.FAILED:
                    entry = await self._store.mark_failed(entry.id, error)
            await self._presenter.show(entry, shown, error=error)
            return
        reaction = status_reaction(status)
        if reaction and known.slack_channel_id and known.slack_ts:
            await self._poster.react(known.slack_channel_id, known.slack_ts, reaction)

    async def _show(self, message: IncomingMessage) -> None:
        thread = await self._thread_for(message)
        if thread is None:
            log.warning(
                "a HighLevel message for contact %s has no Slack thread and SLACK_INBOX_CHANNEL is"
                " not set; it is not shown in Slack",
                message.contact_id,
            )
            return
        record, _ = await self._store.record_message(
            direction=MessageDirection(
                message.direction if message.direction in ("inbound", "outbound") else "inbound"
            ),
            thread_id=thread.id,
            ghl_message_id=message.key_id,
            ghl_email_message_id=message.email_message_id,
            email_thread_id=message.email_thread_id,
            message_type=_channel_type(message.channel) or message.channel,
            status=message.status,
            slack_channel_id=None,
            slack_ts=None,
            slack_user_id=None,
            outbox_id=None,
        )
        post = InboundPost(
            contact_label=thread.contact_label or message.contact_id,
            contact_address=None,
            channel=message.channel,
            body=message.body,
            direction=message.direction,
            attachments=message.attachments,
            subject=message.subject,
            email_from=message.email_from,
            email_to=message.email_to,
            cc=message.cc,
            source=message.source,
            sent_at=message.date_added,
            status=message.status,
            thread_id=thread.id,
        )
        async with self._presenter.thread_root(thread.id):
            # A send may have started this thread since it was looked up.
            thread = await self._store.get_thread(thread.id) or thread
            if thread.thread_ts is None:
                post = await self._with_contact(post, message)
            ts = await self._poster.show_inbound(
                thread.channel_id, post, thread_ts=thread.thread_ts
            )
            if thread.thread_ts is None:
                thread = await self._store.set_thread_ts(thread.id, ts)
        await self._store.attach_slack_ts(
            record.id, slack_channel_id=thread.channel_id, slack_ts=ts
        )
        await self._remember(thread, message)

    async def _with_contact(self, post: InboundPost, message: IncomingMessage) -> InboundPost:
        try:
            contact = await self._contacts.get(message.contact_id)
        except (LookupError, HighLevelError):
            return post
        channel = _channel_type(message.channel)
        address = contact_address(contact, MessageChannel(channel)) if channel else contact.phone
        return replace(post, contact_label=contact_label(contact), contact_address=address)

    async def _remember(self, thread: ThreadRecord, message: IncomingMessage) -> None:
        """The thread now knows the conversation, the customer's last channel and email thread."""
        channel = _channel_type(message.channel)
        await self._store.update_thread(
            thread.id,
            **({"conversation_id": message.conversation_id} if message.conversation_id else {}),
            **({"channel_type": channel} if channel and message.direction == "inbound" else {}),
            **({"email_thread_id": message.email_thread_id} if message.email_thread_id else {}),
            **({"subject": message.subject} if message.is_email and message.subject else {}),
        )

    async def _thread_for(self, message: IncomingMessage) -> ThreadRecord | None:
        """The conversation's most recently active thread, else a new one in the inbox channel."""
        if message.conversation_id:
            threads = await self._store.find_threads_for_conversation(
                self._location_id, message.conversation_id
            )
            if threads:
                return threads[0]
        threads = await self._store.find_threads_for_contact(self._location_id, message.contact_id)
        if threads:
            return threads[0]
        if not self._inbox:
            return None
        label = message.contact_id
        with contextlib.suppress(LookupError, HighLevelError):
            label = contact_label(await self._contacts.get(message.contact_id))
        return await self._store.upsert_thread(
            team_id=await self._poster.team_id(),
            channel_id=self._inbox,
            location_id=self._location_id,
            contact_id=message.contact_id,
            conversation_id=message.conversation_id,
            channel_type=_channel_type(message.channel),
            contact_label=label,
        )
