"""Pydantic models of the HighLevel requests and responses the bridge uses: the base models,
sending, contacts, locations and templates (conversations and their messages:
`_conversation_models`).

Sources: the official OpenAPI (``apps/conversations.json``, ``apps/contacts.json``) and the
observed behaviour in ghl-spec NOTES.md. Attributes are snake_case, the wire names camelCase
(aliases); both are accepted on input. Request models are strict (``extra="forbid"``) and
validate what they can; response models are permissive (``extra="ignore"``, most fields optional)
because HighLevel's real responses drift from the spec.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Appointment",
    "Contact",
    "ContactSearchResult",
    "DndSetting",
    "EmailReplyMode",
    "ForwardConfig",
    "Location",
    "MessageChannel",
    "MessageTemplate",
    "OptimizationPeriod",
    "SendMessageRequest",
    "SendMessageResponse",
    "TemplateKind",
    "UpsertContactRequest",
    "UpsertContactResponse",
]

# A scheduled time above this is milliseconds, not seconds (10**11 s is the year 5138).
MAX_SCHEDULED_TIMESTAMP_SECONDS = 10**11


class _RequestModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def to_wire(self) -> dict[str, Any]:
        """The JSON body: camelCase names, only the fields that were set (``None`` left out)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _ResponseModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


def _email_address(value: str) -> str:
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"invalid email address {value!r}: {exc}") from exc


# ---------------------------------------------------------------------------------------------
# Send a message: POST /conversations/messages (SendMessageBodyDto / SendMessageResponseDto)


class MessageChannel(StrEnum):
    """``type`` of a send: the seed's channels, plus RCS/TIKTOK (spec) and GMB (send response)."""

    SMS = "SMS"
    RCS = "RCS"
    EMAIL = "Email"
    WHATSAPP = "WhatsApp"
    GMB = "GMB"
    IG = "IG"
    FB = "FB"
    CUSTOM = "Custom"
    LIVE_CHAT = "Live_Chat"
    TIKTOK = "TIKTOK"


class EmailReplyMode(StrEnum):
    REPLY = "reply"
    REPLY_ALL = "reply_all"


class OptimizationPeriod(StrEnum):
    """AI send-time window for ``uses_native_scheduling_ai``."""

    H24 = "24h"
    H48 = "48h"
    H72 = "72h"


class ForwardConfig(_RequestModel):
    """``forward`` (ForwardConfigDto): forward an existing email."""

    is_forwarded: bool
    forward_whole_thread: bool | None = None
    message_id: str | None = None
    email_message_id: str | None = None
    source_contact_id: str | None = None
    source_conversation_id: str | None = None
    to_email: str | None = None
    recipient_contact_id: str | None = None
    recipient_conversation_id: str | None = None

    @field_validator("to_email")
    @classmethod
    def _check_to_email(cls, value: str | None) -> str | None:
        return None if value is None else _email_address(value)


