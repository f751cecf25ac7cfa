"""IncomingMessage: one HighLevel message, read from a webhook body or from polling."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from bot.highlevel import EmailMessage, Message, MessageChannel
from bot.ui.inbound_builder import InboundPost
from bot.webhook_auth import repair_lone_surrogates

# The HighLevel webhooks about a message. An inbound event of one of these types holds the
# webhook's body as it arrived; any other holds an IncomingMessage's `to_payload()`.
MESSAGE_EVENTS = frozenset({"InboundMessage", "OutboundMessage"})


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
    location_id: str | None = None  # the sub-account; absent from events stored before it was kept

    @property
    def is_email(self) -> bool:
        return self.channel.upper() in {"EMAIL", "TYPE_EMAIL"}

    def to_payload(self) -> dict[str, Any]:
        # Every field is a str, a float, None or a tuple of str: nothing to copy deeply (as
        # dataclasses.asdict would, at several times the cost).
        return {name: getattr(self, name) for name in _FIELD_NAMES}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> IncomingMessage:
        values = dict(data)
        for name in ("attachments", "email_to", "cc"):
            values[name] = tuple(values.get(name) or ())
        return cls(**values)


_FIELD_NAMES = tuple(item.name for item in fields(IncomingMessage))


def stored_message(event_type: str, payload_json: str) -> IncomingMessage | None:
    """The message an inbound event holds (see MESSAGE_EVENTS); None if a webhook's body is
    not about a message after all."""
    if event_type in MESSAGE_EVENTS:
        payload = json.loads(payload_json)
        if not isinstance(payload, dict):
            return None
        # As when the body was verified: lone UTF-16 surrogates become U+FFFD.
        repair_lone_surrogates(payload, payload_json)
        return from_webhook(payload)
    return IncomingMessage.from_payload(json.loads(payload_json))


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


@dataclass(frozen=True, slots=True)
class MessageRef:
    """What storing a message's webhook needs of it (its keys, its order, its contact): a look
    at five fields, where `from_webhook` reads them all; the worker reads those later."""

    key_id: str
    contact_id: str
    location_id: str | None
    status: str | None
    date_added: float | None


def ref_of_webhook(payload: Mapping[str, Any]) -> MessageRef | None:
    """These fields of `from_webhook(payload)`; None exactly when that is None."""
    message_id = _text(payload.get("messageId"))
    contact_id = _text(payload.get("contactId"))
    if not message_id or not contact_id:
        return None
    return MessageRef(
        key_id=_text(payload.get("emailMessageId")) or message_id,
        contact_id=contact_id,
        location_id=_text(payload.get("locationId")) or None,
        status=_text(payload.get("status")),
        date_added=_epoch(payload.get("dateAdded")),
    )


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
        location_id=_text(payload.get("locationId")) or None,
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


def from_polled(
    message: Message, email: EmailMessage | None = None, *, location_id: str | None = None
) -> IncomingMessage:
    """A message found by polling (for email: one email of its thread) in `location_id`,
    the sub-account it was read from (else the one it names)."""
    channel = message.message_type or ""
    if email is not None:
        return IncomingMessage(
            key_id=email.id,
            message_id=message.id,
            contact_id=email.contact_id or message.contact_id or "",
            conversation_id=email.conversation_id or message.conversation_id,
            location_id=location_id or email.location_id or message.location_id,
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
        location_id=location_id or message.location_id,
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


def channel_type(channel: str) -> str | None:
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


def inbound_post(
    message: IncomingMessage, contact_label: str, *, thread_id: int | None = None
) -> InboundPost:
    """What the thread shows of `message` (live, or as history when `thread_id` is None)."""
    return InboundPost(
        contact_label=contact_label,
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
        thread_id=thread_id,
    )


def newer_than_thread(message: IncomingMessage, thread_created_at: float) -> bool:
    """Sent after its thread was opened: the live path shows it, never "Earlier messages"."""
    return message.date_added is not None and message.date_added > thread_created_at
