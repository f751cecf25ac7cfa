"""The simulator's stored objects (contacts, conversations, messages, emails) and API shapes."""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

__all__ = [
    "ADA_LOVELACE_ID",
    "ALAN_TURING_ID",
    "CHANNELS",
    "GRACE_HOPPER_ID",
    "KATHERINE_JOHNSON_ID",
    "Channel",
    "SimContact",
    "SimConversation",
    "SimEmail",
    "SimMessage",
    "iso",
    "new_id",
    "seed_contacts",
]

_ID_ALPHABET = string.ascii_letters + string.digits

# Deterministic ids of the seeded contacts (20 alphanumerics, like HighLevel's).
ADA_LOVELACE_ID = "sbxAdaLovelace000001"
GRACE_HOPPER_ID = "sbxGraceHopper000002"
ALAN_TURING_ID = "sbxAlanTuring0000003"
KATHERINE_JOHNSON_ID = "sbxKatherineJohnson4"


def new_id() -> str:
    """A fresh HighLevel-style id: 20 random alphanumerics.

    Random rather than seeded on purpose: a bridge database that outlives a sandbox restart
    must never see a new message reuse an old message's id.
    """
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(20))


def iso(moment: datetime) -> str:
    """``2021-04-21T11:31:45.750Z`` — the format of HighLevel's ``dateAdded`` and webhooks."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Channel:
    """A send ``type`` and how HighLevel labels its messages."""

    name: str  # the send type and the webhook messageType, e.g. "SMS"
    type_number: int  # GetMessageResponseDto.type
    message_type: str  # GetMessageResponseDto.messageType
    needs: Literal["phone", "email", "none"]
    dnd_key: str | None  # key in dndSettings


# Numbers 1 (call), 2 (SMS), 3 (email) and 19 (WhatsApp) are seen in real payloads; the rest
# follow the order of the messageType enum, which those four fit (RCS and TikTok were appended
# later and have no known number: they get the custom-provider ones).
CHANNELS: dict[str, Channel] = {
    channel.name: channel
    for channel in (
        Channel("SMS", 2, "TYPE_SMS", "phone", "SMS"),
        Channel("Email", 3, "TYPE_EMAIL", "email", "Email"),
        Channel("WhatsApp", 19, "TYPE_WHATSAPP", "phone", "WhatsApp"),
        Channel("FB", 11, "TYPE_FACEBOOK", "none", "FB"),
        Channel("GMB", 15, "TYPE_GMB", "none", "GMB"),
        Channel("IG", 18, "TYPE_INSTAGRAM", "none", None),
        Channel("Custom", 20, "TYPE_CUSTOM_SMS", "none", None),
        Channel("Live_Chat", 29, "TYPE_LIVE_CHAT", "none", None),
        Channel("RCS", 22, "TYPE_RCS", "phone", "SMS"),
        Channel("TIKTOK", 22, "TYPE_TIKTOK", "none", None),
    )
}


@dataclass
class SimContact:
    id: str
    first_name: str = ""
    last_name: str = ""
    email: str | None = None
    phone: str | None = None
    whatsapp: bool = False  # the phone is on WhatsApp (else WhatsApp sends fail after queueing)
    dnd: bool = False
    dnd_settings: dict[str, dict[str, str]] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # other upsert fields, stored verbatim
    location_id: str = ""  # the sub-account it belongs to (set by the simulator)
    # Other addresses and numbers a send's emailTo / toNumber may name (not in the v2 spec's
    # contact schema, so only seeded, and answered only when there are some).
    additional_emails: list[str] = field(default_factory=list)
    additional_phones: list[str] = field(default_factory=list)
    date_added: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)

    @property
    def name(self) -> str:
        return " ".join(part for part in (self.first_name, self.last_name) if part)

    def dnd_blocks(self, channel: Channel) -> bool:
        if self.dnd:
            return True
        if channel.dnd_key is None:
            return False
        setting = self.dnd_settings.get(channel.dnd_key) or {}
        return setting.get("status") in {"active", "permanent"}

    def to_api(self, location_id: str) -> dict[str, Any]:
        """``GetContectByIdSchema`` (sic) of contacts.json."""
        body: dict[str, Any] = {
            "id": self.id,
            "locationId": location_id,
            "firstName": self.first_name,
            "lastName": self.last_name,
            "name": self.name,
            "firstNameLowerCase": self.first_name.lower(),
            "lastNameLowerCase": self.last_name.lower(),
            "fullNameLowerCase": self.name.lower(),
            "dnd": self.dnd,
            "dndSettings": self.dnd_settings,
            "tags": list(self.tags),
            "type": "lead",
            "dateAdded": iso(self.date_added),
            "dateUpdated": iso(self.date_updated),
            "customFields": [],
        }
        if self.email:
            body["email"] = self.email
            body["emailLowerCase"] = self.email.lower()
        if self.phone:
            body["phone"] = self.phone
        if self.additional_emails:
            body["additionalEmails"] = list(self.additional_emails)
        if self.additional_phones:
            body["additionalPhones"] = list(self.additional_phones)
        for key, value in self.extra.items():
            body.setdefault(key, value)
        return body


@dataclass
class SimConversation:
    id: str
    contact_id: str
    date_added: datetime = field(default_factory=now)
    unread_count: int = 0
    starred: bool = False
    created_monotonic: float = 0.0  # for the simulated search-index lag


@dataclass
class SimMessage:
    """One entry of a conversation. An email *thread* is one message (its id is the threadId)."""

    id: str
    conversation_id: str
    contact_id: str
    channel: str
    direction: Literal["inbound", "outbound"]
    body: str
    status: str
    source: str | None = None  # "api", "app", ... for outbound messages
    user_id: str | None = None
    attachments: list[str] = field(default_factory=list)
    content_type: str = "text/plain"
    email_ids: list[str] = field(default_factory=list)  # emails of this thread, oldest first
    scheduled_at: float | None = None  # epoch seconds, for scheduled sends
    error: str | None = None
    conversation_provider_id: str | None = None
    # What the send named (POST /conversations/messages), kept for tests to read.
    to_number: str | None = None
    appointment_id: str | None = None
    template_id: str | None = None
    # WhatsApp's late media (HLD#299): body and attachments hidden until the media "arrive".
    media_pending: bool = False
    media_reads_left: int | None = None  # GETs still answered without them; None: until told
    date_added: datetime = field(default_factory=now)
    date_updated: datetime = field(default_factory=now)

    @property
    def visible_body(self) -> str:
        return "" if self.media_pending else self.body

    @property
    def visible_attachments(self) -> list[str]:
        return [] if self.media_pending else list(self.attachments)

    def to_api(self, location_id: str) -> dict[str, Any]:
        """``GetMessageResponseDto``. Email threads carry no body (read the email records)."""
        channel = CHANNELS[self.channel]
        body: dict[str, Any] = {
            "id": self.id,
            "type": channel.type_number,
            "messageType": channel.message_type,
            "locationId": location_id,
            "contactId": self.contact_id,
            "conversationId": self.conversation_id,
            "dateAdded": iso(self.date_added),
            "dateUpdated": iso(self.date_updated),
            "direction": self.direction,
            "status": self.status,
            "contentType": self.content_type,
            "attachments": self.visible_attachments,
        }
        if self.channel == "Email":
            body["meta"] = {"email": {"messageIds": list(self.email_ids)}}
        else:
            body["body"] = self.visible_body
        if self.source is not None:
            body["source"] = self.source
        if self.user_id is not None:
            body["userId"] = self.user_id
        if self.conversation_provider_id is not None:
            body["conversationProviderId"] = self.conversation_provider_id
        if self.error is not None:
            body["error"] = self.error
        return body


@dataclass
class SimEmail:
    """One email: ``id`` is the emailMessageId, ``thread_id`` the id of its thread's message."""

    id: str
    thread_id: str
    conversation_id: str
    contact_id: str
    direction: Literal["inbound", "outbound"]
    status: str
    subject: str
    body: str
    content_type: str
    from_: str
    to: list[str]
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    attachments: list[str] = field(default_factory=list)
    reply_to_message_id: str | None = None
    reply_mode: str | None = None  # emailReplyMode of the send
    source: str | None = None
    user_id: str | None = None
    provider: str = "mailgun"
    scheduled_at: float | None = None
    error: str | None = None
    appointment_id: str | None = None  # as the send named them
    template_id: str | None = None
    date_added: datetime = field(default_factory=now)

    def to_api(self, location_id: str) -> dict[str, Any]:
        """``GetEmailMessageResponseDto``."""
        body: dict[str, Any] = {
            "id": self.id,
            "threadId": self.thread_id,
            "locationId": location_id,
            "contactId": self.contact_id,
            "conversationId": self.conversation_id,
            "dateAdded": iso(self.date_added),
            "subject": self.subject,
            "body": self.body,
            "direction": self.direction,
            "status": self.status,
            "contentType": self.content_type,
            "attachments": list(self.attachments),
            "provider": self.provider,
            "from": self.from_,
            "to": list(self.to),
            "cc": list(self.cc),
            "bcc": list(self.bcc),
        }
        if self.reply_to_message_id is not None:
            body["replyToMessageId"] = self.reply_to_message_id
        if self.source is not None:
            body["source"] = self.source
        return body


def seed_contacts() -> list[SimContact]:
    return [
        SimContact(
            id=ADA_LOVELACE_ID,
            first_name="Ada",
            last_name="Lovelace",
            phone="+14155550100",
            email="ada@example.com",
        ),
        SimContact(
            id=GRACE_HOPPER_ID,
            first_name="Grace",
            last_name="Hopper",
            email="grace@example.com",
        ),
        SimContact(
            id=ALAN_TURING_ID,
            first_name="Alan",
            last_name="Turing",
            phone="+14155550102",
            dnd_settings={"SMS": {"status": "active", "message": "Opted out by STOP"}},
        ),
        SimContact(
            id=KATHERINE_JOHNSON_ID,
            first_name="Katherine",
            last_name="Johnson",
            phone="+447911123456",
            email="katherine@example.com",
            whatsapp=True,
        ),
    ]