class SendMessageRequest(_RequestModel):
    """Body of POST /conversations/messages.

    The spec's ``required`` on ``subType``/``status`` is an artefact (NOTES.md §2): neither field
    exists here, so neither is ever sent.
    """

    type: MessageChannel
    contact_id: str = Field(min_length=1)
    appointment_id: str | None = None
    attachments: list[str] | None = None
    email_from: str | None = None
    email_cc: list[str] | None = None
    email_bcc: list[str] | None = None
    html: str | None = None
    message: str | None = None
    subject: str | None = None
    reply_message_id: str | None = None
    template_id: str | None = None
    thread_id: str | None = None
    scheduled_timestamp: int | None = Field(default=None, strict=True, ge=0)
    """UTC Unix time in **seconds**."""
    conversation_provider_id: str | None = None
    email_to: str | None = None
    custom_subtype_id: str | None = None
    email_reply_mode: EmailReplyMode | None = None
    from_number: str | None = None
    to_number: str | None = None
    forward: ForwardConfig | None = None
    uses_native_scheduling_ai: bool | None = None
    optimization_period: OptimizationPeriod | None = None

    @field_validator("email_from", "email_to")
    @classmethod
    def _check_address(cls, value: str | None) -> str | None:
        return None if value is None else _email_address(value)

    @field_validator("email_cc", "email_bcc")
    @classmethod
    def _check_addresses(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else [_email_address(item) for item in value]

    @field_validator("scheduled_timestamp", mode="before")
    @classmethod
    def _scheduled_seconds(cls, value: object) -> object:
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError("scheduled_timestamp datetime must be timezone-aware")
            return int(value.timestamp())
        looks_like_ms = (
            isinstance(value, int)
            and not isinstance(value, bool)
            and value > MAX_SCHEDULED_TIMESTAMP_SECONDS
        )
        if looks_like_ms:
            raise ValueError("scheduled_timestamp must be in seconds; this looks like milliseconds")
        return value


class SendMessageResponse(_ResponseModel):
    """200 of POST /conversations/messages.

    ``message_id`` is the main message id (for email also the thread id); GMB sends return
    ``message_ids`` instead, so it is optional here.
    """

    conversation_id: str
    message_id: str | None = None
    email_message_id: str | None = None
    message_ids: list[str] | None = None
    msg: str | None = None
    status: str | None = None


# ---------------------------------------------------------------------------------------------
# Contacts (Version 2021-07-28)


class DndSetting(_ResponseModel):
    """One channel's DND state: ``status`` is ``active``, ``inactive`` or ``permanent``."""

    status: str | None = None
    message: str | None = None
    code: str | None = None


class Contact(_ResponseModel):
    """A contact (GetContectByIdSchema), permissive."""

    id: str
    name: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone: str | None = None
    dnd: bool | None = None
    dnd_settings: dict[str, DndSetting] | None = None
    """Keyed by channel: ``Call, Email, SMS, WhatsApp, GMB, FB``."""
    tags: list[str] = Field(default_factory=list)
    location_id: str | None = None
    timezone: str | None = None
    company_name: str | None = None
    assigned_to: str | None = None
    date_added: datetime | None = None

    @field_validator("tags", mode="before")
    @classmethod
    def _null_tags(cls, value: object) -> object:
        return [] if value is None else value


class UpsertContactRequest(_RequestModel):
    """Body of POST /contacts/upsert (UpsertContactDto) without ``locationId``.

    The client adds its own ``locationId``. ``tags`` overwrites all the contact's tags.
    """

    first_name: str | None = None
    last_name: str | None = None
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    gender: str | None = None
    address1: str | None = None
    city: str | None = None
    state: str | None = None
    postal_code: str | None = None
    website: str | None = None
    timezone: str | None = None
    dnd: bool | None = None
    dnd_settings: dict[str, dict[str, str]] | None = None
    inbound_dnd_settings: dict[str, dict[str, str]] | None = None
    tags: list[str] | None = None
    custom_fields: list[dict[str, Any]] | None = None
    source: str | None = None
    date_of_birth: str | None = None
    country: str | None = None
    company_name: str | None = None
    assigned_to: str | None = None
    create_new_if_duplicate_allowed: bool | None = None

    @field_validator("email")
    @classmethod
    def _check_email(cls, value: str | None) -> str | None:
        return None if value is None else _email_address(value)


class UpsertContactResponse(_ResponseModel):
    """200 of POST /contacts/upsert."""

    is_new: bool = Field(alias="new")
    contact: Contact
    trace_id: str | None = None


class ContactSearchResult(_ResponseModel):
    """200 of POST /contacts/search: one page of contacts and the number that matched."""

    contacts: list[Contact] = Field(default_factory=list)
    total: int | None = None

    @field_validator("contacts", mode="before")
    @classmethod
    def _null_contacts(cls, value: object) -> object:
        return [] if value is None else value


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


class Appointment(_ResponseModel):
    """One event of GET /contacts/{id}/appointments (GetEventSchema), permissive.

    Times carry the offset HighLevel sends; a time sent without one stays naive (its zone is
    unknown, so it is not guessed).
    """

    id: str
    title: str | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    status: str | None = Field(default=None, validation_alias="appointmentStatus")
    """``appointmentStatus`` (``confirmed``, ``cancelled``, ``showed``, ...), else ``status``."""

    @field_validator("start_time", "end_time", "title", mode="before")
    @classmethod
    def _blank(cls, value: object) -> object:
        return _blank_is_none(value)


class _AppointmentsAnswer(_ResponseModel):
    events: list[Appointment] = Field(default_factory=list)


class Location(_ResponseModel):
    """A sub-account from GET /locations/{locationId} (GetLocationByIdSchema), permissive."""

    id: str
    name: str | None = None
    timezone: str | None = None


class TemplateKind(StrEnum):
    """The template ``type`` values GET /locations/{id}/templates filters by."""

    SMS = "sms"
    EMAIL = "email"
    WHATSAPP = "whatsapp"


class MessageTemplate(BaseModel):
    """A location's SMS, WhatsApp or email template, flattened from the wire shape."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    kind: TemplateKind
    body: str = ""
    """SMS and WhatsApp text."""
    subject: str = ""
    html: str = ""
    """Email body."""


class _WireTemplateContent(_ResponseModel):
    body: str | None = None
    subject: str | None = None
    html: str | None = None


class _WireTemplate(_ResponseModel):
    """GetSmsTemplateResponseSchema / GetEmailTemplateResponseSchema."""

    id: str = Field(validation_alias=AliasChoices("id", "_id"))
    name: str | None = None
    type: str | None = None
    template: _WireTemplateContent | None = None

    def to_template(self) -> MessageTemplate | None:
        """The flat template, or None for a ``type`` other than sms, email or whatsapp."""
        try:
            kind = TemplateKind((self.type or "").lower())
        except ValueError:
            return None
        content = self.template or _WireTemplateContent()
        return MessageTemplate(
            id=self.id,
            name=self.name or "",
            kind=kind,
            body=content.body or "",
            subject=content.subject or "",
            html=content.html or "",
        )


class _TemplatesPage(_ResponseModel):
    templates: list[dict[str, Any]] = Field(default_factory=list)
    total_count: int | None = None
